"""Document ids are content hashes; the record refuses inconsistent or unserialisable input."""

from __future__ import annotations

import hashlib

import pytest

from corpora import CorpusError, Document, content_id


def test_doc_id_is_the_sha256_prefix_of_the_text() -> None:
    doc = Document.from_text("Euler's identity relates e, i and pi.", "notes.md", "Euler")
    expected = hashlib.sha256(b"Euler's identity relates e, i and pi.").hexdigest()[:32]
    assert doc.doc_id == expected
    assert len(doc.doc_id) == 32


def test_same_text_same_id_whatever_the_source() -> None:
    first = Document.from_text("A group is a set with an operation.", "a.txt", "A")
    second = Document.from_text(
        "A group is a set with an operation.", "b.jsonl", "B", {"licence": "CC0"}
    )
    assert first.doc_id == second.doc_id
    assert first.doc_id != content_id("A group is a set with an operation!")


def test_non_ascii_text_hashes_its_utf8_bytes() -> None:
    text = "Schrödinger: iħ ∂ψ/∂t = Ĥψ"
    assert content_id(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def test_from_text_copies_metadata_and_defaults() -> None:
    metadata = {"licence": "BSD-3-Clause", "domain": "math"}
    doc = Document.from_text("text", "src", "title", metadata)
    metadata["domain"] = "changed"
    assert doc.metadata == {"licence": "BSD-3-Clause", "domain": "math"}
    assert (doc.chunk_index, doc.parent_id) == (0, None)


def test_documents_are_hashable_despite_dict_metadata() -> None:
    doc = Document.from_text("text", "src", "title", {"k": [1, 2]})
    assert len({doc, Document.from_text("text", "src", "title", {"k": [1, 2]})}) == 1


def test_mismatched_doc_id_is_rejected() -> None:
    with pytest.raises(CorpusError, match="does not match the text's content hash"):
        Document(doc_id="0" * 32, text="hello", source="s", title="t")


def test_metadata_must_be_json_serialisable() -> None:
    with pytest.raises(CorpusError, match="not JSON-serialisable"):
        Document.from_text("hello", "s", "t", {"when": object()})


def test_negative_chunk_index_is_rejected() -> None:
    with pytest.raises(CorpusError, match="chunk_index must be >= 0"):
        Document.from_text("hello", "s", "t", chunk_index=-1)
