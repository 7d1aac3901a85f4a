"""Majority vote over answer clusters and the difficulty band, on literal values."""

from __future__ import annotations

import pytest

from verifiers.majority import Band, MajorityLabel, difficulty_band, majority_vote


def test_majority_of_eight_with_unanswered_samples() -> None:
    answers = ["4", None, "4.0", "5", None, "4", "6", "5"]
    cluster_ids = [0, None, 0, 1, None, 0, 2, 1]
    assert majority_vote(answers, cluster_ids) == MajorityLabel(
        label="4",
        majority_share=3 / 8,  # unanswered samples count in m
        n_samples=8,
        n_answered=6,
        n_clusters=3,
        cluster_sizes=(3, 2, 1),
        sample_in_label=(True, False, True, False, False, True, False, False),
    )


def test_label_is_the_first_member_of_the_winning_cluster() -> None:
    # Cluster ids need not be ordered; the label is the earliest sample of the winner.
    answers = ["7", "1/2", "0.5", r"\frac{1}{2}"]
    label = majority_vote(answers, [5, 9, 9, 9])
    assert label.label == "1/2"
    assert label.majority_share == 0.75
    assert label.sample_in_label == (False, True, True, True)


def test_tie_goes_to_the_cluster_that_appears_first() -> None:
    answers = ["3", "8", "8", "3", "1"]
    # "3" and "8" both have two members; "3" appears first (sample 0), so it wins.
    assert majority_vote(answers, [0, 1, 1, 0, 2]).label == "3"
    # Same sizes, ids swapped: the winner follows the sample order, not the id.
    assert majority_vote(answers, [7, 2, 2, 7, 0]).label == "3"
    assert majority_vote(["8", "3", "3", "8"], [1, 0, 0, 1]).label == "8"


def test_no_answers_gives_no_label() -> None:
    label = majority_vote([None, None, None], [None, None, None])
    assert label.label is None
    assert label.majority_share == 0.0
    assert label.n_answered == 0
    assert label.n_clusters == 0
    assert label.cluster_sizes == ()
    assert label.sample_in_label == (False, False, False)


def test_unanimous() -> None:
    label = majority_vote(["2"] * 8, [0] * 8)
    assert label.majority_share == 1.0
    assert label.cluster_sizes == (8,)
    assert all(label.sample_in_label)


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match=r"answers \(2\) and cluster_ids \(3\)"):
        majority_vote(["1", "2"], [0, 1, 2])


def test_majority_label_is_frozen() -> None:
    label = majority_vote(["1"], [0])
    with pytest.raises(AttributeError):
        label.label = "2"  # type: ignore[misc]


# --- difficulty band ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pass_rate", "band"),
    [
        (0.0, Band.TOO_HARD),
        (0.25, Band.TOO_HARD),
        (0.2999, Band.TOO_HARD),
        (0.3, Band.FRONTIER),  # the low edge is in the frontier
        (0.5, Band.FRONTIER),
        (0.8, Band.FRONTIER),  # so is the high edge
        (0.8001, Band.TOO_EASY),
        (0.875, Band.TOO_EASY),
        (1.0, Band.TOO_EASY),
    ],
)
def test_difficulty_band_defaults(pass_rate: float, band: Band) -> None:
    assert difficulty_band(pass_rate) is band


def test_difficulty_band_of_real_majority_shares() -> None:
    # With m = 8 the achievable shares straddle the edges: 2/8 < 0.3 < 3/8, 6/8 < 0.8 < 7/8.
    bands = [difficulty_band(k / 8) for k in range(9)]
    assert bands == [Band.TOO_HARD] * 3 + [Band.FRONTIER] * 4 + [Band.TOO_EASY] * 2


def test_difficulty_band_custom_edges() -> None:
    assert difficulty_band(0.5, low=0.5, high=0.5) is Band.FRONTIER
    assert difficulty_band(0.4, low=0.5, high=0.9) is Band.TOO_HARD
    assert difficulty_band(0.95, low=0.0, high=0.9) is Band.TOO_EASY


def test_band_values_are_stable_strings() -> None:
    assert [str(band) for band in Band] == ["too_easy", "frontier", "too_hard"]


@pytest.mark.parametrize(
    ("low", "high"),
    [(0.8, 0.3), (-0.1, 0.5), (0.3, 1.2)],
)
def test_difficulty_band_rejects_bad_edges(low: float, high: float) -> None:
    with pytest.raises(ValueError, match=rf"0 <= low <= high <= 1, got low={low}, high={high}"):
        difficulty_band(0.5, low=low, high=high)


@pytest.mark.parametrize("pass_rate", [-0.01, 1.01])
def test_difficulty_band_rejects_bad_pass_rate(pass_rate: float) -> None:
    with pytest.raises(ValueError, match="pass_rate must be in"):
        difficulty_band(pass_rate)
