"""Word n-gram hashes of many texts at once, for deduplication and decontamination.

Texts are NFKC-normalised, lower-cased and split on anything that is not a
letter or a digit (Arrow's RE2 kernels, so a million texts never pass through
a Python loop). Each distinct word gets a stable 64-bit hash (blake2b), and a
window of n words hashes to `mix(sum_k word[i+k] * B^k mod 2^64)`: the same
words in the same order give the same value in any text, in any process,
which is what makes exports reproducible. Windows of every length are built
incrementally (length n+1 = length n plus one term), all texts in one numpy
pass per length.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NON_WORD = r"[^\p{L}\p{N}]+"
_BASE = 0x9E3779B97F4A7C15  # odd, so B^k never collapses to 0 mod 2^64
_MASK = (1 << 64) - 1
_BITMAP_SIZE = 1 << 22  # 4 MB; a 100k-value set rules out ~97% of other probes
_ASCII_WORD_BYTES = np.full(256, ord(" "), dtype=np.uint8)
for _byte in b"abcdefghijklmnopqrstuvwxyz0123456789":
    _ASCII_WORD_BYTES[_byte] = _byte


@dataclass(frozen=True)
class Tokens:
    """The word hashes of many texts, flattened: text t owns hashes[offsets[t]:offsets[t+1]]."""

    hashes: np.ndarray  # uint64, one per word
    offsets: np.ndarray  # int64, len(texts) + 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True)
class Windows:
    """Hashes of all n-word windows of length `n`, with the text each belongs to."""

    n: int
    hashes: np.ndarray  # uint64, mixed
    text_index: np.ndarray  # int64, ascending
    start: np.ndarray  # int64, position of the window's first word in Tokens.hashes


def words(texts: pa.Array | Sequence[str | None]) -> pa.ListArray:
    """Normalised words of each text (None and empty texts have none)."""
    array = texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(texts, pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    array = array.fill_null("")
    if pc.all(pc.string_is_ascii(array)).as_py() is not False:
        return pc.ascii_split_whitespace(_ascii_words_spaced(pc.ascii_lower(array)))
    return pc.split_pattern_regex(pc.utf8_lower(pc.utf8_normalize(array, "NFKC")), _NON_WORD)


def _ascii_words_spaced(array: pa.StringArray) -> pa.StringArray:
    """`array` with every byte that is not [a-z0-9] turned into a space.

    Same words as the RE2 split for ASCII text, through one table lookup per
    byte: the regex split took ~0.55 s per 200k questions here, this ~0.03 s.
    """
    validity, offsets, data = array.buffers()
    if data is None:  # every string empty
        return array
    spaced = _ASCII_WORD_BYTES[np.frombuffer(data, dtype=np.uint8)]
    return pa.StringArray.from_buffers(
        len(array), offsets, pa.py_buffer(spaced.tobytes()), validity, array.null_count,
        array.offset,
    )


def tokenize(texts: pa.Array | Sequence[str | None]) -> Tokens:
    """Word hashes of every text; the empty strings `split` leaves at the edges are dropped."""
    split = words(texts)
    flat = pc.list_flatten(split)
    owner = pc.list_parent_indices(split).to_numpy()
    keep = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    flat, owner = flat.filter(pa.array(keep)), owner[keep]
    encoded = pc.dictionary_encode(flat) if len(flat) else None
    if encoded is None:
        hashes = np.zeros(0, dtype=np.uint64)
    else:
        vocabulary = np.fromiter(
            (_word_hash(word) for word in encoded.dictionary.to_pylist()),
            dtype=np.uint64,
            count=len(encoded.dictionary),
        )
        hashes = vocabulary[encoded.indices.to_numpy()]
    counts = np.bincount(owner, minlength=len(split)).astype(np.int64)
    offsets = np.zeros(len(split) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Tokens(hashes=hashes, offsets=offsets)


def iter_windows(
    tokens: Tokens, max_n: int, wanted: Iterable[int] | None = None
) -> Iterator[Windows]:
    """Windows of each length in `wanted` (default 1..max_n) of every text, shortest first.

    The running sums of all positions grow by one word per length (a slice
    multiply-add, no gathers); only the wanted lengths are filtered and mixed.
    """
    wanted_lengths = set(range(1, max_n + 1)) if wanted is None else set(wanted)
    count = len(tokens.hashes)
    text_of_word = np.repeat(np.arange(len(tokens), dtype=np.int64), tokens.lengths)
    room = tokens.offsets[1:][text_of_word] - np.arange(count, dtype=np.int64)  # words left
    total = np.zeros(count, dtype=np.uint64)
    weights = _powers(max_n)
    for n in range(1, max_n + 1):
        if n > count:
            return
        total[: count - n + 1] += tokens.hashes[n - 1 :] * weights[n - 1]
        if n not in wanted_lengths:
            continue
        start = np.flatnonzero(room[: count - n + 1] >= n)
        yield Windows(n, mix64(total[start]), text_of_word[start], start)


def windows(tokens: Tokens, n: int, *, whole_if_shorter: bool = False) -> Windows:
    """All windows of length `n`; texts with fewer words give one window of all of them."""
    shorter = np.flatnonzero((tokens.lengths < n) & (tokens.lengths > 0))
    whole = whole_hashes(tokens)[shorter] if whole_if_shorter else np.zeros(0, np.uint64)
    full = _last(iter_windows(tokens, n, wanted=[n]), n)
    if not len(whole):
        return full
    order = np.argsort(np.concatenate([full.text_index, shorter]), kind="stable")
    return Windows(
        n,
        np.concatenate([full.hashes, whole])[order],
        np.concatenate([full.text_index, shorter])[order],
        np.concatenate([full.start, tokens.offsets[shorter]])[order],
    )


def whole_hashes(tokens: Tokens) -> np.ndarray:
    """Per text, the window hash of all its words (0 for texts without words).

    Equal to the hash of an equally long window anywhere else, so "this text
    occurs inside that one" is a lookup.
    """
    result = np.zeros(len(tokens), dtype=np.uint64)
    lengths = tokens.lengths
    filled = np.flatnonzero(lengths > 0)
    if not len(filled):
        return result
    text_of_word = np.repeat(np.arange(len(tokens), dtype=np.int64), lengths)
    position = np.arange(len(tokens.hashes), dtype=np.int64) - tokens.offsets[text_of_word]
    terms = tokens.hashes * _powers(int(lengths.max()))[position]
    result[filled] = mix64(np.add.reduceat(terms, tokens.offsets[filled]))
    return result


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (Steele et al. 2014): spreads every input bit over the output."""
    x = values.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def contains(sorted_values: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """Boolean mask: which `probes` occur in the sorted, unique `sorted_values`.

    A bitmap of the values' low bits rules most probes out first, so millions
    of probes cost one gather each and only the few left a binary search.
    """
    found = np.zeros(len(probes), dtype=bool)
    if not len(sorted_values) or not len(probes):
        return found
    bitmap = np.zeros(_BITMAP_SIZE, dtype=bool)
    bitmap[sorted_values & np.uint64(_BITMAP_SIZE - 1)] = True
    maybe = np.flatnonzero(bitmap[probes & np.uint64(_BITMAP_SIZE - 1)])
    index = np.searchsorted(sorted_values, probes[maybe])
    index[index == len(sorted_values)] = 0
    found[maybe] = sorted_values[index] == probes[maybe]
    return found


def _powers(count: int) -> np.ndarray:
    """B^0 .. B^(count-1) mod 2^64 (Python ints: numpy scalars warn on overflow)."""
    powers, value = [], 1
    for _ in range(count):
        powers.append(value)
        value = (value * _BASE) & _MASK
    return np.array(powers, dtype=np.uint64)


def _word_hash(word: str) -> np.uint64:
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def _last(items: Iterable[Windows], n: int) -> Windows:
    found = [item for item in items if item.n == n]
    if found:
        return found[0]
    if n < 1:
        raise ValueError(f"window length must be at least 1, not {n}")
    empty = np.zeros(0, dtype=np.int64)
    return Windows(n, np.zeros(0, dtype=np.uint64), empty, empty)
