"""Benchmark: near-duplicate clustering of Challenger batches, ours against the O(B²) reference.

For each batch size B (default 512 and 2,048) a seeded batch of questions is drawn the way
the test fixture is (`tests/selfplay/data/make_questions.py`: template families, 45% edited
copies of earlier questions). Then:

- ours: `selfplay.near_duplicates.near_duplicate_clusters` (4-gram candidates, BLEU on
  candidates in numpy, average linkage inside components), best of `--repeats`;
- the reference: `reference_bleu_clusters` (BLEU of all B(B−1)/2 pairs in Python, average
  linkage on the full matrix), run once: at B = 2,048 it takes about a minute here.

It prints a table (seconds, speed-up, adjusted Rand index of the two clusterings, pairs
scored); `run()` returns the same figures as one dict per batch size, `results(quick)` as
table records for `python -m bench`.

    python -m bench.clustering
    python -m bench.clustering --sizes 256 512 --repeats 5
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from bench.report import BenchResult, Record, Step, no_step
from selfplay.near_duplicates import (
    adjusted_rand_index,
    near_duplicate_clusters,
    reference_bleu_clusters,
)
from tests.selfplay.data.make_questions import generate_questions

DEFAULT_SIZES = (512, 2048)
_T = TypeVar("_T")


def run(
    sizes: Sequence[int] = DEFAULT_SIZES,
    threshold: float = 0.5,
    seed: int = 0,
    repeats: int = 3,
) -> list[dict[str, float | int | bool]]:
    """One row of measured figures per batch size (see `_measure` for the keys)."""
    return [_measure(size, threshold, seed, repeats) for size in sizes]


def _measure(size: int, threshold: float, seed: int, repeats: int) -> dict[str, float | int | bool]:
    texts = [str(row["question"]) for row in generate_questions(size, seed)]
    ours_s, ours = _best_of(repeats, lambda: near_duplicate_clusters(texts, threshold))
    reference_s, reference = _best_of(1, lambda: reference_bleu_clusters(texts, threshold))
    return {
        "batch_size": size,
        "ours_s": ours_s,
        "reference_s": reference_s,
        "speedup": reference_s / ours_s,
        "ari": adjusted_rand_index(reference, ours.labels),
        "identical": reference == ours.labels,
        "clusters": len(set(ours.labels)),
        "largest_component": ours.largest_component,
        "candidate_pairs": ours.candidate_pairs,
        "linkage_pairs": ours.linkage_pairs,
        "all_pairs": size * (size - 1) // 2,
    }


def _best_of(repeats: int, call: Callable[[], _T]) -> tuple[float, _T]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def format_table(rows: list[dict[str, float | int | bool]]) -> str:
    header = (
        f"{'B':>6} {'ours s':>8} {'ref s':>8} {'speed-up':>9} {'ARI':>6} {'same':>5} "
        f"{'clusters':>8} {'scored pairs':>13} {'all pairs':>10}"
    )
    lines = [header]
    for row in rows:
        scored = int(row["candidate_pairs"]) + int(row["linkage_pairs"])
        lines.append(
            f"{row['batch_size']:>6} {row['ours_s']:>8.3f} {row['reference_s']:>8.2f} "
            f"{row['speedup']:>8.0f}x {row['ari']:>6.3f} {'yes' if row['identical'] else 'no':>5} "
            f"{row['clusters']:>8} {scored:>13,} {row['all_pairs']:>10,}"
        )
    return "\n".join(lines)


def results(quick: bool = False, step: Step = no_step) -> BenchResult:
    """Table records for `python -m bench` (quick: B = 128 and 256, best of 1)."""
    sizes, repeats = ((128, 256), 1) if quick else (DEFAULT_SIZES, 3)
    rows = []
    for size in sizes:
        step(f"B = {size:,}: ours best of {repeats}, then the O(B²) reference once")
        rows.extend(run([size], repeats=repeats))
    records = [
        Record(
            f"near-duplicate clustering, B = {row['batch_size']:,} Challenger questions, vs "
            f"R-Zero's 1−BLEU average-linkage clustering, O(B²) (ARI {row['ari']:.3f}, "
            f"{'identical clusters' if row['identical'] else 'clusters differ'})",
            f"{row['ours_s']:.3f} s",
            f"{row['reference_s']:.2f} s",
            float(row["speedup"]),
        )
        for row in rows
    ]
    return BenchResult(records, "```\n" + format_table(rows) + "\n```")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--threshold", type=float, default=0.5, help="1 − BLEU distance")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated batches")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (ours)")
    args = parser.parse_args(argv)
    print(format_table(run(args.sizes, args.threshold, args.seed, args.repeats)))


if __name__ == "__main__":
    main()
