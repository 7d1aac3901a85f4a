"""Absolute Zero code tasks and maths-by-program, checked end to end in the real sandbox."""

from __future__ import annotations

import ast
from collections.abc import Iterator

import pytest

from verifiers.code_tasks import (
    CodeKind,
    CodeTask,
    IOPair,
    ProgramRequest,
    cross_check_majority,
    is_literal_source,
    math_program_answers,
    normalise_number,
    validate_program,
    validate_programs,
    verify_answers,
    verify_batch,
)
from verifiers.sandbox import SandboxLimits, SandboxPool, Status
from verifiers.static_checks import DEFAULT_BANNED_MODULES, StaticPolicy

OUT, INP, FUN = CodeKind.OUTPUT, CodeKind.INPUT, CodeKind.FUNCTION
LIMITS = SandboxLimits(wall_s=2.0, cpu_s=1.0)  # the infinite-loop proposal costs 1 s


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(workers=2, limits=LIMITS) as sandbox:
        yield sandbox


# --- validation ------------------------------------------------------------------------


def test_a_valid_program_gets_executor_computed_pairs(pool: SandboxPool) -> None:
    program = "def f(xs, k):\n    return sorted(x * k for x in xs)"
    validation = validate_program(pool, OUT, program, ["[3, 1, 2], 10"])
    assert validation.valid, validation
    assert validation.task == CodeTask(OUT, program, (IOPair("[3, 1, 2], 10", "[10, 20, 30]"),))


@pytest.mark.parametrize(
    ("program", "inputs", "rejection"),
    [
        ("def f(x):\n    return 1 // x", ["0"], "run_error:ZeroDivisionError"),
        ("def f(x):\n    while True:\n        pass", ["1"], "run_timeout"),
        ("def f(x):\n    return frozenset([x])", ["1"], "output_not_literal:frozenset"),
        ("def f(x):\n    return 'a' * x", ["5000"], "output_too_long"),
        ("def f(x):\n    return x\ndef g(x):\n    return x", ["1"], "2_functions_not_1"),
        ("def f(x):\n    return x +", ["1"], "syntax_error"),
        ("import os\ndef f(x):\n    return os.getcwd()", ["1"], "static_banned_import:os"),
        ("def f(x):\n    return x", ["len"], "input_not_literal"),
        ("def f(x):\n    return x", ["1", "2"], "expected_1_input_got_2"),
        ("def f(x):\n    return x", [" "], "expected_1_input_got_0"),
        ("def f(x, y):\n    return x", ["1"], "run_error:TypeError"),
        ("def f(x):\n    import csv\n    return x", ["1"], "run_banned:SandboxViolation"),
    ],
)
def test_invalid_programs_are_rejected_with_a_precise_reason(
    pool: SandboxPool, program: str, inputs: list[str], rejection: str
) -> None:
    validation = validate_program(pool, OUT, program, inputs)
    assert validation.rejection == rejection, validation


def test_nondeterministic_programs_are_rejected() -> None:
    # Let `random` past the static check, so that the two-run check is what catches it.
    policy = StaticPolicy(banned_modules=DEFAULT_BANNED_MODULES - {"random"})
    with SandboxPool(workers=2, limits=SandboxLimits(static_policy=policy)) as lenient:
        program = "import random\ndef f(x):\n    return random.random() + x"
        validation = validate_program(lenient, OUT, program, ["1"])
    assert validation.rejection == "nondeterministic", validation


def test_code_f_needs_two_distinct_inputs_and_holds_out_half(pool: SandboxPool) -> None:
    program = "def f(s):\n    return s[::-1]"
    too_few = validate_program(pool, FUN, program, ["'ab'", "'ab'"])
    assert too_few.rejection == "code_f_needs_2_distinct_inputs", too_few
    task = validate_program(pool, FUN, program, ["'ab'", "'cd'", "'ef'", "'gh'", "'ij'"]).task
    assert task is not None
    assert [p.input for p in task.visible] == ["'ab'", "'cd'", "'ef'"]
    assert [p.output for p in task.heldout] == ["'hg'", "'ji'"]


@pytest.mark.parametrize(
    ("kind", "program", "inputs", "trivial"),
    [
        (OUT, "def f(x):\n    return x", ["[1, 2]"], True),  # the identity
        (OUT, "def f(x):\n    print(x)", ["1"], True),  # returns None
        (FUN, "def f(x):\n    return 7", ["1", "2", "3"], True),  # a constant
        (OUT, "def f(x):\n    return x * 2", ["4"], False),
    ],
)
def test_trivial_programs_are_flagged_not_rejected(
    pool: SandboxPool, kind: CodeKind, program: str, inputs: list[str], trivial: bool
) -> None:
    validation = validate_program(pool, kind, program, inputs)
    assert validation.task is not None and validation.task.trivial is trivial, validation


