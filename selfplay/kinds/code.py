"""The Absolute Zero code kinds: `code_o` (predict the output), `code_i` (find an input),
`code_f` (write the function from I/O pairs, graded on held-out pairs).

The Challenger writes one deterministic function `f` in a ```python block and its
input(s) in `<input>` tags (one for code_o/code_i, several for code_f). It is a tiny model
(SmolLM2-135M), so prompts are short and show one worked example of the exact format, and
parsing is lenient -- an unclosed fence or tag, a bare `def f`, `f(3)` written instead of
`3` -- but records a precise rejection when it fails.

A parsed proposal is not yet a task: `validate_proposals` runs it in the sandbox
(`verifiers.code_tasks`) and returns proposals that carry the executor-computed I/O pairs
in `payload["pairs"]`, the Solver-facing `question`, and the reference answer (the output
for code_o, the Challenger's input for code_i -- any input that yields the output counts --
and the program for code_f). Solver answers are graded with `verify_proposal_answers`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from selfplay.kinds.base import Messages, Proposal
from verifiers.code_tasks import (
    MAX_PROGRAM_CHARS,
    CodeKind,
    CodeTask,
    CodeVerdict,
    IOPair,
    ProgramRequest,
    is_literal_source,
    validate_programs,
    verify_batch,
)
from verifiers.sandbox import SandboxPool
from verifiers.static_checks import parse, single_function_problem

SYSTEM = "You write small, deterministic Python functions for puzzles."
_FENCE = re.compile(
    r"```(?:python|py)?[ \t]*\n(.*?)(?:```|(?=<input>)|\Z)", re.DOTALL | re.IGNORECASE
)
_BARE_DEF = re.compile(r"^(def f\(.*?)(?=<input>|\Z)", re.DOTALL | re.MULTILINE)
_INPUT = re.compile(r"<input>(.*?)(?:</input>|(?=<input>)|\n|\Z)", re.DOTALL | re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.DOTALL | re.IGNORECASE)
_CALL = re.compile(r"^f\((.*)\)$", re.DOTALL)
_LINE_PREFIX = re.compile(r"^(?:the\s+)?(?:answer|output|input|result)\s*(?:is)?\s*[:=]?\s*", re.I)

_EXAMPLE_PROGRAM = """def f(numbers):
    total = 0
    for n in numbers:
        total += n * n
    return total"""
_CODE_F_EXAMPLE_INPUTS = ("[1, 2]", "[3]", "[]", "[2, 2, 1]")


def _format_hint(inputs: int) -> str:
    tags = "<input>...</input>" if inputs == 1 else " ".join(["<input>...</input>"] * inputs)
    return f"```python\ndef f(...):\n    ...\n```\n{tags}"


def _challenge_text(inputs: int, grounded: bool) -> str:
    start = (
        "Read the text, then write a small Python function f that it inspires."
        if grounded
        else "Write a small Python function f."
    )
    what = "one input" if inputs == 1 else f"{inputs} different inputs"
    return (
        f"{start} It must be deterministic (no randomness, time or files). Then give {what} "
        "for f: the arguments, as Python literals. Use exactly this format:\n"
        + _format_hint(inputs)
    )


def _example_answer(inputs: Sequence[str]) -> str:
    tags = "\n".join(f"<input>{text}</input>" for text in inputs)
    return f"```python\n{_EXAMPLE_PROGRAM}\n```\n{tags}"


_EXAMPLE_TEXT = "A square of side n has area n times n. Adding areas of squares gives a total area."


def challenger_format(inputs: int) -> str:
    """The completion format as a regex for constrained sampling: a fenced `def f` of at
    most 12 short lines, then exactly `inputs` input tags (lengths inside parser limits)."""
    program = r"```python\ndef f\([^\n()]{0,60}\):\n(    [^\n]{1,80}\n){1,12}```\n"
    return (
        program + r"<input>[^<>\n]{1,80}</input>\n" * (inputs - 1) + r"<input>[^<>\n]{1,80}</input>"
    )


def solver_prompt(task: CodeTask) -> str:
    """What the Solver sees: never the held-out pairs, never the expected output of code_o."""
    if task.kind is CodeKind.OUTPUT:
        return (
            "What does this Python function return for the given input? Think it through, "
            "then write the exact Python value in <answer>...</answer>.\n\n"
            f"```python\n{task.program}\n```\nInput: f({task.pairs[0].input})"
        )
    if task.kind is CodeKind.INPUT:
        return (
            "Find an input for which this Python function returns the given output. Write "
            "the arguments as Python literals in <answer>...</answer>.\n\n"
            f"```python\n{task.program}\n```\nOutput: {task.pairs[0].output}"
        )
    examples = "\n".join(f"f({pair.input}) == {pair.output}" for pair in task.visible)
    return (
        "Here are calls of a hidden Python function f and what they return. Write f in "
        f"a ```python block.\n\n{examples}"
    )


class CodeTaskKind:
    """One of the three code kinds; they differ in inputs asked and in the Solver's task."""

    def __init__(self, kind: CodeKind) -> None:
        self.kind = kind
        self.name = kind.value
        # code_f holds half its pairs out, so it needs several inputs; 4 is short to write.
        self.inputs_asked = 4 if kind is CodeKind.FUNCTION else 1
        self.challenger_format: str | None = challenger_format(self.inputs_asked)

    def challenger_messages(self, document: str | None) -> Messages:
        example_inputs = _CODE_F_EXAMPLE_INPUTS[: self.inputs_asked]
        instruction = _challenge_text(self.inputs_asked, document is not None)
        example_user = (
            instruction if document is None else f"{instruction}\n\nText:\n{_EXAMPLE_TEXT}"
        )
        user = instruction if document is None else f"{instruction}\n\nText:\n{document}"
        return [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": example_user},
            {"role": "assistant", "content": _example_answer(example_inputs)},
            {"role": "user", "content": user},
        ]

    def parse_proposal(self, completion: str) -> Proposal:
        program, rejection = _read_program(completion)
        if rejection is not None or program is None:
            return Proposal(self.name, rejection=rejection)
        inputs = [_unwrap_call(text) for text in _INPUT.findall(completion)]
        inputs = [text for text in inputs if text]
        if not inputs:
            return Proposal(self.name, rejection="no_input_tag")
        for text in inputs:
            if not is_literal_source(text):
                return Proposal(self.name, rejection="input_not_literal")
        if self.kind is not CodeKind.FUNCTION:
            inputs = inputs[:1]  # lenient: extra inputs for a one-input kind are ignored
        elif len(set(inputs)) < 2:
            return Proposal(self.name, rejection="code_f_needs_2_distinct_inputs")
        payload = {"program": program, "inputs": inputs, "validated": False}
        return Proposal(self.name, question=program, payload=payload)

    def solver_messages(self, proposal: Proposal) -> Messages:
        return [{"role": "user", "content": solver_prompt(task_from_proposal(proposal))}]

    def extract_answer(self, completion: str) -> str | None:
        if self.kind is CodeKind.FUNCTION:
            # The Solver may add helpers: only "defines f" is checked, at grading time.
            return _find_program(completion, last=True)
        tagged = _ANSWER.findall(completion)
        if tagged:
            return _clean_value(tagged[-1])
        fenced = re.findall(r"```(?:python|py)?[ \t]*\n?(.*?)```", completion, re.DOTALL)
        if fenced:
            return _clean_value(fenced[-1])
        lines = [line for line in completion.strip().splitlines() if line.strip()]
        return _clean_value(lines[-1]) if lines else None


