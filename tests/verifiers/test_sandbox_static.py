"""Static checks: the banned-module/call/attribute policy and the single-function rule."""

from __future__ import annotations

import ast

import pytest

from verifiers.sandbox import EventKind
from verifiers.static_checks import (
    StaticPolicy,
    check_source,
    parse,
    single_function_problem,
)

K = EventKind


@pytest.mark.parametrize(
    ("source", "kind", "detail"),
    [
        ("import os", K.BANNED_IMPORT, "os"),
        ("import os.path as p", K.BANNED_IMPORT, "os.path"),
        ("from subprocess import run", K.BANNED_IMPORT, "subprocess"),
        ("from . import sibling", K.BANNED_IMPORT, "."),
        ("import random", K.BANNED_IMPORT, "random"),
        ("import _socket", K.BANNED_IMPORT, "_socket"),  # nondeterminism, as Absolute Zero
        ("__import__('os')", K.BANNED_CALL, "__import__"),
        ("m = __import__\nm('os')", K.BANNED_CALL, "__import__"),
        ("eval('1')", K.BANNED_CALL, "eval"),
        ("exec('x = 1')", K.BANNED_CALL, "exec"),
        ("compile('1', 'f', 'eval')", K.BANNED_CALL, "compile"),
        ("open('/etc/passwd')", K.BANNED_CALL, "open"),
        ("x = __builtins__", K.BANNED_CALL, "__builtins__"),
        ("getattr(object, name)", K.BANNED_CALL, "getattr with a computed attribute name"),
        ("getattr(object, '__sub' + 'classes__')", K.BANNED_CALL, "computed"),
        ("getattr(f, '__globals__')", K.BANNED_ATTRIBUTE, "getattr .__globals__"),
        ("g = getattr\ng(x, 'y')", K.BANNED_CALL, "getattr used as a value"),
        ("().__class__.__bases__[0].__subclasses__()", K.BANNED_ATTRIBUTE, ".__bases__"),
        ("f.__globals__['os']", K.BANNED_ATTRIBUTE, ".__globals__"),
        ("print.__self__.eval('1')", K.BANNED_ATTRIBUTE, ".__self__"),
        ("e.__traceback__.tb_frame.f_back", K.BANNED_ATTRIBUTE, ".__traceback__"),
        ("d['__builtins__']", K.BANNED_ATTRIBUTE, "'__builtins__'"),
        ("class P:\n    def __reduce__(self):\n        return (print, ())", K.BANNED_ATTRIBUTE,
         "def __reduce__"),
        ("import importlib\nimportlib.import_module('socket')", K.BANNED_IMPORT, "importlib"),
    ],
)  # fmt: skip
def test_banned_constructs_are_found(source: str, kind: EventKind, detail: str) -> None:
    report = check_source(source)
    found = [(f.kind, f.detail) for f in report.findings]
    assert any(f_kind == kind and detail in f_detail for f_kind, f_detail in found), found


@pytest.mark.parametrize(
    "source",
    [
        "import math\nfrom collections import Counter\ndef f(xs):\n    return Counter(xs)",
        "def f(s):\n    return getattr(s, 'upper')()",  # a constant, ordinary attribute
        "def f(x):\n    return sorted(set(x), key=len)",
        "from fractions import Fraction\nFraction(1, 3) + 1",
    ],
)
def test_ordinary_code_passes(source: str) -> None:
    report = check_source(source)
    assert report.ok, report


def test_findings_carry_line_numbers_in_source_order() -> None:
    report = check_source("x = 1\nimport os\ny = eval('2')\n")
    assert [(f.line, f.kind) for f in report.findings] == [(2, K.BANNED_IMPORT), (3, K.BANNED_CALL)]
    assert report.findings[0].describe() == "os (line 2)"


def test_syntax_errors_are_reported_not_raised() -> None:
    report = check_source("def f(:\n")
    assert report.syntax_error is not None and report.syntax_error.startswith("SyntaxError")
    assert isinstance(parse("x = '\0'"), ast.Module | str)  # null bytes never raise


def test_absurd_nesting_does_not_crash_the_host() -> None:
    report = check_source("(" * 10_000 + ")" * 10_000)
    assert report.syntax_error is not None, report


def test_the_policy_is_configurable() -> None:
    lenient = StaticPolicy(banned_modules=frozenset({"socket"}))
    assert check_source("import random", lenient).ok
    assert not check_source("import socket", lenient).ok


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def f(x):\n    return x", None),
        ('"""doc"""\nimport math\ndef f(x):\n    return math.floor(x)', None),
        ("def f(x):\n    def helper(y):\n        return y\n    return helper(x)", None),
        ("def g(x):\n    return x", "function_not_named_f"),
        ("def f(x):\n    return x\ndef g(x):\n    return x", "2_functions_not_1"),
        ("x = 3\ndef f(y):\n    return y + x", "top_level_assign"),
        ("def f(x):\n    return x\nprint(f(1))", "top_level_expr"),
        ("class F:\n    pass", "top_level_classdef"),
        ("async def f(x):\n    return x", "async_function"),
        ("import math", "no_function_f"),
    ],
)
def test_single_function_rule(source: str, problem: str | None) -> None:
    tree = parse(source)
    assert isinstance(tree, ast.Module), tree
    assert single_function_problem(tree) == problem
