"""Absolute Zero code tasks checked by execution, and maths answers computed by programs.

Three kinds share one program format, a deterministic function `f` with inputs:

- `code_o` (deduction): given `f` and an input, predict the output;
- `code_i` (abduction): given `f` and an output, give any input `x` with `f(x) == output`;
- `code_f` (induction): given half of the I/O pairs, write `f`; graded on the other half.

`validate_programs` checks what the Challenger proposed: the source parses, is exactly
one top-level function `f` (imports allowed), passes the static policy, every input is a
Python literal, and running `f` on each input twice in the sandbox (two fresh processes,
as Absolute Zero does) gives the same literal output of bounded size. `verify_answers`
grades Solver answers. Every value is compared inside the sandbox (`SandboxPool.compare`
on repr strings), never with `eval` in this process; a Solver's `f` runs in the sandbox
with only the held-out inputs in its process, never the expected outputs.

Maths through execution: `math_program_answers` runs a Challenger's short program, takes
its value (a trailing expression, e.g. `answer`) or the last number it printed, and
normalises it to a string math-verify parses ("3/4", "0.3333333333", "12");
`cross_check_majority` compares those with the majority labels via `EquivalenceChecker`.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING

from verifiers.answers import extract_math_answer
from verifiers.sandbox import ExecutionResult, SandboxEvent, SandboxJob, SandboxPool, Status
from verifiers.static_checks import check_tree, parse, single_function_problem

if TYPE_CHECKING:
    from verifiers.equivalence import EquivalenceChecker

MAX_PROGRAM_CHARS = 4000
MAX_INPUT_CHARS = 500
MAX_OUTPUT_CHARS = 1000
MAX_ANSWER_CHARS = 4000
MAX_CODE_F_INPUTS = 10
ENTRY = "f"
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")

_LITERAL_NODES = (
    ast.Expression, ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.UnaryOp,
    ast.UAdd, ast.USub, ast.BinOp, ast.Add, ast.Sub, ast.Load,
)  # fmt: skip


class CodeKind(StrEnum):
    OUTPUT = "code_o"
    INPUT = "code_i"
    FUNCTION = "code_f"


@dataclass(frozen=True)
class IOPair:
    input: str  # the arguments as Python literals, "3, [1, 2]"
    output: str  # repr() of f(*input), computed in the sandbox


@dataclass(frozen=True)
class CodeTask:
    """A validated task: the program and its executor-computed I/O pairs."""

    kind: CodeKind
    program: str
    pairs: tuple[IOPair, ...]
    trivial: bool = False  # identity or constant function, None output: Absolute Zero's -0.5

    @property
    def heldout(self) -> tuple[IOPair, ...]:
        """code_f: the pairs the Solver never sees (half, rounded down); else all pairs."""
        if self.kind is not CodeKind.FUNCTION:
            return self.pairs
        return self.pairs[len(self.pairs) - len(self.pairs) // 2 :]

    @property
    def visible(self) -> tuple[IOPair, ...]:
        if self.kind is not CodeKind.FUNCTION:
            return self.pairs
        return self.pairs[: len(self.pairs) - len(self.pairs) // 2]


@dataclass(frozen=True)
class ProgramRequest:
    kind: CodeKind
    program: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class ProgramValidation:
    task: CodeTask | None
    rejection: str | None  # a short, countable reason: "run_error:ZeroDivisionError"
    events: tuple[SandboxEvent, ...] = ()

    @property
    def valid(self) -> bool:
        return self.rejection is None


@dataclass(frozen=True)
class CodeVerdict:
    correct: bool
    passed: int  # comparisons that matched
    total: int  # comparisons made (held-out pairs for code_f, else 1)
    reason: str | None = None  # why not correct
    events: tuple[SandboxEvent, ...] = ()


def is_literal_source(text: str) -> bool:
    """Whether `text` (arguments or a value) is made of Python literals only, by its AST."""
    try:
        tree = ast.parse(f"({text},)", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return all(_literal_node(node) for node in ast.walk(tree))


def _literal_node(node: ast.AST) -> bool:
    # As ast.literal_eval: + and - between numbers only to write a complex number (1+2j).
    if isinstance(node, ast.BinOp):
        return isinstance(node.right, ast.Constant) and isinstance(node.right.value, complex)
    return isinstance(node, _LITERAL_NODES)


def _events(results: Sequence[ExecutionResult]) -> tuple[SandboxEvent, ...]:
    seen: dict[tuple[str, str], SandboxEvent] = {}
    for result in results:
        for event in result.events:
            seen.setdefault((event.kind, event.detail), event)
    return tuple(seen.values())


def _run_failure(result: ExecutionResult) -> str | None:
    if result.status is not Status.OK:
        return f"run_{result.status}" + (f":{result.error_type}" if result.error_type else "")
    if not result.literal:
        return f"output_not_literal:{result.value_type}"
    if result.value_repr is None or len(result.value_repr) > MAX_OUTPUT_CHARS:
        return "output_too_long"
    return None


# --- validation of Challenger programs ---------------------------------------------------


def _precheck(request: ProgramRequest, pool: SandboxPool) -> tuple[str | None, tuple[str, ...]]:
    """(rejection, distinct inputs) from checks that need no execution.

    A static refusal is an escape attempt too: `_static_events` records it as events."""
    if len(request.program) > MAX_PROGRAM_CHARS:
        return "program_too_long", ()
    tree = parse(request.program)
    if isinstance(tree, str):
        return "syntax_error", ()
    problem = single_function_problem(tree, ENTRY)
    if problem:
        return problem, ()
    findings = check_tree(tree, pool.limits.static_policy) if pool.limits.static_checks else ()
    if findings:
        return f"static_{findings[0].kind}:{findings[0].detail}", ()
    inputs = tuple(dict.fromkeys(text.strip() for text in request.inputs if text.strip()))
    if request.kind is CodeKind.FUNCTION:
        if len(inputs) < 2:
            return "code_f_needs_2_distinct_inputs", ()
        inputs = inputs[:MAX_CODE_F_INPUTS]
    elif len(inputs) != 1:
        return f"expected_1_input_got_{len(inputs)}", ()
    for text in inputs:
        if len(text) > MAX_INPUT_CHARS:
            return "input_too_long", ()
        if not is_literal_source(text):
            return "input_not_literal", ()
    return None, inputs


def _is_trivial(kind: CodeKind, pairs: Sequence[IOPair]) -> bool:
    outputs = {pair.output for pair in pairs}
    if outputs == {"None"}:
        return True
    if kind is CodeKind.FUNCTION:
        return len(outputs) == 1  # a constant function
    return all(pair.output == pair.input for pair in pairs)  # the identity


def _static_events(request: ProgramRequest, pool: SandboxPool) -> tuple[SandboxEvent, ...]:
    """The static checks' findings on a refused program, as sandbox events (counted like
    the runtime ones, so SQL sees every attempt whichever layer stopped it)."""
    tree = parse(request.program)
    if isinstance(tree, str) or not pool.limits.static_checks:
        return ()
    findings = check_tree(tree, pool.limits.static_policy)
    return tuple(SandboxEvent(str(f.kind), f"static: {f.describe()}") for f in findings)


def validate_programs(
    pool: SandboxPool, requests: Sequence[ProgramRequest]
) -> list[ProgramValidation]:
    """Validate many proposals in one sandbox batch (each input run twice)."""
    prechecks = [_precheck(request, pool) for request in requests]
    jobs: list[SandboxJob] = []
    for request, (rejection, inputs) in zip(requests, prechecks, strict=True):
        if rejection is None:
            for text in inputs:
                job = SandboxJob(code=request.program, entry=ENTRY, args=text)
                jobs.extend((job, job))  # Absolute Zero: run twice, in two fresh processes
    results = iter(pool.run_many(jobs))
    validations = []
    for request, (rejection, inputs) in zip(requests, prechecks, strict=True):
        if rejection is not None:
            validations.append(ProgramValidation(None, rejection, _static_events(request, pool)))
            continue
        runs = [(next(results), next(results)) for _ in inputs]
        validations.append(_judge_runs(request, inputs, runs))
    return validations


def _judge_runs(
    request: ProgramRequest,
    inputs: Sequence[str],
    runs: Sequence[tuple[ExecutionResult, ExecutionResult]],
) -> ProgramValidation:
    events = _events([result for pair in runs for result in pair])
    pairs: list[IOPair] = []
    for text, (first, second) in zip(inputs, runs, strict=True):
        failure = _run_failure(first) or _run_failure(second)
        if failure:
            return ProgramValidation(None, failure, events)
        if first.value_repr != second.value_repr:
            return ProgramValidation(None, "nondeterministic", events)
        pairs.append(IOPair(text, first.value_repr or ""))
    if events:
        # A program that tripped the sandbox is not a task, even if it then returned.
        return ProgramValidation(None, f"sandbox_event:{events[0].kind}", events)
    trivial = _is_trivial(request.kind, pairs)
    task = CodeTask(request.kind, request.program, tuple(pairs), trivial)
    return ProgramValidation(task, None, events)


def validate_program(
    pool: SandboxPool, kind: CodeKind, program: str, inputs: Sequence[str]
) -> ProgramValidation:
    return validate_programs(pool, [ProgramRequest(kind, program, tuple(inputs))])[0]


# --- verification of Solver answers ------------------------------------------------------


@dataclass
class _Plan:
    """What one answer needs: sandbox runs, then literal comparisons (expected, candidate)."""

    verdict: CodeVerdict | None = None  # decided without the sandbox
    jobs: tuple[SandboxJob, ...] = ()
    expected: tuple[str, ...] = ()  # one per job, or the direct comparison for code_o
    candidate: str | None = None  # code_o: the answer itself


def _plan(task: CodeTask, answer: str | None) -> _Plan:
    text = (answer or "").strip()
    if not text:
        return _Plan(CodeVerdict(False, 0, len(task.heldout), "no_answer"))
    if len(text) > MAX_ANSWER_CHARS:
        return _Plan(CodeVerdict(False, 0, len(task.heldout), "answer_too_long"))
    if task.kind is CodeKind.OUTPUT:
        # Lenient for small models: an unquoted answer to a str output is read as that str.
        candidate = text if is_literal_source(text) else repr(text)
        return _Plan(expected=(task.pairs[0].output,), candidate=candidate)
    if task.kind is CodeKind.INPUT:
        if not is_literal_source(text):
            return _Plan(CodeVerdict(False, 0, 1, "input_not_literal"))
        job = SandboxJob(code=task.program, entry=ENTRY, args=text)
        return _Plan(jobs=(job,), expected=(task.pairs[0].output,))
    tree = parse(text)
    if isinstance(tree, str):
        return _Plan(CodeVerdict(False, 0, len(task.heldout), "syntax_error"))
    if not any(isinstance(node, ast.FunctionDef) and node.name == ENTRY for node in tree.body):
        return _Plan(CodeVerdict(False, 0, len(task.heldout), f"no_function_{ENTRY}"))
    jobs = tuple(SandboxJob(code=text, entry=ENTRY, args=pair.input) for pair in task.heldout)
    return _Plan(jobs=jobs, expected=tuple(pair.output for pair in task.heldout))


def verify_batch(
    pool: SandboxPool, tasks: Sequence[CodeTask], answers: Sequence[Sequence[str | None]]
) -> list[list[CodeVerdict]]:
    """Verdicts for every answer of every task: one run batch, then one compare batch."""
    plans = [
        [_plan(task, answer) for answer in group]
        for task, group in zip(tasks, answers, strict=True)
    ]
    flat = [plan for group in plans for plan in group]
    results = iter(pool.run_many([job for plan in flat for job in plan.jobs]))
    ran = [[next(results) for _ in plan.jobs] for plan in flat]
    pairs: list[tuple[str, str]] = []
    for plan, outcome in zip(flat, ran, strict=True):
        if plan.verdict is None and plan.candidate is not None:
            pairs.append((plan.expected[0], plan.candidate))
        elif plan.verdict is None:
            pairs.extend(
                (exp, r.value_repr or "")
                for exp, r in zip(plan.expected, outcome, strict=True)
                if r.ok
            )
    matches = iter(pool.compare(pairs))
    verdicts = [_conclude(plan, outcome, matches) for plan, outcome in zip(flat, ran, strict=True)]
    regrouped, position = [], 0
    for group in plans:
        regrouped.append(verdicts[position : position + len(group)])
        position += len(group)
    return regrouped


def _conclude(
    plan: _Plan, outcome: Sequence[ExecutionResult], matches: Iterator[bool | None]
) -> CodeVerdict:
    if plan.verdict is not None:
        return plan.verdict
    if plan.candidate is not None:
        matched = next(matches) is True
        return CodeVerdict(matched, int(matched), 1, None if matched else "mismatch")
    passed, reason = 0, None
    for result in outcome:
        if not result.ok:
            reason = reason or _run_failure(result)
            continue
        if next(matches) is True:
            passed += 1
        else:
            reason = reason or "mismatch"
    events = _events(outcome)
    if events and reason is None:
        reason = f"sandbox_event:{events[0].kind}"
    correct = reason is None and passed == len(outcome)
    return CodeVerdict(correct, passed, len(outcome), reason, events)


def verify_answers(
    pool: SandboxPool, task: CodeTask, answers: Sequence[str | None]
) -> list[CodeVerdict]:
    return verify_batch(pool, [task], [answers])[0]


# --- maths through execution -------------------------------------------------------------


def normalise_number(text: str) -> str | None:
    """ "12", "-3/4", "0.3333333333" for a number written in Python or plain decimal."""
    text = text.strip()
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    if "/" in text:
        numerator, _, denominator = (part.strip() for part in text.partition("/"))
        if numerator.lstrip("-").isdigit() and denominator.isdigit() and int(denominator):
            return f"{int(numerator)}/{int(denominator)}"
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    if number == number.to_integral_value() and number.adjusted() < 50:
        return str(int(number))
    # Ten significant digits: float noise (0.30000000000000004) disappears.
    rounded = float(f"{float(number):.10g}")
    if not math.isfinite(rounded):
        return None
    return format(Decimal(repr(rounded)).normalize(), "f") if abs(rounded) < 1e16 else repr(rounded)


def normalise_math_value(result: ExecutionResult) -> str | None:
    """The program's answer as a math-verify-friendly string, or None."""
    if not result.ok:
        return None
    kind, shown = result.value_type, result.value_str
    if kind in ("int", "float", "Fraction", "Decimal", "str") and shown is not None:
        if kind == "str":
            number = normalise_number(shown)
            return number if number is not None else (shown.strip()[:200] or None)
        return normalise_number(shown)
    if kind in ("list", "tuple") and shown is not None:
        return shown[:200]
    if kind in (None, "NoneType") and result.stdout.strip():
        last_line = result.stdout.strip().splitlines()[-1]
        number = normalise_number(last_line)
        return number if number is not None else extract_math_answer(last_line)
    return None


def math_program_answers(
    pool: SandboxPool, programs: Sequence[str]
) -> list[tuple[str | None, ExecutionResult]]:
    """Run each program once; its value or last printed line, normalised."""
    results = pool.run_many([SandboxJob(code=program) for program in programs])
    return [(normalise_math_value(result), result) for result in results]


def math_program_answer(pool: SandboxPool, program: str) -> tuple[str | None, ExecutionResult]:
    return math_program_answers(pool, [program])[0]


def cross_check_majority(
    checker: EquivalenceChecker,
    executor_answers: Sequence[str | None],
    majority_labels: Sequence[str | None],
) -> list[bool | None]:
    """Does each executor-computed answer agree with the majority label? None when either
    is missing or math-verify timed out; False is the disagreement to record for the task."""
    pairs = [
        (answer, label)
        for answer, label in zip(executor_answers, majority_labels, strict=True)
        if answer is not None and label is not None
    ]
    verdicts = iter(checker.equivalent(pairs, kind="math"))
    return [
        next(verdicts) if answer is not None and label is not None else None
        for answer, label in zip(executor_answers, majority_labels, strict=True)
    ]
