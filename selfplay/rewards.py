"""Rewards of both roles, as pure functions of plain values.

The Challenger is paid for proposals at the edge of the Solver's ability, judged from the
Solver's pass rate p̂ on them (one of three published schemes, chosen in `RewardConfig`),
minus R-Zero's repetition penalty |C|/B for proposals in a near-duplicate cluster C
(`selfplay.near_duplicates`). Invalid proposals get a fixed negative reward, and valid but
trivial ones a milder one (Absolute Zero). The Solver gets 1 for matching the label, plus
an optional bonus for writing \\boxed{}; `adpo_weight` scales its advantage by the label's
confidence (Agent0) when the trainer asks for it.

Choices of ours, where the papers or our design card leave room:
- B in |C|/B is the number of valid proposals of the batch, not every proposal: invalid
  ones have no question to compare, and counting them would make duplicates cheaper the
  more garbage a batch holds. Trivial proposals are valid questions: they are clustered and
  count in B (a batch of copies of one trivial question is still repetitive), though their
  own reward stays fixed.
- total = base − repetition, unclipped, as our design card states: clipping at 0 would
  hide the penalty from proposals whose base reward is already low.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from selfplay.config import ChallengerRewardName, RewardConfig
from selfplay.near_duplicates import cluster_near_duplicates

RewardKind = Literal["valid", "invalid", "trivial"]


# --- difficulty rewards from the pass rate ------------------------------------------------


def uncertainty_reward(pass_rate: float) -> float:
    """Highest (1) when the Solver succeeds half the time, 0 when always or never."""
    _check_pass_rate(pass_rate)
    return 1.0 - 2.0 * abs(pass_rate - 0.5)  # R-Zero: 1 - 2|p̂ - 1/2|


def variance_gaussian_reward(pass_rate: float) -> float:
    """A Gaussian of the Bernoulli variance p̂(1 − p̂) around its maximum 0.25."""
    _check_pass_rate(pass_rate)
    variance = pass_rate * (1.0 - pass_rate)
    return math.exp(-((variance - 0.25) ** 2) / (2 * 0.01))  # SPICE: σ² = 0.01


def learnability_reward(pass_rate: float) -> float:
    """1 − p̂ for tasks the Solver sometimes but not always solves, else 0."""
    _check_pass_rate(pass_rate)
    return 1.0 - pass_rate if 0.0 < pass_rate < 1.0 else 0.0  # Absolute Zero


DIFFICULTY_REWARDS: dict[ChallengerRewardName, Callable[[float], float]] = {
    "uncertainty": uncertainty_reward,
    "variance_gaussian": variance_gaussian_reward,
    "learnability": learnability_reward,
}


def repetition_penalty(cluster_size: int, batch_size: int) -> float:
    """The share of the batch in the proposal's near-duplicate cluster (itself included)."""
    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be at least 1")
    if not 1 <= cluster_size <= batch_size:
        raise ValueError(
            f"cluster_size ({cluster_size}) must be between 1 (the proposal alone) and "
            f"batch_size ({batch_size})"
        )
    return cluster_size / batch_size  # R-Zero: |C|/B


def adpo_weight(pass_rate: float) -> float:
    """Advantage weight from label confidence: 0.6 up to p̂ = 0.3, rising to 1 at p̂ = 0.8."""
    _check_pass_rate(pass_rate)
    return 0.6 + 0.4 * min(max((pass_rate - 0.3) / 0.5, 0.0), 1.0)  # Agent0 (ADPO)


# --- the Challenger's reward over a batch --------------------------------------------------


@dataclass(frozen=True)
class ChallengerOutcome:
    """What is known of one proposal once the Solver has tried it."""

    question: str | None  # None when the completion could not be parsed
    valid: bool
    pass_rate: float | None  # None for invalid and trivial proposals
    trivial: bool = False


@dataclass(frozen=True)
class ChallengerReward:
    """A Challenger reward and its parts: total = base − repetition."""

    total: float
    base: float  # difficulty reward, or the fixed invalid / trivial reward
    repetition: float  # |C|/B; 0 for invalid and trivial proposals
    kind: RewardKind
    cluster_id: int | None  # near-duplicate cluster among the valid proposals

    def parts(self) -> dict[str, float | str | int | None]:
        """The fields as a JSON-ready dict (the warehouse's `rewards.parts_json`)."""
        return asdict(self)


def challenger_rewards(
    proposals: Sequence[ChallengerOutcome], config: RewardConfig
) -> list[ChallengerReward]:
    """One reward per proposal, in order; clusters are found among the valid questions."""
    for index, proposal in enumerate(proposals):
        _check_outcome(index, proposal)
    valid = [index for index, proposal in enumerate(proposals) if proposal.valid]
    questions = [proposals[index].question or "" for index in valid]
    cluster_of = dict(
        zip(valid, cluster_near_duplicates(questions, config.repetition_threshold), strict=True)
    )
    sizes = Counter(cluster_of.values())
    difficulty = DIFFICULTY_REWARDS[config.challenger]
    rewards = []
    for index, proposal in enumerate(proposals):
        if not proposal.valid:
            fixed = config.invalid_reward
            rewards.append(ChallengerReward(fixed, fixed, 0.0, "invalid", None))
            continue
        cluster = cluster_of[index]
        if proposal.trivial:
            fixed = config.trivial_reward
            rewards.append(ChallengerReward(fixed, fixed, 0.0, "trivial", cluster))
            continue
        assert proposal.pass_rate is not None  # checked in _check_outcome
        base = difficulty(proposal.pass_rate)
        repetition = repetition_penalty(sizes[cluster], len(valid))
        rewards.append(ChallengerReward(base - repetition, base, repetition, "valid", cluster))
    return rewards


# --- the Solver's reward ---------------------------------------------------------------


def solver_reward(answer_matches_label: bool, wrote_boxed: bool, config: RewardConfig) -> float:
    """1 for an answer matching the label (else 0), plus the format bonus for \\boxed{}.

    The bonus does not depend on correctness: writing \\boxed{} at all is what the small
    default model must learn first (it does so in ~4% of answers).
    """
    return (1.0 if answer_matches_label else 0.0) + (
        config.solver_format_bonus if wrote_boxed else 0.0
    )


# --- checks ----------------------------------------------------------------------------


def _check_pass_rate(pass_rate: float) -> None:
    if not 0.0 <= pass_rate <= 1.0:  # also rejects NaN
        raise ValueError(f"pass_rate ({pass_rate}) must be a share in [0, 1]")


def _check_outcome(index: int, proposal: ChallengerOutcome) -> None:
    if not proposal.valid:
        return
    if proposal.question is None:
        raise ValueError(f"proposal {index} is valid but has no question; mark it invalid")
    if proposal.trivial:
        return
    if proposal.pass_rate is None:
        raise ValueError(
            f"proposal {index} is valid and not trivial but has no pass_rate; "
            "score it with the Solver first or mark it trivial"
        )
    _check_pass_rate(proposal.pass_rate)