def test_batch_validation_keeps_order(pool: SandboxPool) -> None:
    requests = [
        ProgramRequest(OUT, "def f(x):\n    return x + 1", ("1",)),
        ProgramRequest(OUT, "def f(x):\n    return 1 / 0", ("1",)),
        ProgramRequest(INP, "def f(x):\n    return x * 3", ("2",)),
    ]
    validations = validate_programs(pool, requests)
    assert [v.task.pairs[0].output if v.task else v.rejection for v in validations] == [
        "2",
        "run_error:ZeroDivisionError",
        "6",
    ]


def test_a_program_that_forges_its_result_is_rejected() -> None:
    forger = (
        "def f(x):\n"
        "    g = [c for c in ().__class__.__base__.__subclasses__()"
        " if c.__name__ == '_wrap_close'][0].__init__.__globals__\n"
        "    for fd in range(3, 64):\n"
        "        try:\n"
        '            g[\'write\'](fd, b\'{"t":"result","status":"ok","value_repr":"9"}\\n\')\n'
        "        except OSError:\n"
        "            pass\n"
        "    return x"
    )
    with SandboxPool(workers=1, limits=SandboxLimits(static_checks=False)) as open_pool:
        validation = validate_program(open_pool, OUT, forger, ["1"])
    assert validation.rejection == "run_banned", validation


# --- verification of Solver answers ------------------------------------------------------

DEDUCTION = CodeTask(OUT, "def f(x):\n    return [x, str(x)]", (IOPair("3", "[3, '3']"),))
ABDUCTION = CodeTask(INP, "def f(a, b):\n    return a * b", (IOPair("3, 4", "12"),))
INDUCTION = CodeTask(
    FUN,
    "def f(n):\n    return n * n + 1",
    (IOPair("1", "2"), IOPair("2", "5"), IOPair("3", "10"), IOPair("4", "17")),
)


def test_code_o_compares_values_not_strings(pool: SandboxPool) -> None:
    answers = ["[3, '3']", '[3,"3"]', "[3, 3]", "(3, '3')", None, "", "[True, '3']"]
    verdicts = verify_answers(pool, DEDUCTION, answers)
    assert [v.correct for v in verdicts] == [True, True, False, False, False, False, False]
    assert [v.reason for v in verdicts][2:6] == ["mismatch", "mismatch", "no_answer", "no_answer"]


def test_code_o_reads_an_unquoted_answer_to_a_string_output(pool: SandboxPool) -> None:
    task = CodeTask(OUT, "def f(s):\n    return s.upper()", (IOPair("'ab'", "'AB'"),))
    assert [v.correct for v in verify_answers(pool, task, ["AB", "'AB'", "ab"])] == [
        True,
        True,
        False,
    ]


def test_code_i_accepts_any_input_that_yields_the_output(pool: SandboxPool) -> None:
    answers = ["3, 4", "2, 6", "12, 1", "5, 5", "'a', 12", "x, 1", "1"]
    verdicts = verify_answers(pool, ABDUCTION, answers)
    assert [v.correct for v in verdicts] == [True, True, True, False, False, False, False]
    assert [v.reason for v in verdicts][3:] == [
        "mismatch",
        "mismatch",  # 'a' * 12 runs, but is not 12
        "input_not_literal",
        "run_error:TypeError",
    ]


def test_code_f_is_graded_on_the_held_out_pairs(pool: SandboxPool) -> None:
    answers = [
        "def f(n):\n    return n ** 2 + 1",  # a different, correct implementation
        "def f(n):\n    return {3: 10}.get(n, 0)",  # right on one held-out pair only
        "def f(n):\n    return 2 if n == 1 else 5",  # fits the visible pairs only
        "def g(n):\n    return n",
        "import os\ndef f(n):\n    return n",
        "class A:\n    def __eq__(self, other):\n        return True\ndef f(n):\n    return A()",
    ]
    verdicts = verify_answers(pool, INDUCTION, answers)
    assert [(v.correct, v.passed, v.total) for v in verdicts] == [
        (True, 2, 2),
        (False, 1, 2),
        (False, 0, 2),
        (False, 0, 2),
        (False, 0, 2),
        (False, 0, 2),  # an always-equal object is not a literal: no match
    ]
    assert [v.reason for v in verdicts][3:5] == ["no_function_f", "run_banned:StaticCheck"]


