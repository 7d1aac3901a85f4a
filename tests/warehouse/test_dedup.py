"""Word n-grams, exact and near-duplicate removal, and decontamination."""

from __future__ import annotations

import random

import numpy as np
import pytest

from warehouse.decontam import contaminated
from warehouse.dedup import NearDuplicateConfig, dedup_texts, minhash_signatures
from warehouse.ngrams import tokenize, whole_hashes, windows

SHEEP = (
    "A farmer has 17 sheep and all but 9 run away. How many sheep does the farmer "
    "have left after the storm passes and the gate is fixed?"
)


def test_tokenize_normalises_case_punctuation_and_width() -> None:
    tokens = tokenize(["Hello, WORLD!", "hello world", "ｈｅｌｌｏ   world", None, "", "?!"])
    keys = whole_hashes(tokens)
    assert list(tokens.lengths) == [2, 2, 2, 0, 0, 0]
    assert keys[0] == keys[1] == keys[2] != 0  # NFKC folds the full-width letters
    assert list(keys[3:]) == [0, 0, 0]


def test_window_hashes_do_not_depend_on_the_text_around_them() -> None:
    tokens = tokenize(["the cat sat on the mat", "on the mat", "a dog sat"])
    trigrams = windows(tokens, 3)
    by_text = {int(i): [] for i in trigrams.text_index}
    for text, value in zip(trigrams.text_index, trigrams.hashes, strict=True):
        by_text[int(text)].append(int(value))
    assert by_text[0][-1] == by_text[1][0]  # "on the mat" in both
    assert set(by_text[0]).isdisjoint(by_text[2])


def test_whole_if_shorter_gives_short_texts_one_window() -> None:
    tokens = tokenize(["one two", "one two three four"])
    shingles = windows(tokens, 3, whole_if_shorter=True)
    assert list(shingles.text_index) == [0, 1, 1]


def test_exact_duplicates_ignore_case_and_punctuation_and_keep_the_first() -> None:
    exact, near = dedup_texts([SHEEP, SHEEP.upper(), SHEEP.replace("?", " ?!"), "other text"])
    assert list(exact) == [False, True, True, False]
    assert not near.any()


def test_near_duplicate_above_threshold_is_removed_below_is_kept() -> None:
    one_word_changed = SHEEP.replace("storm", "rain")  # 3 of 24 shingles differ: J ~ 0.78
    tail_changed = SHEEP.replace("fixed?", "fixed again?")  # J ~ 0.92
    texts = [SHEEP, tail_changed, one_word_changed, "What is the capital of France?"]
    exact, near = dedup_texts(texts, NearDuplicateConfig(threshold=0.85))
    assert not exact.any()
    assert list(near) == [False, True, False, False]
    _, near_loose = dedup_texts(texts, NearDuplicateConfig(threshold=0.7))
    assert list(near_loose) == [False, True, True, False]


def test_a_near_duplicate_cluster_keeps_the_member_that_comes_first() -> None:
    cluster = [SHEEP.replace("fixed?", "fixed again?"), SHEEP, SHEEP + " Count them."]
    _, near = dedup_texts(cluster)
    assert list(near) == [False, True, True]
    _, near = dedup_texts(cluster[::-1])
    assert list(near) == [False, True, True]


def test_near_off_and_exact_off() -> None:
    texts = [SHEEP, SHEEP.lower(), SHEEP.replace("fixed?", "fixed again?")]
    exact, near = dedup_texts(texts, None)
    assert list(exact) == [False, True, False] and not near.any()
    exact, near = dedup_texts(texts, exact=False)
    assert not exact.any() and list(near) == [False, True, True]  # exact copy: similarity 1


def test_dedup_is_stable_across_calls_and_input_sizes() -> None:
    rng = random.Random(7)
    vocabulary = [f"w{i}" for i in range(500)]
    texts = [" ".join(rng.choice(vocabulary) for _ in range(15)) for _ in range(300)]
    texts += [text + " tail" for text in texts[:30]]  # 30 planted near duplicates
    first = dedup_texts(texts)
    second = dedup_texts(texts)
    assert np.array_equal(first[1], second[1])
    assert first[1][300:].sum() >= 28  # J = 13/14 ~ 0.93 each; LSH recall ~1
    assert not first[1][:300].any()  # random texts share nothing


def test_minhash_estimates_jaccard() -> None:
    left = " ".join(f"w{i}" for i in range(100))
    right = " ".join(f"w{i}" for i in range(50, 150))  # 48 of 148 trigrams shared: J = 0.32
    config = NearDuplicateConfig(bands=40, rows_per_band=5)
    signatures, has_words = minhash_signatures(tokenize([left, right]), config)
    estimate = (signatures[0] == signatures[1]).mean()
    assert has_words.all()
    assert estimate == pytest.approx(48 / 148, abs=0.1), f"estimate {estimate:.3f}"


def test_config_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match=r"threshold \(1.5\) must be in \(0, 1\]"):
        NearDuplicateConfig(threshold=1.5)


EVALUATIONS = [
    "Calculate 3 + 4.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?",
]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("she sold clips to 48 of her friends in April and then she sold half as many", True),
        ("she sold clips to 48 of her friends in April and then she bought", False),  # 12 words
        ("Natalia sold clips", True),  # short task found whole inside an evaluation
        ("calculate 3+4", True),  # same words as a short evaluation item
        ("First calculate 3 + 4, then double the result.", True),  # contains it whole
        ("calculate 3 + 5", False),
        ("How many apples does Tom have if he had 5 and ate 2?", False),
    ],
)
def test_contamination_follows_the_13_gram_rule(task: str, expected: bool) -> None:
    assert list(contaminated([task], EVALUATIONS)) == [expected]


def test_contamination_with_no_evaluations_flags_nothing() -> None:
    assert not contaminated(["Calculate 3 + 4."], []).any()
    assert list(contaminated([None, ""], EVALUATIONS)) == [False, False]
