"""The parse / validate / label stages on hand-written completions, with the real sandbox pool
and real math-verify workers (no model needed: the engine's output is given)."""

from __future__ import annotations

import pytest

from selfplay.config import Config
from selfplay.engine import Completion
from selfplay.generate import ProposedTask, Slot, SolverSample, label
from selfplay.kinds import get_kind
from selfplay.kinds.code import validate_proposals
from selfplay.rows import label_rows, sandbox_event_rows, trajectory_rows
from verifiers.equivalence import EquivalenceChecker
from verifiers.sandbox import SandboxPool

CODE_O = "```python\ndef f(x):\n    return x * 2\n```\n<input>3</input>"
ESCAPING = "```python\ndef f(x):\n    import os\n    return os.getcwd()\n```\n<input>3</input>"
MATH = "<question>What is 2 + 3?</question>\n<answer>\\boxed{5}</answer>"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as pool:
        yield pool


@pytest.fixture(scope="module")
def checker():
    with EquivalenceChecker(workers=1) as checker:
        yield checker


def _completion(text: str) -> Completion:
    return Completion(
        text, prompt_tokens=10, completion_tokens=5, finish_reason="stop", latency_s=0.1
    )


def _task(index: int, kind: str, text: str, pool: SandboxPool) -> ProposedTask:
    proposal = get_kind(kind).parse_proposal(text)
    (proposal,) = validate_proposals(pool, [proposal])
    slot = Slot("run-test", 0, index, kind, None)
    return ProposedTask(slot, [{"role": "user", "content": "propose"}], _completion(text), proposal)


def _samples(task: ProposedTask, answers: list[str | None]) -> list[SolverSample]:
    return [
        SolverSample(
            task.task_id, i, [{"role": "user", "content": "solve"}], _completion(str(a)), a
        )
        for i, a in enumerate(answers)
    ]


def test_executor_is_the_label_for_code_and_majority_for_math(pool, checker):
    code = _task(0, "code_o", CODE_O, pool)
    math = _task(1, "math", MATH, pool)
    assert code.proposal.valid and code.proposal.reference_answer == "6"
    samples = _samples(code, ["6", "6", "7", None]) + _samples(math, ["5", "5.0", "6", "5"])
    labels = {lab.task_id: lab for lab in label(checker, [code, math], samples, Config(), pool)}

    executed = labels[code.task_id]
    assert executed.label_source == "executor"
    assert executed.majority.label == "6"
    assert executed.majority.majority_share == 0.5
    assert executed.majority.sample_in_label == (True, True, False, False)
    assert executed.band == "frontier"

    voted = labels[math.task_id]
    assert voted.label_source == "majority"
    assert voted.majority.majority_share == 0.75  # "5", "5.0", "5" are one cluster
    assert voted.agrees_with_reference is True
    assert voted.band == "frontier"

    config = Config()
    label_out, difficulty_out = label_rows(list(labels.values()), [code, math], "solver", config)
    assert {row["label_source"] for row in label_out} == {"executor", "majority"}
    verdicts = [
        row["verdict"]
        for row in trajectory_rows(
            samples, list(labels.values()), [code, math], "m", config.sampling.solver
        )
    ]
    assert verdicts == ["correct", "correct", "incorrect", "no_answer"] + [
        "correct",
        "correct",
        "incorrect",
        "correct",
    ]


def test_a_program_that_reaches_outside_is_rejected_and_its_events_become_rows(pool):
    escaping = _task(0, "code_o", ESCAPING, pool)
    assert not escaping.proposal.valid
    rows = sandbox_event_rows([escaping], [])
    assert rows, "the escape attempt must be recorded"
    assert all(row["task_id"] == escaping.task_id and row["run_id"] == "run-test" for row in rows)
    assert "banned_import" in {row["kind"] for row in rows}
