"""Corpora: load documents from disk, chunk them, sample them, and the bundled sample corpus.

Knows nothing of models: it hands plain `Document` records to whoever asks.
"""

from __future__ import annotations

from pathlib import Path

from corpora.chunking import chunk_documents
from corpora.documents import CorpusError, Document, content_id
from corpora.sampling import sample_documents
from corpora.sources import (
    CorpusLoad,
    FileRead,
    SkippedInput,
    collect_reads,
    corpus_files,
    load_corpus,
    read_corpus_file,
)

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


def sample_corpus_path() -> Path:
    """Path of the bundled sample corpus (JSONL of real, redistributable documentation)."""
    return SAMPLE_DIR / "documents.jsonl"


__all__ = [
    "CorpusError",
    "CorpusLoad",
    "Document",
    "FileRead",
    "SkippedInput",
    "chunk_documents",
    "collect_reads",
    "content_id",
    "corpus_files",
    "load_corpus",
    "read_corpus_file",
    "sample_corpus_path",
    "sample_documents",
]
