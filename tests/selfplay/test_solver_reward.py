"""The Solver's GRPO reward on code kinds: answers run through the real sandbox, as in labelling.

Each task is validated by the executor first (`validate_proposals`), exactly as the propose
stage does, and the reward gets its payload the way `solver_examples` hands it over. The right
answers differ on purpose from the Challenger's reference where the kind allows it (another
input for code_i, another program for code_f): only execution can tell they are right.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest

from selfplay.config import RewardConfig
from selfplay.kinds import get_kind
from selfplay.kinds.base import Proposal
from selfplay.kinds.code import validate_proposals
from selfplay.training import default_solver_reward
from verifiers.equivalence import EquivalenceChecker
from verifiers.sandbox import ExecutionResult, SandboxJob, SandboxLimits, SandboxPool

FENCE = "```python\n{}\n```\n"
# kind -> (Challenger completion, a right Solver completion, a wrong one)
CASES = {
    "code_o": (
        FENCE.format("def f(n):\n    return n * 3 + 1") + "<input>4</input>",
        "3 times 4 is 12, plus 1.\n<answer>13</answer>",
        "<answer>12</answer>",
    ),
    "code_i": (
        FENCE.format("def f(word):\n    return len(word) * 2") + "<input>'abc'</input>",
        "<answer>'xyz'</answer>",  # not the reference input 'abc', yet f gives the same 6
        "<answer>'ab'</answer>",
    ),
    "code_f": (
        FENCE.format("def f(xs):\n    return sorted(xs)[-1]")
        + "<input>[1, 5, 2]</input>\n<input>[7]</input>\n<input>[3, 9]</input>\n"
        "<input>[-2, -5, 4]</input>",
        # Another program with the same behaviour: graded on the held-out pairs, not the text.
        FENCE.format("def f(numbers):\n    return max(numbers)"),
        FENCE.format("def f(numbers):\n    return min(numbers)"),
    ),
}


class BatchCountingPool(SandboxPool):
    """The real pool, remembering the size of each batch it ran (an instrument, not a fake)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: list[int] = []

    def run_many(self, jobs: Sequence[SandboxJob]) -> list[ExecutionResult]:
        if jobs:
            self.batches.append(len(jobs))
        return super().run_many(jobs)


@pytest.fixture(scope="module")
def pool() -> Iterator[BatchCountingPool]:
    with BatchCountingPool(workers=2, limits=SandboxLimits(wall_s=2.0, cpu_s=1.0)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def checker() -> Iterator[EquivalenceChecker]:
    with EquivalenceChecker(workers=1) as equivalence:
        yield equivalence


def validated(pool: SandboxPool, kind: str) -> Proposal:
    [proposal] = validate_proposals(pool, [get_kind(kind).parse_proposal(CASES[kind][0])])
    assert proposal.valid and proposal.payload["validated"], proposal.rejection
    return proposal


def reward_of(
    reward, proposal: Proposal, completions: list[str], pool: BatchCountingPool
) -> list[float]:
    """The reward of `completions` answering `proposal`, as TRL hands one GRPO group over."""
    n = len(completions)
    task = json.dumps(proposal.payload, sort_keys=True)
    label = proposal.reference_answer or ""
    return reward(completions, [label] * n, [proposal.kind] * n, [0.5] * n, [task] * n)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_code_answers_are_rewarded_by_the_executor(
    kind: str, pool: BatchCountingPool, checker: EquivalenceChecker
):
    proposal = validated(pool, kind)
    _, right, wrong = CASES[kind]
    reward = default_solver_reward(checker, RewardConfig(), pool)
    assert reward_of(reward, proposal, [right, wrong, right], pool) == [1.0, 0.0, 1.0]
    # The extracted answer is not what the label says for code_i / code_f: execution decided.
    extracted = get_kind(kind).extract_answer(right)
    assert (extracted == proposal.reference_answer) is (kind == "code_o")


def test_one_sandbox_batch_grades_a_mixed_step(
    pool: BatchCountingPool, checker: EquivalenceChecker
):
    """Math and mcq keep their equivalence check and the \\boxed{} bonus; every code answer
    of the step is run in one batch and compared in one more, whatever the number of tasks."""
    rewards = RewardConfig(solver_format_bonus=0.5)
    reward = default_solver_reward(checker, rewards, pool)
    code = [validated(pool, kind) for kind in sorted(CASES)]
    completions, labels, kinds, tasks = [], [], [], []
    for proposal in code:
        _, right, wrong = CASES[proposal.kind]
        for text in (right, wrong):
            completions.append(text)
            labels.append(proposal.reference_answer or "")
            kinds.append(proposal.kind)
            tasks.append(json.dumps(proposal.payload, sort_keys=True))
    completions += ["<answer>13</answer> \\boxed{13}"]  # code_o: no \boxed{} bonus here
    code_o = kinds.index("code_o")
    labels, kinds, tasks = labels + [labels[code_o]], kinds + ["code_o"], tasks + [tasks[code_o]]
    completions += ["So \\boxed{\\frac{1}{2}}", "It is 0.4", "Answer: B"]
    labels += ["0.5", "0.5", "B"]
    kinds += ["math", "math", "mcq"]
    tasks += ["", "", ""]
    pool.batches.clear()
    values = reward(completions, labels, kinds, [0.5] * len(kinds), tasks)
    assert values == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.5, 0.0, 1.0]
    # Runs: code_i 1 per answer (2), code_f 1 per held-out pair (2 x 2); then one compare job.
    assert pool.batches == [6, 1]


def test_code_kinds_need_the_pool_and_their_task(
    pool: BatchCountingPool, checker: EquivalenceChecker
):
    proposal = validated(pool, "code_o")
    right = CASES["code_o"][1]
    without_pool = default_solver_reward(checker, RewardConfig())
    with pytest.raises(ValueError, match="pass a SandboxPool to default_solver_reward"):
        reward_of(without_pool, proposal, [right], pool)
    reward = default_solver_reward(checker, RewardConfig(), pool)
    with pytest.raises(ValueError, match="a code_o example came without its code_task"):
        reward([right], ["13"], ["code_o"], [0.5], [""])
