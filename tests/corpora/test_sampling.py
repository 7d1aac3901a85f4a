"""sample_documents: seeded, without replacement while possible, then fresh permutations."""

from __future__ import annotations

from collections import Counter

import pytest

from corpora import CorpusError, Document, sample_documents


@pytest.fixture
def docs() -> list[Document]:
    return [
        Document.from_text(f"Theorem {i}: statement and proof.", "s", f"T{i}") for i in range(50)
    ]


def test_same_seed_same_sample(docs: list[Document]) -> None:
    assert sample_documents(docs, 10, seed=7) == sample_documents(docs, 10, seed=7)


def test_different_seed_different_sample(docs: list[Document]) -> None:
    samples = {tuple(d.doc_id for d in sample_documents(docs, 10, seed=s)) for s in range(5)}
    assert len(samples) == 5


def test_without_replacement_while_the_corpus_lasts(docs: list[Document]) -> None:
    sample = sample_documents(docs, 50, seed=1)
    assert sorted(d.doc_id for d in sample) == sorted(d.doc_id for d in docs)
    assert sample != docs  # shuffled, not the input order


def test_beyond_the_corpus_each_pass_is_a_fresh_permutation(docs: list[Document]) -> None:
    sample = sample_documents(docs, 120, seed=3)
    first, second, rest = sample[:50], sample[50:100], sample[100:]
    assert set(first) == set(second) == set(docs)
    assert first != second
    assert len(set(rest)) == 20
    assert max(Counter(d.doc_id for d in sample).values()) == 3


def test_longer_sample_extends_a_shorter_one(docs: list[Document]) -> None:
    assert sample_documents(docs, 70, seed=5)[:30] == sample_documents(docs, 30, seed=5)


def test_zero_gives_empty_list(docs: list[Document]) -> None:
    assert sample_documents(docs, 0, seed=0) == []


def test_negative_n_is_rejected(docs: list[Document]) -> None:
    with pytest.raises(CorpusError, match=r"negative number of documents \(n=-1\)"):
        sample_documents(docs, -1, seed=0)


def test_empty_corpus_is_rejected() -> None:
    with pytest.raises(CorpusError, match="from an empty corpus"):
        sample_documents([], 3, seed=0)
