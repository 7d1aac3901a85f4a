"""Load a corpus from disk: a folder of text/markdown/JSONL/Parquet files, or one such file.

`load_corpus` never stops half-way on a bad record. An input that cannot be used
at all (missing path, unsupported file, Parquet without a `text` column, nothing
readable) raises `CorpusError` with the path and what is accepted; a bad file or
line inside an otherwise usable corpus (not UTF-8, binary, empty, broken JSON,
no `text`, a corrupt Parquet file, a duplicate text) is recorded in
`CorpusLoad.skipped` with its reason.

JSONL and Parquet rows need a `text` column; `title` is optional; every other
column goes into the document's metadata.

`load_corpus` is `corpus_files` -> `read_corpus_file` for each -> `collect_reads`; a caller
that reads files in parallel runs the same three steps and gets the same load.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from corpora.documents import CorpusError, Document

TEXT_SUFFIXES = (".txt", ".md")
RECORD_SUFFIXES = (".jsonl", ".parquet")
ACCEPTED = "a folder, or a .txt, .md, .jsonl or .parquet file"
PARQUET_BATCH_ROWS = 1024
BINARY_PROBE_BYTES = 8192


@dataclass(frozen=True)
class SkippedInput:
    """A file, line or row that was not loaded, and why."""

    path: str
    reason: str
    line: int | None = None  # 1-based line (JSONL) or row (Parquet); None for a whole file

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass
class CorpusLoad:
    """The documents read from a corpus, plus every input that was rejected."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[SkippedInput] = field(default_factory=list)


@dataclass(frozen=True)
class ReadDocument:
    """A document as its file yielded it, before repeats across files are dropped."""

    document: Document
    path: str
    line: int | None = None  # as in SkippedInput


@dataclass
class FileRead:
    """What one corpus file yielded, in file order: documents and rejections. Repeated texts
    are dropped only by `collect_reads`, which sees every file."""

    entries: list[ReadDocument | SkippedInput] = field(default_factory=list)

    def skip(self, path: Path, reason: str, line: int | None = None) -> None:
        self.entries.append(SkippedInput(str(path), reason, line))

    def add(self, doc: Document, path: Path, line: int | None = None) -> None:
        self.entries.append(ReadDocument(doc, str(path), line))


class _Collector:
    """Accumulates documents, dropping repeated texts (same doc_id) with a recorded reason."""

    def __init__(self) -> None:
        self.load = CorpusLoad()
        self._first_seen: dict[str, Document] = {}

    def take(self, read: FileRead) -> None:
        for entry in read.entries:
            if isinstance(entry, SkippedInput):
                self.load.skipped.append(entry)
            else:
                self._add(entry)

    def _add(self, entry: ReadDocument) -> None:
        doc = entry.document
        first = self._first_seen.get(doc.doc_id)
        if first is not None:
            reason = f"duplicate text (same doc_id as {first.title!r} from {first.source})"
            self.load.skipped.append(SkippedInput(entry.path, reason, entry.line))
            return
        self._first_seen[doc.doc_id] = doc
        self.load.documents.append(doc)


def load_corpus(path: str | Path) -> CorpusLoad:
    """Read every document under `path` (a folder, .txt, .md, .jsonl or .parquet file).

    Raises `CorpusError` when the path is missing or unsupported, when a Parquet
    file lacks a `text` column, or when no document at all could be read.
    """
    return collect_reads((read_corpus_file(file, path) for file in corpus_files(path)), path)


def corpus_files(path: str | Path) -> list[Path]:
    """The files of the corpus at `path`, in reading order: a folder's files (hidden ones
    left out) or the one file; CorpusError for a missing path or an unsupported file."""
    root = Path(path).expanduser()
    if not root.exists():
        raise CorpusError(f"corpus path {str(root)!r} does not exist: expected {ACCEPTED}")
    if root.is_dir():
        return list(_walk_files(root))
    if root.suffix.lower() in TEXT_SUFFIXES + RECORD_SUFFIXES:
        return [root]
    raise CorpusError(f"unsupported corpus file {str(root)!r}: expected {ACCEPTED}")


def read_corpus_file(file: Path, path: str | Path) -> FileRead:
    """Read one file of the corpus at `path` (a text file's `relative_path` is taken from
    `path`, or from its folder when the corpus is that one file)."""
    root = Path(path).expanduser()
    read = FileRead()
    _read_file(file, read, root if root.is_dir() else root.parent)
    return read


def collect_reads(reads: Iterable[FileRead], path: str | Path) -> CorpusLoad:
    """The reads of the corpus's files, in file order, as one load: a text repeating an
    earlier one is dropped and recorded; CorpusError when no document could be read."""
    collector = _Collector()
    for read in reads:
        collector.take(read)
    if not collector.load.documents:
        raise CorpusError(_nothing_found_message(Path(path).expanduser(), collector.load.skipped))
    return collector.load