CODE_O = CodeTaskKind(CodeKind.OUTPUT)
CODE_I = CodeTaskKind(CodeKind.INPUT)
CODE_F = CodeTaskKind(CodeKind.FUNCTION)


def _find_program(completion: str, last: bool = False) -> str | None:
    """The first (or last) fenced block that defines a function, else a bare `def f`."""
    blocks = [block.strip() for block in _FENCE.findall(completion) if "def " in block]
    if blocks:
        return blocks[-1] if last else blocks[0]
    bare = _BARE_DEF.search(completion)
    return bare.group(1).strip() if bare else None


def _read_program(completion: str) -> tuple[str | None, str | None]:
    """(program, rejection) for a Challenger completion: one function f, parsed."""
    program = _find_program(completion)
    if program is None:
        return None, "no_code_block"
    if len(program) > MAX_PROGRAM_CHARS:
        return None, "program_too_long"
    tree = parse(program)
    if isinstance(tree, str):
        return None, "syntax_error"
    problem = single_function_problem(tree, "f")
    return (None, problem) if problem else (program, None)


def _unwrap_call(text: str) -> str:
    """`f(3, 4)` -> `3, 4`: small models often write the call instead of the arguments."""
    text = text.strip().strip("`").strip()
    call = _CALL.match(text)
    return call.group(1).strip() if call else text


