"""Corpora: load documents from disk, chunk them, sample them, and the bundled sample corpus.

Knows nothing of models: it hands plain `Document` records to whoever asks.
"""

from __future__ import annotations

from pathlib import Path

from corpora.chunking import chunk_documents
from corpora.documents import CorpusError, Document, content_id
from corpora.sampling import sample_documents
from corpora.sources import CorpusLoad, SkippedInput, load_corpus

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


def sample_corpus_path() -> Path:
    """Path of the bundled sample corpus (JSONL of real, redistributable documentation)."""
    return SAMPLE_DIR / "documents.jsonl"


__all__ = [
    "CorpusError",
    "CorpusLoad",
    "Document",
    "SkippedInput",
    "chunk_documents",
    "content_id",
    "load_corpus",
    "sample_corpus_path",
    "sample_documents",
]
