"""Exact and near-duplicate removal over many texts, in near-linear time.

Exact duplicates: the same normalised word sequence (case, punctuation and
spacing do not count). Near duplicates: MinHash over word 3-gram shingles with
LSH banding (Broder 1997; Leskovec, Rajaraman & Ullman, *Mining of Massive
Datasets*, ch. 3), every candidate pair confirmed by its estimated Jaccard
similarity reaching `threshold`, and duplicate pairs merged into clusters.
Within a cluster the text that comes first in the input survives, so callers
order texts best-first.

Why our own and not `datasketch`: it is not installed here, it needs scipy,
and it hashes each document in a Python loop; this version hashes all texts at
once with numpy (see `warehouse.ngrams`) and compares each LSH bucket member
with the bucket's first text only, so the work grows with the number of texts,
never with the number of pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from warehouse.ngrams import Tokens, tokenize, whole_hashes, windows

_BLOCK_SHINGLES = 1024


@dataclass(frozen=True)
class NearDuplicateConfig:
    """MinHash-LSH settings. With 16 bands of 5 rows, a pair with Jaccard 0.8
    becomes a candidate with probability 1 - (1 - 0.8^5)^16 = 0.998, one with
    0.5 with probability 0.40; candidates below `threshold` are then dropped."""

    threshold: float = 0.8  # estimated Jaccard similarity of shingle sets
    shingle_words: int = 3
    bands: int = 16
    rows_per_band: int = 5
    seed: int = 20250101  # fixed: the same texts always give the same clusters

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold ({self.threshold}) must be in (0, 1]")
        if min(self.shingle_words, self.bands, self.rows_per_band) < 1:
            raise ValueError("shingle_words, bands and rows_per_band must be at least 1")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows_per_band


def exact_duplicates(tokens: Tokens) -> np.ndarray:
    """Mask of texts whose word sequence already occurred earlier (texts without words never)."""
    keys = whole_hashes(tokens)
    _, first = np.unique(keys, return_index=True)
    duplicate = np.ones(len(keys), dtype=bool)
    duplicate[first] = False
    duplicate[keys == 0] = False  # 0 marks "no words": nothing to compare
    return duplicate


def near_duplicate_clusters(
    tokens: Tokens, config: NearDuplicateConfig | None = None
) -> np.ndarray:
    """Per text, the index of the first text of its near-duplicate cluster (itself if none)."""
    config = config or NearDuplicateConfig()
    signatures, has_words = minhash_signatures(tokens, config)
    parent = np.arange(len(tokens), dtype=np.int64)
    if len(tokens) < 2:
        return parent
    members, firsts = [], []
    for band in range(config.bands):
        block = signatures[:, band * config.rows_per_band : (band + 1) * config.rows_per_band]
        member, first = _bucket_pairs(_band_keys(block), has_words)
        members.append(member)
        firsts.append(first)
    member, first = np.concatenate(members), np.concatenate(firsts)
    similar = _estimated_jaccard(signatures, member, first) >= config.threshold
    return _connected_minimum(len(tokens), member[similar], first[similar])


def minhash_signatures(
    tokens: Tokens, config: NearDuplicateConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(signatures uint32 [texts x num_perm], mask of texts that have shingles).

    Permutation j maps a shingle hash x to (a_j * x + b_j) >> 32 (multiply-shift,
    Dietzfelbinger et al. 1997), a_j odd: one multiply-add per shingle and
    permutation, all permutations of a block of texts in one numpy call.
    """
    shingles = windows(tokens, config.shingle_words, whole_if_shorter=True)
    signatures = np.full((len(tokens), config.num_perm), np.iinfo(np.uint32).max, np.uint32)
    has_words = np.zeros(len(tokens), dtype=bool)
    if not len(shingles.hashes):
        return signatures, has_words
    texts, first = np.unique(shingles.text_index, return_index=True)
    has_words[texts] = True
    rng = np.random.default_rng(config.seed)
    multipliers = rng.integers(0, 2**63, config.num_perm, dtype=np.uint64) * np.uint64(2) + 1
    offsets = rng.integers(0, 2**63, config.num_perm, dtype=np.uint64)
    bounds = np.append(first, len(shingles.hashes))
    begin = 0
    while begin < len(texts):
        # Blocks of ~1k shingles, cut at text starts: the (shingles x perms)
        # matrix then stays in cache, twice as fast here as one pass per perm.
        end = int(np.searchsorted(bounds, bounds[begin] + _BLOCK_SHINGLES, side="right")) - 1
        end = min(max(end, begin + 1), len(texts))
        low, high = bounds[begin], bounds[end]
        hashed = shingles.hashes[low:high, None] * multipliers[None, :]
        hashed += offsets
        hashed >>= np.uint64(32)
        signatures[texts[begin:end]] = np.minimum.reduceat(hashed, first[begin:end] - low, axis=0)
        begin = end
    return signatures, has_words


