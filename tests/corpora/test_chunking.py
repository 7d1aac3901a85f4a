"""chunk_documents: boundaries, size limits, merging of short chunks, and stable ids."""

from __future__ import annotations

import re

import pytest

from corpora import (
    CorpusError,
    Document,
    chunk_documents,
    content_id,
    load_corpus,
    sample_corpus_path,
)


def words(count: int, word: str = "lemma") -> str:
    return " ".join([word] * count)


def sentence(length: int) -> str:
    """A sentence of exactly `length` characters ending in a full stop."""
    body = ("proof " * length)[: length - 1].rstrip()
    return body + "x" * (length - 1 - len(body)) + "."


def without_whitespace(text: str) -> str:
    return re.sub(r"\s", "", text)


def locate(text: str, chunks: list[Document]) -> list[tuple[int, int]]:
    """Offsets of each chunk in the original text, which chunks only trim at their edges."""
    spans, position = [], 0
    for chunk in chunks:
        start = text.index(chunk.text, position)
        spans.append((start, start + len(chunk.text)))
        position = start + len(chunk.text)
    return spans


def token_length_at(text: str, position: int) -> int:
    """Length of the whitespace-free run of `text` that contains `position`."""
    start = end = position
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return end - start


def assert_invariants(doc: Document, chunks: list[Document], max_chars: int) -> None:
    assert without_whitespace("".join(c.text for c in chunks)) == without_whitespace(doc.text)
    assert all(len(c.text) <= max_chars for c in chunks), [len(c.text) for c in chunks]
    spans = locate(doc.text, chunks)
    for (_, left_end), (right_start, _) in zip(spans, spans[1:], strict=False):
        if left_end == right_start:  # no whitespace between two chunks: a word was cut
            assert token_length_at(doc.text, left_end) > max_chars, (doc.title, left_end)


def test_short_documents_pass_through_unchanged() -> None:
    doc = Document.from_text("  A short note.\n", "s", "Note", {"domain": "math"})
    assert chunk_documents([doc], max_chars=2000) == [doc]
    assert chunk_documents([doc], max_chars=2000)[0] is doc


def test_splits_on_paragraph_boundaries_first() -> None:
    paragraphs = [sentence(800), sentence(700), sentence(900)]
    doc = Document.from_text("\n\n".join(paragraphs), "src", "Paper", {"licence": "CC0"})
    chunks = chunk_documents([doc], max_chars=1000, min_chars=100)
    assert [c.text for c in chunks] == paragraphs
    assert [c.title for c in chunks] == ["Paper (part 1)", "Paper (part 2)", "Paper (part 3)"]
    assert [c.chunk_index for c in chunks] == [0, 1, 2]
    assert all(c.parent_id == doc.doc_id for c in chunks)
    assert all(c.doc_id == content_id(c.text) for c in chunks)
    assert all(c.source == "src" and c.metadata == {"licence": "CC0"} for c in chunks)


def test_long_paragraph_falls_back_to_sentence_ends() -> None:
    text = " ".join(sentence(90) for _ in range(30))  # one 2,729-char paragraph
    doc = Document.from_text(text, "s", "t")
    chunks = chunk_documents([doc], max_chars=500, min_chars=100)
    assert all(c.text.endswith(".") for c in chunks)
    assert all(len(c.text) <= 500 for c in chunks)
    assert_invariants(doc, chunks, 500)


def test_line_breaks_are_boundaries_before_spaces() -> None:
    lines = [words(30) for _ in range(20)]  # 179-char lines, no punctuation
    doc = Document.from_text("\n".join(lines), "s", "t")
    chunks = chunk_documents([doc], max_chars=400, min_chars=50)
    assert [c.text for c in chunks] == ["\n".join(lines[:2])] * 10


def test_unpunctuated_line_falls_back_to_whitespace() -> None:
    doc = Document.from_text(words(1000, "vertex"), "s", "t")  # 6,999 chars, one line
    chunks = chunk_documents([doc], max_chars=1000, min_chars=100)
    assert all(set(c.text.split()) == {"vertex"} for c in chunks)
    assert sum(len(c.text.split()) for c in chunks) == 1000
    assert_invariants(doc, chunks, 1000)