def _clean_value(text: str) -> str | None:
    text = _LINE_PREFIX.sub("", text.strip().strip("`").strip())
    text = _unwrap_call(text).rstrip(".").strip() if not text.startswith("def ") else text
    return text or None


# --- validation and grading glue -------------------------------------------------------

KINDS_BY_NAME: dict[str, CodeTaskKind] = {kind.name: kind for kind in (CODE_O, CODE_I, CODE_F)}


def task_from_proposal(proposal: Proposal) -> CodeTask:
    """The validated task carried by a proposal's payload; ValueError if not validated."""
    payload = proposal.payload
    if not payload.get("validated"):
        raise ValueError(
            f"proposal of kind {proposal.kind!r} has not been validated; run it through "
            "validate_proposals(pool, proposals) first"
        )
    pairs = tuple(IOPair(str(i), str(o)) for i, o in payload["pairs"])
    return CodeTask(
        CodeKind(proposal.kind), str(payload["program"]), pairs, bool(payload["trivial"])
    )


def validate_proposals(pool: SandboxPool, proposals: Sequence[Proposal]) -> list[Proposal]:
    """Run every parsed proposal in the sandbox (one batch); invalid ones get a rejection."""
    pending = [
        p
        for p in proposals
        if p.kind in KINDS_BY_NAME and p.valid and not p.payload.get("validated")
    ]
    requests = [
        ProgramRequest(CodeKind(p.kind), p.payload["program"], tuple(p.payload["inputs"]))
        for p in pending
    ]
    outcome = dict(zip(map(id, pending), validate_programs(pool, requests), strict=True))
    finished = []
    for proposal in proposals:
        validation = outcome.get(id(proposal))
        if validation is None:
            finished.append(proposal)
            continue
        events = [[event.kind, event.detail] for event in validation.events]
        payload = {**proposal.payload, "sandbox_events": events}
        if validation.task is None:
            finished.append(replace(proposal, payload=payload, rejection=validation.rejection))
            continue
        task = validation.task
        payload.update(
            validated=True, pairs=[[p.input, p.output] for p in task.pairs], trivial=task.trivial
        )
        reference = {
            CodeKind.OUTPUT: task.pairs[0].output,
            CodeKind.INPUT: task.pairs[0].input,
            CodeKind.FUNCTION: task.program,
        }[task.kind]
        finished.append(
            replace(
                proposal,
                question=solver_prompt(task),
                reference_answer=reference,
                payload=payload,
            )
        )
    return finished


def verify_proposal_answers(
    pool: SandboxPool, proposals: Sequence[Proposal], answers: Sequence[Sequence[str | None]]
) -> list[list[CodeVerdict]]:
    """Executor verdicts for each Solver answer (already extracted) of each proposal."""
    tasks = [task_from_proposal(proposal) for proposal in proposals]
    return verify_batch(pool, tasks, answers)