def _nothing_found_message(root: Path, skipped: list[SkippedInput]) -> str:
    message = f"no documents found in {root}: expected .txt, .md, .jsonl or .parquet files"
    if skipped:
        shown = "; ".join(str(item) for item in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        message += f"; skipped {len(skipped)} input(s): {shown}{more}"
    return message


def _walk_files(root: Path) -> Iterator[Path]:
    """Files under `root` in a stable order, skipping hidden files and folders (.git, .cache)."""
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def _read_file(file: Path, collector: FileRead, root: Path) -> None:
    suffix = file.suffix.lower()
    try:
        if suffix in TEXT_SUFFIXES:
            _read_text_file(file, collector, root)
        elif suffix == ".jsonl":
            _read_jsonl(file, collector)
        elif suffix == ".parquet":
            _read_parquet(file, collector)
        else:
            collector.skip(file, f"unsupported file type {suffix or '(none)'!r}: "
                                 "expected .txt, .md, .jsonl or .parquet")
    except OSError as error:
        collector.skip(file, f"unreadable ({error.strerror or error})")


def decode_utf8(data: bytes) -> str:
    """Decode UTF-8 (a leading BOM is dropped); the error names the first bad byte and offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"not UTF-8 (invalid byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from error


def _read_text_file(file: Path, collector: FileRead, root: Path) -> None:
    data = file.read_bytes()
    # NUL never occurs in text; checking it first catches images and archives cheaply.
    if b"\x00" in data:
        collector.skip(file, "binary file (contains NUL bytes)")
        return
    try:
        text = decode_utf8(data)
    except CorpusError as error:
        collector.skip(file, str(error))
        return
    text = text.replace("\r\n", "\n")
    if not text.strip():
        collector.skip(file, "empty document (no text or whitespace only)")
        return
    relative = file.relative_to(root).as_posix()
    metadata = {"relative_path": relative, "format": file.suffix.lower().lstrip(".")}
    collector.add(Document.from_text(text, str(file), _text_title(file, text), metadata), file)


def _text_title(file: Path, text: str) -> str:
    """A markdown file's first '# ' heading, else the file name without its suffix."""
    if file.suffix.lower() == ".md":
        for line in text.splitlines()[:50]:
            if line.startswith("# ") and line[2:].strip():
                return line[2:].strip()
    return file.stem


def _read_jsonl(file: Path, collector: FileRead) -> None:
    with file.open("rb") as handle:
        # A binary file renamed .jsonl would otherwise yield one rejection per "line".
        if b"\x00" in handle.read(BINARY_PROBE_BYTES):
            collector.skip(file, "binary file (contains NUL bytes)")
            return
        handle.seek(0)
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue  # blank lines (a trailing newline, spacing) are not records
            try:
                record = json.loads(decode_utf8(raw.rstrip(b"\r\n")))
            except CorpusError as error:
                collector.skip(file, str(error), line_number)
                continue
            except json.JSONDecodeError as error:
                collector.skip(file, f"invalid JSON: {error.msg} (column {error.colno})",
                               line_number)
                continue
            if not isinstance(record, dict):
                collector.skip(file, f"expected a JSON object, got {type(record).__name__}",
                               line_number)
                continue
            _add_record(record, file, line_number, collector, f"{file.stem} line {line_number}")


def _add_record(
    record: dict[str, Any], file: Path, line: int, collector: FileRead, default_title: str
) -> None:
    """Turn one JSONL/Parquet row into a document, or record why it cannot be one."""
    if "text" not in record:
        collector.skip(file, f"no 'text' field (fields: {sorted(record)})", line)
        return
    text = record["text"]
    if not isinstance(text, str):
        collector.skip(file, f"'text' is {type(text).__name__}, expected a string", line)
        return
    if not text.strip():
        collector.skip(file, "empty document (no text or whitespace only)", line)
        return
    title = record.get("title")
    title = default_title if title is None or str(title).strip() == "" else str(title)
    metadata = {key: _json_safe(value) for key, value in record.items()
                if key not in ("text", "title")}
    collector.add(Document.from_text(text, str(file), title, metadata), file, line)


def _json_safe(value: Any) -> Any:
    """Parquet cells as JSON values: dates become ISO strings, unknown types their str()."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def _read_parquet(file: Path, collector: FileRead) -> None:
    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as error:
        collector.skip(file, f"not a readable Parquet file ({error})")
        return
    columns = parquet.schema_arrow.names
    if "text" not in columns:
        raise CorpusError(
            f"Parquet file {file} has no 'text' column (columns: {columns}); "
            "rename the column holding the document text to 'text'"
        )
    row = 0
    try:
        # Batches keep memory bounded on large files.
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                row += 1
                _add_record(record, file, row, collector, f"{file.stem} row {row}")
    except (pa.ArrowException, OSError) as error:
        collector.skip(file, f"unreadable after row {row} ({error})", row + 1)
