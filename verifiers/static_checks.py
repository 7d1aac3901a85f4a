"""Static checks on model-written Python, run in the host before a snippet reaches the sandbox.

A first line only: it gives cheap, early, explainable rejections ("banned_import: socket
(line 2)") and catches the usual escape routes by their shape -- banned imports (also
through `__import__`, `importlib`, `eval`/`exec`/`compile`), dangerous builtins, `getattr`
with a computed or dunder name, and the attribute chains of the `().__class__.__bases__`
family. It cannot prove a program safe (strings can be assembled at run time); the
sandbox worker's audit hook and OS limits are the real containment.

Also here: the single-function rule of the Absolute Zero code tasks.

Parsing model output in the host is safe: `ast.parse` executes nothing, and the caller
caps the source length first (`SandboxLimits.max_code_chars`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from verifiers.sandbox_protocol import EventKind

# Modules a snippet may not import: escape routes, then (as Absolute Zero does)
# sources of nondeterminism that would make an executor verdict unrepeatable.
DEFAULT_BANNED_MODULES = frozenset(
    {"os", "sys", "subprocess", "socket", "ctypes", "importlib", "signal", "shutil",
     "multiprocessing", "threading", "_thread", "concurrent", "asyncio", "pickle", "marshal",
     "shelve", "dbm", "sqlite3", "builtins", "io", "pathlib", "tempfile", "glob", "resource",
     "pty", "tty", "termios", "fcntl", "mmap", "gc", "inspect", "code", "codeop", "runpy",
     "posix", "_posixsubprocess", "select", "selectors", "ssl", "http", "urllib", "ftplib",
     "smtplib", "poplib", "imaplib", "telnetlib", "webbrowser", "xmlrpc", "requests",
     "platform", "sysconfig", "site", "atexit", "faulthandler", "tracemalloc", "zipimport",
     "pkgutil", "types", "weakref", "_ctypes", "cffi", "pwd", "grp", "_socket", "_ssl",
     "_signal", "_multiprocessing", "_io", "_pickle",
     "random", "time", "datetime", "secrets", "uuid", "hashlib", "logging"}
)  # fmt: skip
# Names whose mere reference is refused (called or passed around as values).
DEFAULT_BANNED_CALLS = frozenset(
    {"eval", "exec", "compile", "__import__", "open", "input", "breakpoint", "globals",
     "locals", "vars", "setattr", "delattr", "exit", "quit", "help", "memoryview", "id",
     "__builtins__", "__loader__", "__spec__"}
)  # fmt: skip
# Attributes that lead from ordinary objects to modules, frames, code or pickle hooks.
DEFAULT_BANNED_ATTRIBUTES = frozenset(
    {"__subclasses__", "__bases__", "__base__", "__mro__", "mro", "__globals__",
     "__builtins__", "__code__", "__closure__", "cell_contents", "__dict__", "__self__",
     "__getattribute__", "__setattr__", "__delattr__", "__import__", "__loader__", "__spec__",
     "__reduce__", "__reduce_ex__", "__getstate__", "__setstate__", "__getnewargs__",
     "__traceback__", "tb_frame", "tb_next", "f_back", "f_locals", "f_globals", "f_builtins",
     "f_code", "gi_frame", "gi_code", "cr_frame", "ag_frame", "co_code", "environ", "modules",
     "system", "popen", "fork", "kill", "_exit", "eval", "exec", "compile"}
)  # fmt: skip
_GETATTR_NAMES = frozenset({"getattr", "hasattr"})


@dataclass(frozen=True)
class StaticPolicy:
    """What the AST check refuses; every list is replaceable per pool or per task kind."""

    banned_modules: frozenset[str] = field(default=DEFAULT_BANNED_MODULES)
    banned_calls: frozenset[str] = field(default=DEFAULT_BANNED_CALLS)
    banned_attributes: frozenset[str] = field(default=DEFAULT_BANNED_ATTRIBUTES)


@dataclass(frozen=True)
class StaticFinding:
    kind: EventKind
    detail: str
    line: int

    def describe(self) -> str:
        return f"{self.detail} (line {self.line})"


@dataclass(frozen=True)
class StaticReport:
    syntax_error: str | None = None
    findings: tuple[StaticFinding, ...] = ()

    @property
    def ok(self) -> bool:
        return self.syntax_error is None and not self.findings


def parse(source: str) -> ast.Module | str:
    """The module's AST, or a one-line syntax error."""
    try:
        return ast.parse(source, "<snippet>", "exec")
    except SyntaxError as error:
        return f"SyntaxError: {error.msg} (line {error.lineno})"
    except (ValueError, RecursionError, MemoryError) as error:  # null bytes, absurd nesting
        return f"{type(error).__name__}: {error}"


