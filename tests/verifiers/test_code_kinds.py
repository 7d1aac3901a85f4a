"""The code task kinds: Challenger prompts, lenient parsing, validation and grading glue."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from selfplay.kinds.base import Proposal
from selfplay.kinds.code import (
    CODE_F,
    CODE_I,
    CODE_O,
    KINDS_BY_NAME,
    CodeTaskKind,
    task_from_proposal,
    validate_proposals,
    verify_proposal_answers,
)
from verifiers.sandbox import SandboxLimits, SandboxPool

FENCE, ONE = "```python\n{}\n```\n", "<input>1</input>"
ALL_KINDS = (CODE_O, CODE_I, CODE_F)


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(workers=2, limits=SandboxLimits(wall_s=2.0, cpu_s=1.0)) as sandbox:
        yield sandbox


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda kind: kind.name)
def test_kinds_provide_the_task_kind_protocol(kind: CodeTaskKind) -> None:
    for method in ("challenger_messages", "parse_proposal", "solver_messages", "extract_answer"):
        assert callable(getattr(kind, method)), method
    assert KINDS_BY_NAME[kind.name] is kind
    assert sorted(KINDS_BY_NAME) == ["code_f", "code_i", "code_o"]


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda kind: kind.name)
def test_the_worked_example_is_itself_a_valid_task(kind: CodeTaskKind, pool: SandboxPool) -> None:
    messages = kind.challenger_messages(None)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    example = kind.parse_proposal(messages[2]["content"])
    assert example.valid, example.rejection
    validated = validate_proposals(pool, [example])[0]
    assert validated.valid and validated.payload["validated"], validated


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda kind: kind.name)
def test_the_constrained_format_admits_the_example_and_what_it_admits_parses(
    kind: CodeTaskKind,
) -> None:
    assert kind.challenger_format is not None
    example = kind.challenger_messages(None)[2]["content"]
    assert re.fullmatch(kind.challenger_format, example), example
    # The format cannot guarantee valid Python, but whatever it admits has the shape the
    # parser reads: a program and the right number of inputs.
    shaped = "```python\ndef f(x):\n    return x\n```\n" + "\n".join(
        f"<input>{i}</input>" for i in range(kind.inputs_asked)
    )
    assert re.fullmatch(kind.challenger_format, shaped)
    assert kind.parse_proposal(shaped).valid, kind.parse_proposal(shaped).rejection


def test_prompts_are_short_and_grounded_when_a_document_is_given() -> None:
    document = "Bees visit flowers in a fixed order each morning."
    messages = CODE_F.challenger_messages(document)
    assert document in messages[-1]["content"] and "Read the text" in messages[-1]["content"]
    assert messages[-1]["content"].count("<input>") == 4
    total = sum(len(m["content"]) for m in CODE_O.challenger_messages(None))
    assert total < 1200, f"Challenger prompt of {total} chars is long for a 135M model"


@pytest.mark.parametrize(
    ("completion", "program_start", "inputs"),
    [
        ("```python\ndef f(x):\n    return x + 1\n```\n<input>3</input>", "def f(x)", ["3"]),
        # unclosed fence, ended by the input tag
        ("```python\ndef f(x):\n    return x + 1\n<input>3</input>", "def f(x)", ["3"]),
        # no fence at all, a call instead of arguments, no closing tag
        ("Here it is.\ndef f(a, b):\n    return a - b\n<input>f(5, 2)", "def f(a, b)", ["5, 2"]),
        # extra inputs for a one-input kind: the first is kept
        ("```py\ndef f(s):\n    return s[::-1]\n```\n<input>'ab'</input><input>'c'</input>",
         "def f(s)", ["'ab'"]),
    ],
)  # fmt: skip
def test_parsing_is_lenient(completion: str, program_start: str, inputs: list[str]) -> None:
    proposal = CODE_O.parse_proposal(completion)
    assert proposal.valid, proposal.rejection
    assert proposal.payload["program"].startswith(program_start), proposal.payload
    assert proposal.payload["inputs"] == inputs and proposal.payload["validated"] is False


@pytest.mark.parametrize(
    ("kind", "completion", "rejection"),
    [
        (CODE_O, "I cannot write code.", "no_code_block"),
        (CODE_O, FENCE.format("def f(x):\n    return x"), "no_input_tag"),
        (CODE_O, FENCE.format("def f(x):\n    return x +") + ONE, "syntax_error"),
        (CODE_O, FENCE.format("def g(x):\n    return x") + ONE, "function_not_named_f"),
        (CODE_O, FENCE.format("x = 2\ndef f(y):\n    return y") + ONE, "top_level_assign"),
        (CODE_O, FENCE.format("def f(x):\n    return x") + "<input>open('a')</input>",
         "input_not_literal"),
        (CODE_F, FENCE.format("def f(x):\n    return x") + ONE, "code_f_needs_2_distinct_inputs"),
        (CODE_O, FENCE.format("def f(x):\n" + "    x += 1\n" * 800 + "    return x") + ONE,
         "program_too_long"),
    ],
)  # fmt: skip
def test_rejections_are_precise(kind: CodeTaskKind, completion: str, rejection: str) -> None:
    proposal = kind.parse_proposal(completion)
    assert (proposal.valid, proposal.rejection) == (False, rejection)


def test_validation_fills_the_task_for_each_kind(pool: SandboxPool) -> None:
    program = "```python\ndef f(a, b):\n    return a * 10 + b\n```\n"
    proposals = [
        CODE_O.parse_proposal(program + "<input>4, 2</input>"),
        CODE_I.parse_proposal(program + "<input>4, 2</input>"),
        CODE_F.parse_proposal(
            program
            + "".join(f"<input>{a}, {b}</input>" for a, b in ((1, 2), (3, 4), (5, 6), (7, 8)))
        ),  # fmt: skip
        CODE_O.parse_proposal(program.replace("a * 10", "a // 0") + "<input>4, 2</input>"),
        CODE_O.parse_proposal("no code"),
    ]
    deduction, abduction, induction, crashing, unparsed = validate_proposals(pool, proposals)
    assert (deduction.reference_answer, "f(4, 2)" in (deduction.question or "")) == ("42", True)
    assert abduction.reference_answer == "4, 2" and "Output: 42" in (abduction.question or "")
    assert "f(1, 2) == 12" in (induction.question or ""), induction.question
    assert "78" not in (induction.question or ""), "a held-out output leaked into the prompt"
    assert induction.reference_answer == task_from_proposal(induction).program
    assert crashing.rejection == "run_error:ZeroDivisionError", crashing
    assert unparsed is proposals[4]  # already rejected: passed through untouched


def test_validation_leaves_other_kinds_alone(pool: SandboxPool) -> None:
    maths = Proposal("math", question="1 + 1?", reference_answer="2")
    assert validate_proposals(pool, [maths]) == [maths]


def test_solver_messages_need_a_validated_proposal() -> None:
    proposal = CODE_O.parse_proposal("```python\ndef f(x):\n    return x\n```\n<input>1</input>")
    with pytest.raises(ValueError, match="validate_proposals"):
        CODE_O.solver_messages(proposal)


@pytest.mark.parametrize(
    ("kind", "completion", "answer"),
    [
        (CODE_O, "Let me think... so <answer>[1, 2]</answer>", "[1, 2]"),
        (CODE_O, "The output is 7.", "7"),
        (CODE_O, "```\n'abc'\n```", "'abc'"),
        (CODE_I, "<answer>f(2, 3)</answer>", "2, 3"),
        (CODE_I, "<answer>5", "5"),
        (CODE_O, "", None),
        (CODE_F, "First try:\n```python\ndef f(x):\n    return 1\n```\nBetter:\n"
                 "```python\ndef f(x):\n    return x * 2\n```", "def f(x):\n    return x * 2"),
        (CODE_F, "def f(x):\n    return x", "def f(x):\n    return x"),
    ],
)  # fmt: skip
def test_solver_answers_are_extracted(
    kind: CodeTaskKind, completion: str, answer: str | None
) -> None:
    assert kind.extract_answer(completion) == answer


def test_solver_answers_are_graded_by_execution(pool: SandboxPool) -> None:
    completion = "```python\ndef f(xs):\n    return sum(xs)\n```\n"
    inputs = "<input>[1, 2]</input><input>[5]</input><input>[]</input><input>[2, 2]</input>"
    proposals = validate_proposals(
        pool,
        [
            CODE_O.parse_proposal(completion + "<input>[1, 2, 3]</input>"),
            CODE_I.parse_proposal(completion + "<input>[1, 2, 3]</input>"),
            CODE_F.parse_proposal(completion + inputs),
        ],
    )
    completions = [
        ["<answer>6</answer>", "<answer>5</answer>"],
        ["<answer>[6]</answer>", "<answer>[1, 1]</answer>"],
        [FENCE.format("def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n"
                      "    return total"),
         FENCE.format("def f(xs):\n    return len(xs)")],
    ]  # fmt: skip
    kinds = (CODE_O, CODE_I, CODE_F)
    answers = [
        [k.extract_answer(c) for c in group] for k, group in zip(kinds, completions, strict=True)
    ]
    verdicts = verify_proposal_answers(pool, proposals, answers)
    assert [[v.correct for v in group] for group in verdicts] == [[True, False]] * 3


def test_an_unvalidated_proposal_cannot_be_graded(pool: SandboxPool) -> None:
    with pytest.raises(ValueError, match="has not been validated"):
        verify_proposal_answers(pool, [Proposal("code_o", question="x")], [["1"]])
