"""Near-duplicate clusters of Challenger questions: R-Zero's clusters, without its O(B²) work.

The method (R-Zero, Huang et al. 2025, the repetition penalty): the distance of two
questions is 1 − BLEU, and agglomerative clustering with a distance threshold of 0.5 groups
the batch; a proposal in cluster C then loses |C|/B. The linkage is average linkage over
the full B × B matrix, as this module's specification describes their method (the paper's
text could not be checked from here). `reference_bleu_clusters` is our own
straightforward re-implementation of that: every pair scored in Python, then average
linkage (UPGMA, merged clusters at the average of their pairs' distances, Lance & Williams
1967) until no two clusters are closer than the threshold.

`cluster_near_duplicates` returns the same clusters while scoring only a few pairs:

1. An average-linkage merge needs an average distance below the threshold, so at least
   one pair closer than the threshold. Hence no cluster ever spans two connected
   components of the graph "distance < threshold": the clustering splits into independent
   runs, one per component, with the same merges in the same order.
2. That graph is found exactly from candidates. With the smoothing below, a hypothesis of
   c >= 5 words that shares no 4-gram with its reference has p4 <= 0.1/(c−3) and so BLEU <=
   0.05^(1/4) = 0.47 < 0.5; so any pair closer than 0.5 shares a word 4-gram, or a 3-gram
   if one text has 3 or 4 words (1 or 2 words never reach 0.5: even a copy scores
   0.01^(1/4) = 0.32). `_needed_order` gives the order each text needs at any threshold.
   N-grams come hashed from `warehouse.ngrams` (one numpy pass for all texts); every pair
   that shares a needed one is scored, in batches, by numpy.
3. Inside each component (small near-duplicate groups) every pair is scored and the same
   average linkage runs on that small matrix.

So the cost is the candidate pairs plus the sum of squared component sizes: near-linear for
a diverse batch, and quadratic only when most of the batch is one near-duplicate group
(then every pair really is close, and the reference is no faster). `warehouse.dedup`'s
MinHash-LSH does not fit here: it estimates Jaccard similarity of 3-word shingles and
only links bucket members to the bucket's first text, while the graph needs every close
pair; the exact n-gram index above misses none (up to 64-bit hash collisions, which can
only add candidates or, with odds ~1e-19 per pair of n-grams, a false match).

BLEU here is sentence BLEU-4 (Papineni et al. 2002: clipped n-gram precisions, geometric
mean, brevity penalty exp(1 − r/c) when c < r) over `warehouse.ngrams.words` (lower-cased
letters and digits; punctuation is dropped), with smoothing method 1 of Chen & Cherry
(2014): a precision with no match counts ε = 0.1 matches. Our own, because no BLEU package
(sacrebleu, nltk, evaluate) is installed, and a numpy form of it is what makes batches of
pairs cheap. BLEU is asymmetric (precision and brevity penalty use the hypothesis); the
distance uses the mean of both directions, so it does not depend on the order of the batch.
Texts without words are at distance 1 from everything, so they stay alone.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from warehouse.ngrams import Tokens, iter_windows, mix64, tokenize, words

BLEU_MAX_ORDER = 4
SMOOTHING_EPSILON = 0.1  # Chen & Cherry (2014), smoothing method 1
_OCCURRENCE_STEP = np.uint64(0x9E3779B97F4A7C15)  # separates the k-th copy of an n-gram
_PAIR_CHUNK = 1 << 13  # pairs scored per numpy batch: bounded memory for any batch size


@dataclass(frozen=True)
class NearDuplicateClusters:
    """Cluster ids (numbered by first appearance) and what finding them cost."""

    labels: list[int]
    candidate_pairs: int  # pairs sharing an n-gram (`_needed_order`): BLEU scored
    close_pairs: int  # of those, closer than the threshold: the edges of the graph
    linkage_pairs: int  # pairs not among the candidates scored inside components of 3+ texts
    largest_component: int


# --- the reference: every pair, in plain Python ---------------------------------------


def question_words(texts: Sequence[str]) -> list[list[str]]:
    """The words BLEU compares: NFKC, lower case, runs of letters and digits."""
    return [[word for word in split if word] for split in words(list(texts)).to_pylist()]


def sentence_bleu(hypothesis: Sequence[str], reference: Sequence[str]) -> float:
    """Smoothed sentence BLEU-4 of `hypothesis` against one `reference` (word lists)."""
    matches = _clipped_matches(_ngram_counts(hypothesis), _ngram_counts(reference))
    return _bleu(matches, len(hypothesis), len(reference))


def bleu_distance(first: Sequence[str], second: Sequence[str]) -> float:
    """1 − BLEU, BLEU averaged over both directions so that the distance is symmetric."""
    matches = _clipped_matches(_ngram_counts(first), _ngram_counts(second))
    return (
        1.0
        - (_bleu(matches, len(first), len(second)) + _bleu(matches, len(second), len(first))) / 2
    )


def reference_bleu_clusters(texts: Sequence[str], threshold: float = 0.5) -> list[int]:
    """R-Zero's clusters the direct way: the full B × B distance matrix, then average linkage."""
    _check_threshold(threshold)
    return average_linkage(bleu_distance_matrix(texts), threshold)


