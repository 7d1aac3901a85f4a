"""load_corpus on every source type and on each kind of bad input, with real files in tmp_path."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpora import CorpusError, chunk_documents, content_id, load_corpus

PROSE = "The derivative of a polynomial lowers its degree by one."


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_folder_reads_text_markdown_jsonl_and_parquet_recursively(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("Plain text about primes.", encoding="utf-8")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "guide.md").write_text(
        "intro line\n# Graph colouring\n\nA proper colouring ...", encoding="utf-8"
    )
    write_jsonl(tmp_path / "sub" / "rows.jsonl", [json.dumps({"text": "From JSONL."})])
    pq.write_table(pa.table({"text": ["From Parquet."]}), tmp_path / "rows.parquet")
    (tmp_path / ".hidden.txt").write_text("never read", encoding="utf-8")

    load = load_corpus(tmp_path)

    assert sorted(doc.text for doc in load.documents) == sorted(
        [
            "Plain text about primes.",
            "intro line\n# Graph colouring\n\nA proper colouring ...",
            "From JSONL.",
            "From Parquet.",
        ]
    )
    titles = {doc.text: doc.title for doc in load.documents}
    assert titles["Plain text about primes."] == "notes"
    assert titles["intro line\n# Graph colouring\n\nA proper colouring ..."] == "Graph colouring"
    guide = next(doc for doc in load.documents if doc.title == "Graph colouring")
    assert guide.metadata == {"relative_path": "sub/deeper/guide.md", "format": "md"}
    assert guide.source == str(tmp_path / "sub" / "deeper" / "guide.md")
    assert load.skipped == []


def test_folder_records_unsupported_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(PROSE, encoding="utf-8")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    load = load_corpus(str(tmp_path))
    assert [doc.text for doc in load.documents] == [PROSE]
    assert [(s.path, s.line) for s in load.skipped] == [(str(tmp_path / "table.csv"), None)]
    assert "unsupported file type '.csv'" in load.skipped[0].reason


def test_jsonl_file_title_optional_and_other_columns_become_metadata(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            json.dumps({"text": "First.", "title": "One", "licence": "CC-BY-4.0", "tags": ["a"]}),
            "",
            json.dumps({"text": "Second.", "domain": "math"}),
        ],
    )
    load = load_corpus(path)
    first, second = load.documents
    assert (first.title, first.metadata) == ("One", {"licence": "CC-BY-4.0", "tags": ["a"]})
    assert (second.title, second.metadata) == ("docs line 3", {"domain": "math"})
    assert first.source == str(path)
    assert first.doc_id == content_id("First.")
    assert load.skipped == []


def test_parquet_file_with_metadata_columns(tmp_path: Path) -> None:
    path = tmp_path / "docs.parquet"
    table = pa.table(
        {
            "text": ["Alpha decay emits a helium nucleus.", None, "Beta decay emits an electron."],
            "title": ["Alpha", "Nothing", None],
            "year": [1899, 1900, 1901],
            "added": [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)],
        }
    )
    pq.write_table(table, path)
    load = load_corpus(path)
    assert [(d.title, d.metadata) for d in load.documents] == [
        ("Alpha", {"year": 1899, "added": "2024-01-02"}),
        ("docs row 3", {"year": 1901, "added": "2024-01-04"}),
    ]
    assert [(s.line, s.reason) for s in load.skipped] == [
        (2, "'text' is NoneType, expected a string")
    ]


def test_single_text_file_and_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_bytes(b"\xef\xbb\xbfline one\r\nline two\r\n")
    (doc,) = load_corpus(path).documents
    assert doc.text == "line one\nline two\n"


def test_missing_path_names_the_path_and_what_is_accepted(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(CorpusError) as error:
        load_corpus(missing)
    assert str(error.value) == (
        f"corpus path '{missing}' does not exist: expected a folder, "
        "or a .txt, .md, .jsonl or .parquet file"
    )


def test_unsupported_single_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"unsupported corpus file .*data\.csv"):
        load_corpus(path)


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError) as error:
        load_corpus(tmp_path)
    assert str(error.value) == (
        f"no documents found in {tmp_path}: expected .txt, .md, .jsonl or .parquet files"
    )


def test_folder_of_only_bad_files_is_an_error_listing_why(tmp_path: Path) -> None:
    (tmp_path / "blank.md").write_text("   \n\t\n", encoding="utf-8")
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(CorpusError) as error:
        load_corpus(tmp_path)
    message = str(error.value)
    assert message.startswith(f"no documents found in {tmp_path}: expected")
    assert "skipped 2 input(s)" in message
    assert "blank.md: empty document" in message
    assert "image.txt: binary file" in message


def test_bad_text_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text(PROSE, encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes(b"hello world \xff caf\xe9")
    (tmp_path / "binary.txt").write_bytes(b"abc\x00def")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "spaces.md").write_text(" \n\n  \t", encoding="utf-8")
    load = load_corpus(tmp_path)
    assert [doc.text for doc in load.documents] == [PROSE]
    reasons = {Path(s.path).name: s.reason for s in load.skipped}
    assert reasons == {
        "binary.txt": "binary file (contains NUL bytes)",
        "empty.txt": "empty document (no text or whitespace only)",
        "latin1.txt": "not UTF-8 (invalid byte 0xff at offset 12)",
        "spaces.md": "empty document (no text or whitespace only)",
    }


def test_bad_jsonl_lines_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps({"text": "Good one."}).encode(),
        b'{"text": "unterminated',
        json.dumps({"title": "no text here"}).encode(),
        json.dumps(["a", "list"]).encode(),
        json.dumps({"text": 42}).encode(),
        json.dumps({"text": "   "}).encode(),
        b'{"text": "caf\xe9"}',
        json.dumps({"text": "Good two."}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    load = load_corpus(path)
    assert [doc.text for doc in load.documents] == ["Good one.", "Good two."]
    assert [(s.line, s.reason) for s in load.skipped] == [
        (2, "invalid JSON: Unterminated string starting at (column 10)"),
        (3, "no 'text' field (fields: ['title'])"),
        (4, "expected a JSON object, got list"),
        (5, "'text' is int, expected a string"),
        (6, "empty document (no text or whitespace only)"),
        (7, "not UTF-8 (invalid byte 0xe9 at offset 13)"),
    ]
    assert str(load.skipped[0]) == f"{path}:2: {load.skipped[0].reason}"


def test_parquet_without_text_column_names_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"body": ["x"], "label": [1]}), path)
    with pytest.raises(CorpusError) as error:
        load_corpus(path)
    assert "has no 'text' column (columns: ['body', 'label'])" in str(error.value)
    assert str(path) in str(error.value)


def test_corrupt_parquet_in_a_folder_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text(PROSE, encoding="utf-8")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not really parquet")
    load = load_corpus(tmp_path)
    assert [doc.text for doc in load.documents] == [PROSE]
    assert len(load.skipped) == 1
    assert load.skipped[0].reason.startswith("not a readable Parquet file")


def test_duplicate_texts_are_kept_once(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(PROSE, encoding="utf-8")
    (tmp_path / "b.txt").write_text(PROSE, encoding="utf-8")
    write_jsonl(tmp_path / "c.jsonl", [json.dumps({"text": PROSE}), json.dumps({"text": "x"})])
    load = load_corpus(tmp_path)
    assert [doc.text for doc in load.documents] == [PROSE, "x"]
    assert load.documents[0].source == str(tmp_path / "a.txt")
    assert [(Path(s.path).name, s.line) for s in load.skipped] == [("b.txt", None), ("c.jsonl", 1)]
    assert all(s.reason.startswith("duplicate text") for s in load.skipped)


@pytest.mark.timeout(120)  # a guard against quadratic regressions, not a speed assertion
def test_ten_megabyte_document_loads_and_chunks(tmp_path: Path) -> None:
    paragraph = "word " * 199 + "word"
    assert len(paragraph) == 999
    text = "\n\n".join([paragraph] * 10_000)  # two paragraphs + break = 2000 = max_chars
    assert len(text) > 10_000_000
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")

    (doc,) = load_corpus(tmp_path).documents
    chunks = chunk_documents([doc], max_chars=2000, min_chars=200)

    assert len(chunks) == 5_000
    assert all(chunk.text == f"{paragraph}\n\n{paragraph}" for chunk in chunks)
    assert [chunk.chunk_index for chunk in chunks] == list(range(5_000))
    assert re.sub(r"\s", "", "".join(c.text for c in chunks)) == re.sub(r"\s", "", text)
