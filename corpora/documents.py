"""The `Document` record every corpus source produces, and the error they raise.

A document's id is a hash of its text, so the same text always gets the same id
whichever file, row or run it came from; the warehouse keys documents by it and
a re-run writes nothing twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

DOC_ID_LENGTH = 32


class CorpusError(ValueError):
    """A corpus input cannot be used at all; the message names the input and the fix."""


def content_id(text: str) -> str:
    """The document id of `text`: the first 32 hex digits of the SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DOC_ID_LENGTH]


@dataclass(frozen=True)
class Document:
    """One unit of text the Challenger can read.

    A chunk of a longer document carries `chunk_index` (0-based) and `parent_id`
    (the unchunked document's id); a whole document has `chunk_index=0` and no
    parent. `metadata` must be JSON-serialisable (licence, domain, columns of
    the source row); treat it as read-only.
    """

    doc_id: str
    text: str
    source: str
    title: str
    # Excluded from the hash because dicts are unhashable; equality still compares it.
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    chunk_index: int = 0
    parent_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise CorpusError(f"Document text must be a str, got {type(self.text).__name__}")
        expected = content_id(self.text)
        if self.doc_id != expected:
            raise CorpusError(
                f"doc_id {self.doc_id!r} does not match the text's content hash {expected!r}; "
                "build documents with Document.from_text"
            )
        if self.chunk_index < 0:
            raise CorpusError(f"chunk_index must be >= 0, got {self.chunk_index}")
        try:
            json.dumps(self.metadata)
        except (TypeError, ValueError) as error:
            raise CorpusError(
                f"metadata of {self.title!r} is not JSON-serialisable ({error}); "
                "convert its values to str, numbers, lists or dicts"
            ) from error

    @classmethod
    def from_text(
        cls,
        text: str,
        source: str,
        title: str,
        metadata: dict[str, Any] | None = None,
        chunk_index: int = 0,
        parent_id: str | None = None,
    ) -> Document:
        """Build a document, computing its id from `text`."""
        return cls(
            doc_id=content_id(text),
            text=text,
            source=source,
            title=title,
            metadata=dict(metadata or {}),
            chunk_index=chunk_index,
            parent_id=parent_id,
        )