def bleu_distance_matrix(texts: Sequence[str]) -> np.ndarray:
    """`bleu_distance` of every pair of texts, in plain Python: B(B − 1)/2 BLEU pairs."""
    split = question_words(texts)
    counts = [_ngram_counts(text) for text in split]
    distances = np.zeros((len(split), len(split)))
    for i in range(len(split)):
        for j in range(i + 1, len(split)):
            matches = _clipped_matches(counts[i], counts[j])
            forward = _bleu(matches, len(split[i]), len(split[j]))
            backward = _bleu(matches, len(split[j]), len(split[i]))
            distances[i, j] = distances[j, i] = 1.0 - (forward + backward) / 2
    return distances


def _ngram_counts(text: Sequence[str]) -> list[Counter[tuple[str, ...]]]:
    return [
        Counter(tuple(text[start : start + n]) for start in range(len(text) - n + 1))
        for n in range(1, BLEU_MAX_ORDER + 1)
    ]


def _clipped_matches(
    first: list[Counter[tuple[str, ...]]], second: list[Counter[tuple[str, ...]]]
) -> list[int]:
    """Per order, the n-grams the two texts share, each counted min(count here, count there)."""
    matches = []
    for mine, theirs in zip(first, second, strict=True):
        small, large = (mine, theirs) if len(mine) <= len(theirs) else (theirs, mine)
        matches.append(
            sum(min(count, large[gram]) for gram, count in small.items() if gram in large)
        )
    return matches


def _bleu(matches: Sequence[int], hypothesis_length: int, reference_length: int) -> float:
    if hypothesis_length == 0 or matches[0] == 0:
        return 0.0
    log_precision = 0.0
    for n, matched in enumerate(matches, start=1):
        grams = max(hypothesis_length - n + 1, 1)
        log_precision += math.log((matched if matched > 0 else SMOOTHING_EPSILON) / grams)
    brevity = 1.0
    if hypothesis_length < reference_length:
        brevity = math.exp(1.0 - reference_length / hypothesis_length)  # Papineni et al. 2002
    return brevity * math.exp(log_precision / BLEU_MAX_ORDER)


# --- average linkage on a dense matrix -------------------------------------------------