def test_held_out_outputs_never_enter_the_solvers_process() -> None:
    task = CodeTask(FUN, "def f(n):\n    return 'SENTINEL-%d' % n", (IOPair("1", "'SENTINEL-1'"),
                    IOPair("2", "'SENTINEL-2'"), IOPair("3", "'SENTINEL-3'")))  # fmt: skip
    # Walks every frame above its own and searches their locals and globals; the marker,
    # which is in its own source (so in the harness's job dict), shows the search works.
    # The audit hook would refuse the frame walk: it is off here, since this is about what
    # data the process holds, not about who may look.
    snoop = (
        "import sys\n"
        "def f(n):  # MARKER-7Q\n"
        "    wanted = ('SENTINEL' + '-' + str(n), 'MARKER' + '-7Q')\n"
        "    hits, frame = [0, 0], sys._getframe().f_back\n"
        "    while frame is not None:\n"
        "        for scope in (frame.f_locals, frame.f_globals):\n"
        "            for value in list(scope.values()):\n"
        "                text = repr(value)\n"
        "                hits = [h + (w in text) for h, w in zip(hits, wanted)]\n"
        "        frame = frame.f_back\n"
        "    return hits"
    )
    limits = SandboxLimits(static_checks=False, audit_hook=False)
    with SandboxPool(workers=1, limits=limits) as open_pool:
        verdict = verify_answers(open_pool, task, [snoop])[0]
        snooped = open_pool.run(snoop, entry="f", args="3")
    assert snooped.status is Status.OK, snooped
    sentinel_hits, marker_hits = ast.literal_eval(snooped.value_repr or "[]")
    assert marker_hits > 0, "the frame search found nothing at all: the test is not searching"
    assert sentinel_hits == 0, "the expected output was visible to the Solver's code"
    assert not verdict.correct and verdict.reason == "mismatch", verdict


def test_batch_verification_across_tasks(pool: SandboxPool) -> None:
    verdicts = verify_batch(
        pool,
        [DEDUCTION, ABDUCTION, INDUCTION],
        [["[3, '3']"], ["6, 2", "1, 1"], ["def f(n):\n    return n * n + 1"]],
    )
    assert [[v.correct for v in group] for group in verdicts] == [[True], [True, False], [True]]


# --- maths through execution -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("12", "12"),
        ("12.0", "12"),
        ("-0.5", "-0.5"),
        ("0.30000000000000004", "0.3"),
        ("0.3333333333333333", "0.3333333333"),
        ("3/4", "3/4"),
        ("-6 / 8", "-6/8"),
        ("1,234", "1234"),
        ("1e-07", "0.0000001"),
        (str(2**80), str(2**80)),
        ("3/0", None),
        ("nan", None),
        ("inf", None),
        ("twelve", None),
    ],
)
def test_normalise_number(text: str, normalised: str | None) -> None:
    assert normalise_number(text) == normalised


def test_math_programs_yield_math_verify_friendly_answers(pool: SandboxPool) -> None:
    programs = [
        "from fractions import Fraction\nanswer = Fraction(3, 4) + Fraction(1, 8)\nanswer",
        "print(0.1 + 0.2)",
        "total = sum(range(1, 10))\nprint(f'The answer is {total}')",
        "def solve():\n    return 2 ** 10\nsolve()",
        "from decimal import Decimal\nDecimal('2.50')",
        "1 / 0",
        "True",
        "import os\nos.getcwd()",
    ]
    answers = [answer for answer, _ in math_program_answers(pool, programs)]
    assert answers == ["7/8", "0.3", "45", "1024", "2.5", None, None, None]
    statuses = [result.status for _, result in math_program_answers(pool, programs[-3:])]
    assert statuses == [Status.ERROR, Status.OK, Status.BANNED]


def test_executor_answer_is_cross_checked_against_the_majority_label() -> None:
    equivalence = pytest.importorskip("verifiers.equivalence")
    with equivalence.EquivalenceChecker(workers=1) as checker:
        agreement = cross_check_majority(
            checker, ["1/2", "3", None, "0.75"], ["0.5", "4", "2", "\\frac{3}{4}"]
        )
    assert agreement == [True, False, None, True]


def test_literal_source_check_never_evaluates() -> None:
    assert is_literal_source("1, [2, (3, 'x')], {'k': -4.5}, None, True")
    assert not is_literal_source("__import__('os').system('id')")
    assert not is_literal_source("[x for x in range(3)]")
    assert is_literal_source("1+2j") and not is_literal_source("1 + 2")
    assert not is_literal_source("(" * 5000)
