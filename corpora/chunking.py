"""Split long documents into chunks the Challenger can read in one prompt.

A document longer than `max_chars` is cut at the coarsest boundary that makes
the pieces fit: blank lines (paragraphs), then sentence ends and line breaks,
then whitespace; a single token longer than `max_chars` is the only thing ever
cut mid-word. Consecutive pieces are packed greedily up to `max_chars`, and a
chunk shorter than `min_chars` is merged into a neighbour, or, when the merge
would overflow, re-split together with it at a boundary near their middle.

Chunks only lose whitespace at their edges, so their texts concatenated equal
the original modulo whitespace. All work is on offsets into the original text
with regex scans, so a 10 MB document chunks in linear time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from corpora.documents import CorpusError, Document

PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
# No leading \s*: it would rescan long runs of spaces from every position (quadratic).
SENTENCE_OR_LINE_BREAK = re.compile(r"(?<=[.!?])\s+|\n\s*")
WHITESPACE = re.compile(r"\s+")
BOUNDARY_LEVELS = (PARAGRAPH_BREAK, SENTENCE_OR_LINE_BREAK, WHITESPACE)

Span = tuple[int, int]


def chunk_documents(
    docs: Iterable[Document], max_chars: int = 2000, min_chars: int = 200
) -> list[Document]:
    """Chunk every document longer than `max_chars`; shorter ones pass through unchanged.

    Each chunk gets its own content-hash `doc_id`, `chunk_index` (0-based),
    `parent_id` (the unchunked document's id) and the title "<title> (part k)".
    """
    _check_sizes(max_chars, min_chars)
    chunked: list[Document] = []
    for doc in docs:
        if len(doc.text) <= max_chars:
            chunked.append(doc)
            continue
        spans = _merge_short(doc.text, list(chunk_spans(doc.text, max_chars)),
                             max_chars, min_chars)
        parent_id = doc.parent_id or doc.doc_id
        for index, (start, end) in enumerate(spans):
            title = doc.title if len(spans) == 1 else f"{doc.title} (part {index + 1})"
            chunked.append(Document.from_text(
                doc.text[start:end], doc.source, title, doc.metadata,
                chunk_index=index, parent_id=parent_id,
            ))
    return chunked


def _check_sizes(max_chars: int, min_chars: int) -> None:
    if max_chars < 1:
        raise CorpusError(f"max_chars must be >= 1, got {max_chars}")
    if min_chars < 0 or 2 * min_chars > max_chars:
        raise CorpusError(
            f"min_chars ({min_chars}) must be between 0 and half of max_chars ({max_chars}): "
            "a short chunk is re-split with a neighbour, which needs room for two chunks "
            "of min_chars; lower min_chars or raise max_chars"
        )


def chunk_spans(text: str, max_chars: int) -> Iterator[Span]:
    """(start, end) offsets of greedily packed chunks, each at most `max_chars` long.

    Spans never start or end on whitespace, and a whitespace-only text has none.
    """
    start, end = _strip(text, 0, len(text))
    if start < end:
        yield from _pack(_pieces(text, start, end, 0, max_chars), max_chars)


def _strip(text: str, start: int, end: int) -> Span:
    """Offsets of text[start:end] without leading and trailing whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _pack(spans: Iterable[Span], max_chars: int) -> Iterator[Span]:
    """Join consecutive spans while the joined span stays within `max_chars`."""
    current: Span | None = None
    for start, end in spans:
        if current is None:
            current = (start, end)
        elif end - current[0] <= max_chars:
            current = (current[0], end)
        else:
            yield current
            current = (start, end)
    if current is not None:
        yield current


def _pieces(text: str, start: int, end: int, level: int, max_chars: int) -> Iterator[Span]:
    """Spans of at most `max_chars` covering text[start:end], cut at boundaries of `level`
    or, for a piece still too long, of the next finer level."""
    if end - start <= max_chars:
        yield start, end
        return
    if BOUNDARY_LEVELS[level] is WHITESPACE:
        # Words are numerous and tiny: pack them here instead of yielding each one upward.
        yield from _pack(_words(text, start, end, max_chars), max_chars)
        return
    piece_start = start
    for match in BOUNDARY_LEVELS[level].finditer(text, start, end):
        yield from _sub_pieces(text, piece_start, match.start(), level, max_chars)
        piece_start = match.end()
    yield from _sub_pieces(text, piece_start, end, level, max_chars)


def _sub_pieces(text: str, start: int, end: int, level: int, max_chars: int) -> Iterator[Span]:
    start, end = _strip(text, start, end)
    if start < end:
        yield from _pieces(text, start, end, level + 1, max_chars)


def _words(text: str, start: int, end: int, max_chars: int) -> Iterator[Span]:
    """Whitespace-separated tokens; a token longer than `max_chars` is cut into pieces."""
    word_start = start
    for match in WHITESPACE.finditer(text, start, end):
        yield from _cut_token(word_start, match.start(), max_chars)
        word_start = match.end()
    yield from _cut_token(word_start, end, max_chars)


def _cut_token(start: int, end: int, max_chars: int) -> Iterator[Span]:
    # The one place a word is split: nothing else can make it fit.
    for cut in range(start, end, max_chars):
        yield cut, min(cut + max_chars, end)


def _merge_short(text: str, spans: list[Span], max_chars: int, min_chars: int) -> list[Span]:
    """Fold each chunk shorter than `min_chars` into a neighbour, keeping all within `max_chars`.

    Greedy packing leaves a short chunk only where its neighbour is nearly full,
    so the pair is usually re-split near its middle rather than joined. A short
    chunk stays as it is only when no boundary exists there (an over-long token).
    """
    merged: list[Span] = []
    pending = list(spans)
    for index, (start, end) in enumerate(pending):
        if end - start >= min_chars or len(pending) == 1:
            merged.append((start, end))
            continue
        if merged:
            joined = _rejoin(text, merged[-1][0], end, max_chars, min_chars)
            if joined is not None:
                merged[-1:] = joined
                continue
        if index + 1 < len(pending):
            joined = _rejoin(text, start, pending[index + 1][1], max_chars, min_chars)
            if joined is not None:
                merged.extend(joined[:-1])
                pending[index + 1] = joined[-1]
                continue
        merged.append((start, end))
    return merged


def _rejoin(text: str, start: int, end: int, max_chars: int, min_chars: int) -> list[Span] | None:
    """text[start:end] as one chunk if it fits, else two fair halves, else None."""
    if end - start <= max_chars:
        return [(start, end)]
    halves = _split_near_middle(text, start, end, max_chars, min_chars)
    return None if halves is None else list(halves)


def _split_near_middle(
    text: str, start: int, end: int, max_chars: int, min_chars: int
) -> tuple[Span, Span] | None:
    """Two spans, each between `min_chars` and `max_chars`, cut at the coarsest boundary
    available and, within that level, the one nearest the middle."""
    middle = (start + end) // 2
    window_start = start + min(min_chars, end - start)
    window_end = max(window_start, end - min_chars)
    for boundary in BOUNDARY_LEVELS:
        best: tuple[Span, Span] | None = None
        best_distance = end - start
        for match in boundary.finditer(text, window_start, window_end):
            left = _strip(text, start, match.start())
            right = _strip(text, match.end(), end)
            sizes_ok = all(min_chars <= span[1] - span[0] <= max_chars for span in (left, right))
            distance = abs(match.start() - middle)
            if sizes_ok and distance < best_distance:
                best, best_distance = (left, right), distance
        if best is not None:
            return best
    return None