def average_linkage(distances: np.ndarray, threshold: float) -> list[int]:
    """Agglomerative clusters of a symmetric distance matrix, average linkage (UPGMA).

    Merges the two closest clusters while their distance is below `threshold`; a merged
    cluster's distance to another is the size-weighted mean of its parts' (Lance &
    Williams 1967), i.e. the mean over all pairs. Each row's nearest cluster is kept up to
    date, so a merge usually costs O(n), not a scan of the matrix. Ties go to lower indices.
    """
    count = len(distances)
    if distances.shape != (count, count):
        raise ValueError(f"distances must be a square matrix, not of shape {distances.shape}")
    matrix = np.array(distances, dtype=np.float64)
    np.fill_diagonal(matrix, np.inf)
    size = np.ones(count)
    label = np.arange(count)
    if count < 2:
        return _first_appearance(label)
    nearest = matrix.argmin(axis=1)
    nearest_distance = matrix[np.arange(count), nearest]
    while True:
        row = int(nearest_distance.argmin())
        if not nearest_distance[row] < threshold:
            return _first_appearance(label)
        keep, gone = sorted((row, int(nearest[row])))
        merged = (size[keep] * matrix[keep] + size[gone] * matrix[gone]) / (size[keep] + size[gone])
        merged[[keep, gone]] = np.inf
        matrix[keep], matrix[:, keep] = merged, merged
        matrix[gone], matrix[:, gone] = np.inf, np.inf
        size[keep] += size[gone]
        label[label == gone] = keep
        # A mean of two distances is never below both, so only rows whose nearest was one
        # of the merged pair (and the merged row itself) can have a new nearest.
        stale = (nearest == keep) | (nearest == gone)
        stale[gone] = False
        stale[keep] = True
        rows = np.flatnonzero(stale)
        nearest[rows] = matrix[rows].argmin(axis=1)
        nearest_distance[rows] = matrix[rows, nearest[rows]]
        nearest_distance[gone] = np.inf


def _first_appearance(label: np.ndarray) -> list[int]:
    """Relabel clusters 0, 1, 2, ... in the order their first member appears."""
    _, first, inverse = np.unique(label, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse].tolist()


# --- the fast path: candidates, graph, components ----------------------------------------


def cluster_near_duplicates(texts: Sequence[str], threshold: float = 0.5) -> list[int]:
    """A cluster id per text, equal to `reference_bleu_clusters` but in near-linear time."""
    return near_duplicate_clusters(texts, threshold).labels


def near_duplicate_clusters(texts: Sequence[str], threshold: float = 0.5) -> NearDuplicateClusters:
    """`cluster_near_duplicates` with the counts of pairs it scored (for benchmarks, logs)."""
    _check_threshold(threshold)
    tokens = tokenize(list(texts))
    lengths = tokens.lengths
    grams = _numbered_ngrams(tokens)
    left, right = _candidate_pairs(tokens, threshold)
    distance = _pair_distances(grams, lengths, left, right)
    close = distance < threshold
    root = _components(len(tokens), left[close], right[close])
    label = root.copy()
    scored = _ScoredPairs(left * max(len(tokens), 1) + right, distance)
    linkage_pairs = _link_components(grams, lengths, root, threshold, label, scored)
    sizes = np.bincount(root, minlength=1)
    return NearDuplicateClusters(
        labels=_first_appearance(label),
        candidate_pairs=len(left),
        close_pairs=int(close.sum()),
        linkage_pairs=linkage_pairs,
        largest_component=int(sizes.max()) if len(tokens) else 0,
    )


@dataclass(frozen=True)
class _NumberedNgrams:
    """Per text, ids of its n-grams (n = 1..4), the k-th copy of an n-gram its own id, so
    the clipped match count of two texts is the size of the intersection of their ids."""

    ids: np.ndarray  # int64, text t owns ids[offsets[t]:offsets[t + 1]]
    offsets: np.ndarray  # int64
    order: np.ndarray  # int64, n of each id
    vocabulary: int


