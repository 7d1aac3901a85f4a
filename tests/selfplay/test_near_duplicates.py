"""Near-duplicate clusters: our BLEU, average linkage, ARI, and the fast path against the
O(B²) reference on a fixed set of 320 generated questions (`data/make_questions.py`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from selfplay import near_duplicates
from selfplay.near_duplicates import (
    adjusted_rand_index,
    average_linkage,
    bleu_distance,
    bleu_distance_matrix,
    cluster_near_duplicates,
    near_duplicate_clusters,
    question_words,
    reference_bleu_clusters,
    sentence_bleu,
)
from tests.selfplay.data.make_questions import (
    FIXTURE,
    FIXTURE_COUNT,
    FIXTURE_SEED,
    generate_questions,
)

# Measured on this fixture: ARI 1.000 (identical labels) at thresholds 0.3, 0.5 and 0.7, as on
# 400-question batches of seeds 1-3 at 0.2..0.9. The method is exact by construction; the
# tolerance only allows for a tie that a last-bit difference between the numpy and the Python
# BLEU breaks the other way: one text leaving the largest cluster (20) here scores 0.990.
ARI_TOLERANCE = 0.99


@pytest.fixture(scope="module")
def questions() -> list[str]:
    rows = [json.loads(line) for line in Path(FIXTURE).read_text().splitlines()]
    return [row["question"] for row in rows]


@pytest.fixture(scope="module")
def reference_distances(questions: list[str]) -> np.ndarray:
    return bleu_distance_matrix(questions)  # ~1 s: 51,040 pairs in Python


# --- BLEU ------------------------------------------------------------------------------


def test_words_are_lower_case_letters_and_digits() -> None:
    assert question_words(["What's 3+5?", "", "Héllo, WORLD"]) == [
        ["what", "s", "3", "5"],
        [],
        ["héllo", "world"],
    ]


def test_bleu_of_a_hand_computed_pair() -> None:
    hypothesis, reference = (
        ["the", "cat", "sat", "on", "the", "mat"],
        ["the", "cat", "sat", "on", "a", "mat"],
    )
    # precisions 5/6, 3/5, 2/4, 1/3; equal lengths, so no brevity penalty
    assert sentence_bleu(hypothesis, reference) == pytest.approx(12**-0.25)


def test_bleu_smooths_an_order_without_matches() -> None:
    hypothesis, reference = (
        ["one", "two", "three", "four", "five"],
        ["one", "two", "three", "six", "five"],
    )
    # precisions 4/5, 2/4, 1/3 and no 4-gram match of two: epsilon 0.1 over 2
    expected = (4 / 5 * 2 / 4 * 1 / 3 * 0.1 / 2) ** 0.25
    assert sentence_bleu(hypothesis, reference) == pytest.approx(expected)


def test_bleu_brevity_penalty_and_symmetric_distance() -> None:
    short, long = ["the", "cat", "sat"], ["the", "cat", "sat", "on", "the", "mat"]
    # all precisions 1 except the missing 4-gram (0.1 / 1); brevity exp(1 - 6/3)
    forward = math.exp(-1) * 0.1**0.25
    assert sentence_bleu(short, long) == pytest.approx(forward)
    backward = (3 / 6 * 2 / 5 * 1 / 4 * 0.1 / 3) ** 0.25
    assert sentence_bleu(long, short) == pytest.approx(backward)
    assert bleu_distance(short, long) == bleu_distance(long, short)
    assert bleu_distance(short, long) == pytest.approx(1 - (forward + backward) / 2)


def test_bleu_limits() -> None:
    words = ["find", "the", "remainder", "of", "7", "to", "the", "power", "20", "modulo", "11"]
    assert sentence_bleu(words, words) == pytest.approx(1.0)
    assert sentence_bleu(words, ["how", "many", "diagonals", "has", "a", "hexagon"]) == 0.0
    assert sentence_bleu([], words) == 0.0


def test_numpy_bleu_matches_the_python_one(questions: list[str]) -> None:
    texts = questions[:60]
    tokens = near_duplicates.tokenize(texts)
    left, right = np.triu_indices(len(texts), 1)
    fast = near_duplicates._pair_distances(
        near_duplicates._numbered_ngrams(tokens), tokens.lengths, left, right
    )
    split = question_words(texts)
    slow = [bleu_distance(split[i], split[j]) for i, j in zip(left, right, strict=True)]
    assert np.abs(fast - np.array(slow)).max() < 1e-12


# --- average linkage -------------------------------------------------------------------


def test_average_linkage_keeps_apart_groups_a_single_link_would_join() -> None:
    distances = np.array(
        [
            [0.0, 0.1, 0.9, 0.9],
            [0.1, 0.0, 0.45, 0.9],
            [0.9, 0.45, 0.0, 0.2],
            [0.9, 0.9, 0.2, 0.0],
        ]
    )
    # {0,1} and {2,3} are (0.9 + 0.9 + 0.45 + 0.9) / 4 = 0.7875 apart on average
    assert average_linkage(distances, 0.5) == [0, 0, 1, 1]


def test_average_linkage_joins_what_a_complete_link_would_not() -> None:
    distances = np.array([[0.0, 0.1, 0.4], [0.1, 0.0, 0.55], [0.4, 0.55, 0.0]])
    # 2 is (0.4 + 0.55) / 2 = 0.475 from {0, 1}, below 0.5, though 0.55 from 1
    assert average_linkage(distances, 0.5) == [0, 0, 0]
    assert average_linkage(distances, 0.47) == [0, 0, 1]


def test_average_linkage_threshold_is_strict() -> None:
    distances = np.array([[0.0, 0.5], [0.5, 0.0]])
    assert average_linkage(distances, 0.5) == [0, 1]
    assert average_linkage(distances, 0.500001) == [0, 0]


# --- the fast path ---------------------------------------------------------------------


def test_small_batch_clusters() -> None:
    texts = [
        "What is the greatest common divisor of 12 and 18?",
        "How many diagonals does a convex polygon with 9 sides have?",
        "What is the greatest common divisor of 14 and 18?",
        "",
        "",
    ]
    expected = [0, 1, 0, 2, 3]  # texts without words stay alone
    assert cluster_near_duplicates(texts) == expected
    assert reference_bleu_clusters(texts) == expected


def test_short_texts_without_4grams_still_cluster() -> None:
    # three words: no 4-gram to share, BLEU of a copy = 0.1^(1/4) = 0.56, distance 0.44;
    # two words: even a copy scores 0.01^(1/4) = 0.32, distance 0.68
    texts = ["gcd 4 6", "lcm 9 10", "gcd 4 6", "gcd 4", "gcd 4"]
    assert cluster_near_duplicates(texts) == reference_bleu_clusters(texts) == [0, 1, 0, 2, 3]
    assert cluster_near_duplicates(texts, threshold=0.7) == [0, 1, 0, 2, 2]


def test_empty_batch_and_threshold_check() -> None:
    assert cluster_near_duplicates([]) == []
    assert cluster_near_duplicates(["Only one question here?"]) == [0]
    with pytest.raises(ValueError, match=r"threshold \(1.5\) must be a 1 − BLEU distance"):
        cluster_near_duplicates(["a"], threshold=1.5)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_candidates_hold_every_close_pair(
    questions: list[str], reference_distances: np.ndarray, threshold: float
) -> None:
    """The property the exactness rests on: no pair closer than the threshold is missed."""
    left, right = near_duplicates._candidate_pairs(near_duplicates.tokenize(questions), threshold)
    candidates = set(zip(left.tolist(), right.tolist(), strict=True))
    close = zip(*np.nonzero(np.triu(reference_distances < threshold, 1)), strict=True)
    missed = [(int(i), int(j)) for i, j in close if (int(i), int(j)) not in candidates]
    assert not missed, f"{len(missed)} close pairs are not candidates, e.g. {missed[:3]}"
    assert len(candidates) < len(questions) * (len(questions) - 1) // 2 / 5


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_fast_clusters_agree_with_the_reference(
    questions: list[str], reference_distances: np.ndarray, threshold: float
) -> None:
    reference = average_linkage(reference_distances, threshold)
    ours = near_duplicate_clusters(questions, threshold)
    ari = adjusted_rand_index(reference, ours.labels)
    assert ari >= ARI_TOLERANCE, f"ARI {ari:.4f} at threshold {threshold}"
    assert len(set(reference)) < len(questions) * 0.6  # the fixture holds near duplicates


def test_fixture_is_what_its_script_writes(questions: list[str]) -> None:
    generated = generate_questions(FIXTURE_COUNT, FIXTURE_SEED)
    assert questions == [row["question"] for row in generated]


# --- adjusted Rand index -----------------------------------------------------------------


def test_adjusted_rand_index_values() -> None:
    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 3, 3]) == 1.0
    # contingency 2,1,1: index 1, E = 2 * 1 / 6, max 1.5
    assert adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)
    assert adjusted_rand_index([0, 0, 0, 0], [0, 1, 2, 3]) == 0.0
    assert adjusted_rand_index([0, 1, 2], [2, 1, 0]) == 1.0
    with pytest.raises(ValueError, match="equal length, not 2 and 3"):
        adjusted_rand_index([0, 1], [0, 1, 2])