def test_over_long_token_is_the_only_thing_cut_mid_word() -> None:
    token = "a" * 4500
    doc = Document.from_text(f"{words(50)}\n\n{token}\n\n{words(50)}", "s", "t")
    chunks = chunk_documents([doc], max_chars=2000, min_chars=200)
    # The token's 500-char remainder and the last paragraph pack together.
    assert [len(c.text) for c in chunks] == [299, 2000, 2000, 801]
    assert_invariants(doc, chunks, 2000)


def test_short_tail_is_rebalanced_with_the_previous_chunk() -> None:
    long_paragraph = " ".join(sentence(95) for _ in range(20))  # 1,919 chars
    doc = Document.from_text(f"{long_paragraph}\n\n{sentence(100)}", "s", "t")
    chunks = chunk_documents([doc], max_chars=2000, min_chars=200)
    # Packing alone gives [1919] and [100]; joined they overflow, so they are re-split
    # at the sentence end nearest the middle.
    assert [len(c.text) for c in chunks] == [1055, 965]
    assert all(c.text.endswith(".") for c in chunks)
    assert_invariants(doc, chunks, 2000)


def test_first_chunk_too_short_is_rebalanced_with_the_next() -> None:
    long_paragraph = " ".join(sentence(95) for _ in range(20))
    doc = Document.from_text(f"{sentence(100)}\n\n{long_paragraph}", "s", "t")
    chunks = chunk_documents([doc], max_chars=2000, min_chars=200)
    assert [len(c.text) for c in chunks] == [965, 1055]
    assert_invariants(doc, chunks, 2000)


def test_short_chunk_between_full_ones_is_rebalanced_within_limits() -> None:
    long_paragraph = " ".join(sentence(95) for _ in range(20))  # 1,919 chars
    doc = Document.from_text(f"{long_paragraph}\n\n{sentence(150)}\n\n{long_paragraph}", "s", "t")
    chunks = chunk_documents([doc], max_chars=2000, min_chars=200)
    assert all(200 <= len(c.text) <= 2000 for c in chunks), [len(c.text) for c in chunks]
    assert len(chunks) == 3
    assert_invariants(doc, chunks, 2000)


def test_chunk_ids_are_stable_and_content_addressed() -> None:
    doc = Document.from_text("\n\n".join(sentence(600) + str(i) for i in range(10)), "s", "t")
    first = chunk_documents([doc], max_chars=1500, min_chars=100)
    again = chunk_documents([Document.from_text(doc.text, "other", "Other")], 1500, 100)
    assert [c.doc_id for c in first] == [c.doc_id for c in again]
    assert [c.doc_id for c in first] == [content_id(c.text) for c in first]
    assert len({c.doc_id for c in first}) == len(first)


def test_rechunking_a_chunk_keeps_the_original_parent() -> None:
    doc = Document.from_text("\n\n".join(sentence(900) for _ in range(4)), "s", "t")
    chunk = chunk_documents([doc], max_chars=1900, min_chars=100)[0]
    parts = chunk_documents([chunk], max_chars=1000, min_chars=100)
    assert len(parts) == 2
    assert all(part.parent_id == doc.doc_id for part in parts)


@pytest.mark.parametrize(("max_chars", "min_chars"), [(0, 0), (100, 51), (100, -1)])
def test_invalid_sizes_are_rejected(max_chars: int, min_chars: int) -> None:
    doc = Document.from_text("text", "s", "t")
    with pytest.raises(CorpusError, match="must be"):
        chunk_documents([doc], max_chars=max_chars, min_chars=min_chars)


def test_invariants_hold_on_the_bundled_corpus() -> None:
    docs = load_corpus(sample_corpus_path()).documents
    chunks = chunk_documents(docs, max_chars=400, min_chars=100)
    by_parent: dict[str, list[Document]] = {}
    for chunk in chunks:
        by_parent.setdefault(chunk.parent_id or chunk.doc_id, []).append(chunk)
    assert len(by_parent) == len(docs)
    for doc in docs:
        parts = by_parent[doc.doc_id]
        assert [p.chunk_index for p in parts] == list(range(len(parts)))
        assert_invariants(doc, parts, 400)
    short = [c.title for c in chunks if len(c.text) < 100 and c.parent_id is not None]
    assert short == []