def _numbered_ngrams(tokens: Tokens) -> _NumberedNgrams:
    ids, owners, orders = [], [], []
    next_id = 0
    for windows in iter_windows(tokens, BLEU_MAX_ORDER):
        order = np.lexsort((windows.hashes, windows.text_index))
        owner, gram = windows.text_index[order], windows.hashes[order]
        copy = _rank_in_runs(owner, gram).astype(np.uint64)
        unique, inverse = np.unique(mix64(gram + copy * _OCCURRENCE_STEP), return_inverse=True)
        ids.append(inverse.astype(np.int64) + next_id)
        owners.append(owner)
        orders.append(np.full(len(unique), windows.n, dtype=np.int64))
        next_id += len(unique)
    if not ids:
        empty = np.zeros(0, dtype=np.int64)
        return _NumberedNgrams(empty, np.zeros(len(tokens) + 1, np.int64), empty, 0)
    owner, ids_flat = np.concatenate(owners), np.concatenate(ids)
    by_text = np.lexsort((ids_flat, owner))  # ids ascending within each text: see _match_counts
    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=len(tokens)), out=offsets[1:])
    return _NumberedNgrams(ids_flat[by_text], offsets, np.concatenate(orders), next_id)


def _rank_in_runs(owner: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal (owner, gram) in sorted arrays."""
    position = np.arange(len(owner))
    new_run = np.ones(len(owner), dtype=bool)
    new_run[1:] = (owner[1:] != owner[:-1]) | (gram[1:] != gram[:-1])
    return position - np.maximum.accumulate(np.where(new_run, position, 0))


def _needed_order(lengths: np.ndarray, threshold: float) -> np.ndarray:
    """Per text, the largest order n such that, as hypothesis, it cannot come closer than
    `threshold` to a text with which it shares no n-gram.

    Sharing no n-gram means sharing none of any higher order either, so p_k = ε / max(1,
    c − k + 1) for k = n..4 while the other precisions and the brevity penalty are at most
    1: BLEU <= (Π_k ε / max(1, c − k + 1))^(1/4), and a close pair needs BLEU > 1 − threshold
    one way. No shared word means BLEU 0, so n = 1 always holds. At threshold 0.5 every text
    of 5+ words needs a shared 4-gram; at 0.7, texts of up to 15 words need only a 3-gram.
    """
    similarity = 1.0 - threshold
    needed = np.ones(len(lengths), dtype=np.int64)
    if similarity <= 0:
        return needed
    words = lengths.astype(np.float64)
    log_bound = np.zeros(len(lengths))
    for n in range(BLEU_MAX_ORDER, 1, -1):
        log_bound += np.log(SMOOTHING_EPSILON / np.maximum(words - n + 1, 1)) / BLEU_MAX_ORDER
        holds = log_bound < math.log(similarity) - 1e-9  # margin for rounding
        needed[holds & (needed == 1)] = n  # bounds shrink as n falls: keep the largest n
    return needed


def _candidate_pairs(tokens: Tokens, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (left < right) that may be closer than `threshold`: a superset of the close ones.

    A text that needs order n (`_needed_order`) is paired with every text sharing one of its
    n-grams; texts without words are paired with none.
    """
    count = len(tokens)
    pairs = [np.zeros(0, dtype=np.int64)]
    needed = _needed_order(tokens.lengths, threshold)
    for windows in iter_windows(tokens, BLEU_MAX_ORDER):
        active = needed == windows.n
        if active.all():
            pairs.append(_shared_key_pairs(windows.hashes, windows.text_index, count))
        elif active.any():
            pairs.append(_one_sided_pairs(windows.hashes, windows.text_index, active, count))
    keys = np.unique(np.concatenate(pairs))
    return keys // max(count, 1), keys % max(count, 1)


def _postings(keys: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (key, owner) sorted by key then owner, and each one's group start and end."""
    order = np.lexsort((owners, keys))
    keys, owners = keys[order], owners[order]
    distinct = np.ones(len(keys), dtype=bool)
    distinct[1:] = (keys[1:] != keys[:-1]) | (owners[1:] != owners[:-1])
    keys, owners = keys[distinct], owners[distinct]
    new_group = np.ones(len(keys), dtype=bool)
    new_group[1:] = keys[1:] != keys[:-1]
    starts = np.flatnonzero(new_group)
    group = np.cumsum(new_group) - 1
    ends = np.append(starts[1:], len(keys))
    return owners, starts[group], ends[group]


def _shared_key_pairs(keys: np.ndarray, owners: np.ndarray, count: int) -> np.ndarray:
    """Every pair of texts sharing a key, as left * count + right with left < right."""
    owners, _, ends = _postings(keys, owners)
    later = ends - np.arange(len(owners)) - 1  # members after this one in its group
    first = np.repeat(np.arange(len(owners)), later)
    step = np.arange(len(first)) - np.repeat(np.cumsum(later) - later, later)
    return owners[first] * count + owners[first + 1 + step]


def _one_sided_pairs(
    keys: np.ndarray, owners: np.ndarray, active: np.ndarray, count: int
) -> np.ndarray:
    """Every pair of texts sharing a key where at least one of the two is `active`."""
    owners, starts, ends = _postings(keys, owners)
    mine = np.flatnonzero(active[owners])
    size = (ends - starts)[mine]
    first = np.repeat(mine, size)
    other = (
        np.repeat(starts[mine], size)
        + np.arange(len(first))
        - np.repeat(np.cumsum(size) - size, size)
    )
    left, right = owners[first], owners[other]
    keep = left != right
    left, right = np.minimum(left, right)[keep], np.maximum(left, right)[keep]
    return left * count + right


def _pair_distances(
    grams: _NumberedNgrams, lengths: np.ndarray, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """1 − mean BLEU of both directions for each pair, in bounded batches."""
    distance = np.ones(len(left))
    for begin in range(0, len(left), _PAIR_CHUNK):
        chunk = slice(begin, begin + _PAIR_CHUNK)
        matches = _match_counts(grams, left[chunk], right[chunk])
        first, second = lengths[left[chunk]], lengths[right[chunk]]
        bleu = _bleu_array(matches, first, second) + _bleu_array(matches, second, first)
        distance[chunk] = 1.0 - bleu / 2
    return distance


def _match_counts(grams: _NumberedNgrams, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Clipped matches [pairs x order]: numbered ids both texts hold, found by one sort."""
    matches = np.zeros((len(left), BLEU_MAX_ORDER), dtype=np.int64)
    if not grams.vocabulary or not len(left):
        return matches
    values = []
    for side in (left, right):
        flat, pair = _gather(grams.offsets, side)
        values.append(pair * grams.vocabulary + grams.ids[flat])  # ascending: ids sorted
    mine, theirs = values
    # Both sides are sorted, so a binary search finds each of mine in theirs; ids are
    # unique within a text, so every hit is one clipped match.
    position = np.minimum(np.searchsorted(theirs, mine), max(len(theirs) - 1, 0))
    shared = mine[theirs[position] == mine] if len(theirs) else mine[:0]
    pair, gram = np.divmod(shared, grams.vocabulary)
    slot = pair * BLEU_MAX_ORDER + grams.order[gram] - 1
    return np.bincount(slot, minlength=matches.size).reshape(matches.shape)


def _gather(offsets: np.ndarray, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of all items of `texts`, index into `texts` of each) from flat offsets."""
    lengths = offsets[texts + 1] - offsets[texts]
    before = np.cumsum(lengths) - lengths
    within = np.arange(int(lengths.sum())) - np.repeat(before, lengths)
    return np.repeat(offsets[texts], lengths) + within, np.repeat(np.arange(len(texts)), lengths)


def _bleu_array(matches: np.ndarray, hypothesis: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`_bleu` for many pairs at once (same formula, same order of operations)."""
    hyp = hypothesis.astype(np.float64)
    log_precision = np.zeros(len(matches))
    for n in range(1, BLEU_MAX_ORDER + 1):
        grams = np.maximum(hyp - n + 1, 1)
        matched = matches[:, n - 1]
        log_precision += np.log(np.where(matched > 0, matched, SMOOTHING_EPSILON) / grams)
    with np.errstate(divide="ignore", invalid="ignore"):
        brevity = np.where(hyp < reference, np.exp(1.0 - reference / hyp), 1.0)
    bleu = brevity * np.exp(log_precision / BLEU_MAX_ORDER)
    return np.where((hypothesis == 0) | (matches[:, 0] == 0), 0.0, bleu)


def _components(count: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per text, the lowest index of its connected component (union-find, path halving)."""
    parent = list(range(count))

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    return np.array([find(node) for node in range(count)], dtype=np.int64)


@dataclass(frozen=True)
class _ScoredPairs:
    """Distances already computed, by pair key left * count + right (sorted, unique)."""

    keys: np.ndarray
    distance: np.ndarray

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of `keys` already scored, their distances)."""
        if not len(self.keys):
            return np.zeros(len(keys), dtype=bool), np.zeros(0)
        position = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[position] == keys
        return found, self.distance[position[found]]


def _link_components(
    grams: _NumberedNgrams,
    lengths: np.ndarray,
    root: np.ndarray,
    threshold: float,
    label: np.ndarray,
    scored: _ScoredPairs,
) -> int:
    """Average linkage inside each component of 3+ texts, written into `label`.

    A component of two texts is one close pair: always one cluster. Candidate pairs keep
    their distances; the rest are scored here. Returns how many pairs that was.
    """
    sizes = np.bincount(root, minlength=1)
    big = np.flatnonzero(sizes >= 3)
    if not len(big):
        return 0
    members = [np.flatnonzero(root == component) for component in big.tolist()]
    upper = [np.triu_indices(len(group), 1) for group in members]
    left = np.concatenate([group[i] for group, (i, _) in zip(members, upper, strict=True)])
    right = np.concatenate([group[j] for group, (_, j) in zip(members, upper, strict=True)])
    known, distance_known = scored.lookup(left * len(root) + right)
    distance = np.empty(len(left))
    distance[known] = distance_known
    distance[~known] = _pair_distances(grams, lengths, left[~known], right[~known])
    begin = 0
    for group, (i, j) in zip(members, upper, strict=True):
        matrix = np.zeros((len(group), len(group)))
        matrix[i, j] = matrix[j, i] = distance[begin : begin + len(i)]
        begin += len(i)
        local = np.asarray(average_linkage(matrix, threshold))
        label[group] = group[np.unique(local, return_index=True)[1]][local]
    return int((~known).sum())


# --- comparing clusterings -----------------------------------------------------------


def adjusted_rand_index(first: Sequence[int], second: Sequence[int]) -> float:
    """Adjusted Rand index of two labelings (Hubert & Arabie 1985); 1.0 means identical.

    ARI = (Σ C(n_ij, 2) − E) / (½[Σ C(a_i, 2) + Σ C(b_j, 2)] − E), E = Σ C(a_i, 2) Σ C(b_j, 2)
    / C(n, 2), over the contingency table n_ij and its margins a_i, b_j. Ours because
    scikit-learn is not installed. Two labelings that leave nothing to adjust (both all
    singletons, or both one cluster) score 1.0.
    """
    if len(first) != len(second):
        raise ValueError(f"labelings must have equal length, not {len(first)} and {len(second)}")
    if len(first) < 2:
        return 1.0
    table = Counter(zip(first, second, strict=True))
    together = sum(math.comb(n, 2) for n in table.values())
    rows = sum(math.comb(n, 2) for n in Counter(first).values())
    columns = sum(math.comb(n, 2) for n in Counter(second).values())
    expected = rows * columns / math.comb(len(first), 2)
    best = (rows + columns) / 2
    if best == expected:
        return 1.0
    return (together - expected) / (best - expected)


def _check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold ({threshold}) must be a 1 − BLEU distance in [0, 1]")
