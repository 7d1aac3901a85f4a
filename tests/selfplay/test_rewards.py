"""Rewards: each formula on literal pass rates, and the Challenger's batch reward."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest

from selfplay.config import RewardConfig
from selfplay.rewards import (
    ChallengerOutcome,
    ChallengerReward,
    adpo_weight,
    challenger_rewards,
    learnability_reward,
    repetition_penalty,
    solver_reward,
    uncertainty_reward,
    variance_gaussian_reward,
)

TRAIN = "A train leaves the station at {} km/h. A second train leaves 2 hours later at 90 km/h. "
TRAIN += "After how many hours does the second train catch up?"
GCD = "What is the greatest common divisor of 84 and 126?"
DIAGONALS = "How many diagonals does a convex polygon with 11 sides have?"


@pytest.mark.parametrize(
    ("pass_rate", "expected"), [(0.5, 1.0), (0.0, 0.0), (1.0, 0.0), (0.25, 0.5), (0.875, 0.25)]
)
def test_uncertainty_reward(pass_rate: float, expected: float) -> None:
    assert uncertainty_reward(pass_rate) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("pass_rate", "expected"),
    [
        (0.5, 1.0),
        (0.0, 0.0439369),  # variance 0: exp(-0.25² / 0.02) = exp(-3.125)
        (1.0, 0.0439369),
        (0.25, 0.8225776),  # variance 0.1875: exp(-0.0625² / 0.02)
    ],
)
def test_variance_gaussian_reward(pass_rate: float, expected: float) -> None:
    assert variance_gaussian_reward(pass_rate) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize(
    ("pass_rate", "expected"), [(0.0, 0.0), (1.0, 0.0), (0.25, 0.75), (0.875, 0.125)]
)
def test_learnability_reward(pass_rate: float, expected: float) -> None:
    assert learnability_reward(pass_rate) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("pass_rate", "expected"), [(0.0, 0.6), (0.3, 0.6), (0.55, 0.8), (0.8, 1.0), (1.0, 1.0)]
)
def test_adpo_weight(pass_rate: float, expected: float) -> None:
    assert adpo_weight(pass_rate) == pytest.approx(expected)


@pytest.mark.parametrize(
    "reward", [uncertainty_reward, variance_gaussian_reward, learnability_reward, adpo_weight]
)
@pytest.mark.parametrize("pass_rate", [-0.1, 1.5, math.nan])
def test_pass_rate_outside_unit_interval_is_refused(
    reward: Callable[[float], float], pass_rate: float
) -> None:
    with pytest.raises(ValueError, match=rf"pass_rate \({pass_rate}\) must be a share in \[0, 1\]"):
        reward(pass_rate)


def test_repetition_penalty() -> None:
    assert repetition_penalty(3, 8) == 0.375
    assert repetition_penalty(1, 1) == 1.0
    with pytest.raises(ValueError, match=r"batch_size \(0\) must be at least 1"):
        repetition_penalty(1, 0)
    with pytest.raises(
        ValueError, match=r"cluster_size \(5\) must be between 1 .* batch_size \(4\)"
    ):
        repetition_penalty(5, 4)
    with pytest.raises(ValueError, match=r"cluster_size \(0\) must be between 1"):
        repetition_penalty(0, 4)


def test_challenger_rewards_over_a_batch() -> None:
    proposals = [
        ChallengerOutcome(TRAIN.format(60), valid=True, pass_rate=0.5),
        ChallengerOutcome(None, valid=False, pass_rate=None),
        ChallengerOutcome(TRAIN.format(70), valid=True, pass_rate=0.25),
        ChallengerOutcome(GCD, valid=True, pass_rate=0.5),
        ChallengerOutcome(DIAGONALS, valid=True, pass_rate=None, trivial=True),
    ]
    rewards = challenger_rewards(proposals, RewardConfig())
    # B = 4 valid proposals (the trivial one included); the two trains are one cluster
    assert rewards == [
        ChallengerReward(total=0.5, base=1.0, repetition=0.5, kind="valid", cluster_id=0),
        ChallengerReward(total=-1.0, base=-1.0, repetition=0.0, kind="invalid", cluster_id=None),
        ChallengerReward(total=0.0, base=0.5, repetition=0.5, kind="valid", cluster_id=0),
        ChallengerReward(total=0.75, base=1.0, repetition=0.25, kind="valid", cluster_id=1),
        ChallengerReward(total=-0.5, base=-0.5, repetition=0.0, kind="trivial", cluster_id=2),
    ]


def test_invalid_proposals_do_not_dilute_the_penalty() -> None:
    invalid = ChallengerOutcome("<question>unfinished", valid=False, pass_rate=None)
    proposals = [invalid, invalid, ChallengerOutcome(GCD, valid=True, pass_rate=0.5)]
    assert challenger_rewards(proposals, RewardConfig())[2].repetition == 1.0  # |C| = B = 1


def test_trivial_copies_count_in_the_cluster() -> None:
    proposals = [
        ChallengerOutcome(GCD, valid=True, pass_rate=0.5),
        ChallengerOutcome(GCD, valid=True, pass_rate=None, trivial=True),
        ChallengerOutcome(DIAGONALS, valid=True, pass_rate=0.5),
    ]
    first = challenger_rewards(proposals, RewardConfig())[0]
    assert (first.repetition, first.total) == pytest.approx((2 / 3, 1 / 3))


@pytest.mark.parametrize(
    ("scheme", "base"),
    [("learnability", 0.75), ("variance_gaussian", 0.8225776)],
)
def test_configured_scheme_gives_the_base(scheme: str, base: float) -> None:
    config = RewardConfig.model_validate({"challenger": scheme, "invalid_reward": -2.0})
    proposals = [
        ChallengerOutcome(GCD, valid=True, pass_rate=0.25),
        ChallengerOutcome(None, valid=False, pass_rate=None),
    ]
    rewards = challenger_rewards(proposals, config)
    assert rewards[0].base == pytest.approx(base, abs=1e-7)
    assert rewards[0].total == pytest.approx(base - 1.0, abs=1e-7)  # alone: |C| = B = 1
    assert rewards[1].total == -2.0


def test_valid_proposal_needs_a_question_and_a_pass_rate() -> None:
    with pytest.raises(
        ValueError, match="proposal 1 is valid and not trivial but has no pass_rate"
    ):
        challenger_rewards(
            [ChallengerOutcome(GCD, True, 0.5), ChallengerOutcome(DIAGONALS, True, None)],
            RewardConfig(),
        )
    with pytest.raises(ValueError, match="proposal 0 is valid but has no question"):
        challenger_rewards([ChallengerOutcome(None, True, 0.5)], RewardConfig())
    with pytest.raises(ValueError, match=r"pass_rate \(2.0\) must be a share"):
        challenger_rewards([ChallengerOutcome(GCD, True, 2.0)], RewardConfig())


def test_parts_are_json_ready() -> None:
    reward = ChallengerReward(total=0.5, base=1.0, repetition=0.5, kind="valid", cluster_id=3)
    parts = reward.parts()
    assert parts == {"total": 0.5, "base": 1.0, "repetition": 0.5, "kind": "valid", "cluster_id": 3}
    assert json.loads(json.dumps(parts)) == parts


def test_solver_reward() -> None:
    plain, bonus = RewardConfig(), RewardConfig(solver_format_bonus=0.1)
    assert solver_reward(True, False, plain) == 1.0
    assert solver_reward(False, True, plain) == 0.0
    assert solver_reward(True, True, bonus) == pytest.approx(1.1)
    assert solver_reward(False, True, bonus) == pytest.approx(0.1)
    assert solver_reward(False, False, bonus) == 0.0
