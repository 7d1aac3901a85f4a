"""Seeded sampling of documents for the Challenger.

Sampling is without replacement while the corpus lasts; past that it walks a
fresh seeded permutation of the whole corpus, then another, so every document
is used equally often. A longer sample with the same seed extends a shorter one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from corpora.documents import CorpusError, Document


def sample_documents(docs: Sequence[Document], n: int, seed: int) -> list[Document]:
    """`n` documents drawn from `docs`, the same for the same seed."""
    if n < 0:
        raise CorpusError(f"cannot sample a negative number of documents (n={n})")
    if not docs:
        raise CorpusError(f"cannot sample {n} document(s) from an empty corpus")
    rng = random.Random(seed)
    sample: list[Document] = []
    while len(sample) < n:
        order = rng.sample(range(len(docs)), len(docs))
        sample.extend(docs[position] for position in order[: n - len(sample)])
    return sample