def dedup_texts(
    texts: Tokens | pa.Array | pa.ChunkedArray | Sequence[str | None],
    near: NearDuplicateConfig | None = NearDuplicateConfig(),  # noqa: B008 - frozen
    *,
    exact: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(exact duplicate mask, near duplicate mask) of `texts`, in best-first order.

    `texts` may come tokenized already (`warehouse.ngrams.tokenize`), to share
    the work with decontamination. `exact=False` skips the exact pass (its
    duplicates then show as near ones, at similarity 1); `near=None` skips the
    near pass. A text is in at most one mask; the texts to keep are those in
    neither.
    """
    tokens = texts if isinstance(texts, Tokens) else tokenize(texts)
    exact_mask = exact_duplicates(tokens) if exact else np.zeros(len(tokens), dtype=bool)
    near_mask = np.zeros(len(tokens), dtype=bool)
    if near is not None:
        survivors = np.flatnonzero(~exact_mask)
        root = near_duplicate_clusters(_subset(tokens, survivors), near)
        near_mask[survivors[root != np.arange(len(survivors))]] = True
    return exact_mask, near_mask


def _band_keys(block: np.ndarray) -> np.ndarray:
    """One 64-bit key per text for its band: equal keys mean equal band values."""
    key = np.zeros(len(block), dtype=np.uint64)
    for column in range(block.shape[1]):
        key = key * np.uint64(0x100000001B3) + block[:, column].astype(np.uint64)
    return key


def _bucket_pairs(keys: np.ndarray, has_words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(member, first) for every text sharing a bucket with an earlier text."""
    candidates = np.flatnonzero(has_words)
    order = candidates[np.argsort(keys[candidates], kind="stable")]
    sorted_keys = keys[order]
    new_bucket = np.ones(len(order), dtype=bool)
    new_bucket[1:] = sorted_keys[1:] != sorted_keys[:-1]
    bucket_start = np.flatnonzero(new_bucket)
    bucket_of = np.cumsum(new_bucket) - 1
    # Stable sort: the first element of each bucket is its earliest text.
    first = order[bucket_start[bucket_of]]
    member = order
    pair = member != first
    return member[pair], first[pair]


def _estimated_jaccard(signatures: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Share of equal MinHash values: an unbiased estimate of the Jaccard similarity."""
    result = np.empty(len(left), dtype=np.float64)
    step = 1 << 16  # bounded memory for millions of pairs
    for begin in range(0, len(left), step):
        end = begin + step
        equal = signatures[left[begin:end]] == signatures[right[begin:end]]
        result[begin:end] = equal.mean(axis=1)
    return result


def _connected_minimum(count: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per node, the smallest node index of its connected component (label propagation)."""
    label = np.arange(count, dtype=np.int64)
    if not len(left):
        return label
    while True:
        before = label.copy()
        np.minimum.at(label, left, label[right])
        np.minimum.at(label, right, label[left])
        label = label[label]  # pointer jumping: halves the remaining path each round
        if np.array_equal(label, before):
            return label


def _subset(tokens: Tokens, chosen: np.ndarray) -> Tokens:
    lengths = tokens.lengths[chosen]
    offsets = np.zeros(len(chosen) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    starts = np.repeat(tokens.offsets[chosen], lengths)
    within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    return Tokens(hashes=tokens.hashes[starts + within], offsets=offsets)