def check_source(source: str, policy: StaticPolicy | None = None) -> StaticReport:
    """Every banned construct in `source`, in source order."""
    tree = parse(source)
    if isinstance(tree, str):
        return StaticReport(syntax_error=tree)
    return StaticReport(findings=check_tree(tree, policy or StaticPolicy()))


def check_tree(tree: ast.AST, policy: StaticPolicy) -> tuple[StaticFinding, ...]:
    findings: list[StaticFinding] = []
    getattr_calls: set[int] = set()
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.partition(".")[0] in policy.banned_modules:
                    findings.append(StaticFinding(EventKind.BANNED_IMPORT, alias.name, line))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or module.partition(".")[0] in policy.banned_modules:
                name = "." * node.level + module
                findings.append(StaticFinding(EventKind.BANNED_IMPORT, name, line))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in _GETATTR_NAMES:
                getattr_calls.add(id(node.func))
                findings.extend(_check_getattr(node, policy))
        elif isinstance(node, ast.Attribute):
            if node.attr in policy.banned_attributes or node.attr in policy.banned_calls:
                findings.append(StaticFinding(EventKind.BANNED_ATTRIBUTE, f".{node.attr}", line))
        elif isinstance(node, ast.Name):
            findings.extend(_check_name(node, policy, getattr_calls))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            # `def __reduce__` in a class: a pickle hook, or an override of attribute access.
            if node.name in policy.banned_attributes:
                findings.append(StaticFinding(EventKind.BANNED_ATTRIBUTE, f"def {node.name}", line))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.startswith("__") and text.endswith("__") and text in policy.banned_attributes:
                findings.append(StaticFinding(EventKind.BANNED_ATTRIBUTE, repr(text), line))
    return tuple(sorted(findings, key=lambda finding: finding.line))


def _check_name(
    node: ast.Name, policy: StaticPolicy, getattr_calls: set[int]
) -> list[StaticFinding]:
    if node.id in policy.banned_calls:
        return [StaticFinding(EventKind.BANNED_CALL, node.id, node.lineno)]
    if node.id in policy.banned_attributes:
        return [StaticFinding(EventKind.BANNED_ATTRIBUTE, node.id, node.lineno)]
    if node.id in _GETATTR_NAMES and id(node) not in getattr_calls:
        # `g = getattr` launders the attribute name past the call check below.
        return [StaticFinding(EventKind.BANNED_CALL, f"{node.id} used as a value", node.lineno)]
    return []


def _check_getattr(node: ast.Call, policy: StaticPolicy) -> list[StaticFinding]:
    name = node.args[1] if len(node.args) > 1 else None
    if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
        detail = f"{node.func.id} with a computed attribute name"  # type: ignore[attr-defined]
        return [StaticFinding(EventKind.BANNED_CALL, detail, node.lineno)]
    attribute = name.value
    if attribute.startswith("__") or attribute in policy.banned_attributes:
        return [StaticFinding(EventKind.BANNED_ATTRIBUTE, f"getattr .{attribute}", node.lineno)]
    return []


def single_function_problem(tree: ast.Module, name: str = "f") -> str | None:
    """Why `tree` is not exactly one top-level function `name` (imports allowed), or None."""
    functions: list[ast.stmt] = []
    for index, node in enumerate(tree.body):
        if isinstance(node, ast.FunctionDef):
            functions.append(node)
        elif isinstance(node, ast.AsyncFunctionDef):
            return "async_function"
        elif isinstance(node, ast.Import | ast.ImportFrom):
            continue
        elif index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a module docstring
        else:
            return f"top_level_{type(node).__name__.lower()}"
    if not functions:
        return f"no_function_{name}"
    if len(functions) > 1:
        return f"{len(functions)}_functions_not_1"
    if functions[0].name != name:  # type: ignore[attr-defined]
        return f"function_not_named_{name}"
    return None
