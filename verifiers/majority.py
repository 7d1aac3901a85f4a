"""Majority-vote pseudo-labels and the difficulty band (R-Zero, Agent0).

Given the m Solver answers of one task and their equivalence clusters (from
`verifiers.equivalence.EquivalenceChecker.cluster`), the pseudo-label is the
representative (first member) of the largest cluster and the majority share
p̂ = its size / m. Samples without an extracted answer count in m but join no
cluster, so a task most samples fail to answer gets a low p̂. Ties between
equally large clusters go to the cluster whose first member appears first.

The band sorts tasks by p̂: too easy above `high`, too hard below `low`, the
frontier in between (R-Zero's scripts and Agent0: 0.3 ≤ p̂ ≤ 0.8); only frontier
tasks train the Solver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Band", "MajorityLabel", "difficulty_band", "majority_vote"]


@dataclass(frozen=True)
class MajorityLabel:
    """The majority-vote pseudo-label of one task."""

    label: str | None  # representative answer of the largest cluster; None if no answers
    majority_share: float  # p̂: size of the label cluster / n_samples
    n_samples: int  # m, answered or not
    n_answered: int  # samples that joined a cluster
    n_clusters: int
    cluster_sizes: tuple[int, ...]  # descending
    sample_in_label: tuple[bool, ...]  # per sample: does it belong to the label cluster


class Band(StrEnum):
    """Difficulty of a task for the current Solver, from its pass rate."""

    TOO_EASY = "too_easy"
    FRONTIER = "frontier"
    TOO_HARD = "too_hard"


def majority_vote(
    answers: Sequence[str | None], cluster_ids: Sequence[int | None]
) -> MajorityLabel:
    """Pseudo-label of one task from its answers and their cluster ids.

    `cluster_ids[i]` is None exactly where sample i has no usable answer. The
    label is `answers[j]` for the first sample j of the winning cluster.
    """
    if len(answers) != len(cluster_ids):
        raise ValueError(
            f"answers ({len(answers)}) and cluster_ids ({len(cluster_ids)}) must have "
            "the same length: one cluster id per sample"
        )
    sizes: dict[int, int] = {}
    first_member: dict[int, int] = {}
    for index, cluster_id in enumerate(cluster_ids):
        if cluster_id is None:
            continue
        sizes[cluster_id] = sizes.get(cluster_id, 0) + 1
        first_member.setdefault(cluster_id, index)
    n_samples = len(answers)
    if not sizes:
        return MajorityLabel(
            label=None,
            majority_share=0.0,
            n_samples=n_samples,
            n_answered=0,
            n_clusters=0,
            cluster_sizes=(),
            sample_in_label=(False,) * n_samples,
        )
    # Largest cluster; among equals, the one whose first member comes first.
    winner = min(sizes, key=lambda cluster_id: (-sizes[cluster_id], first_member[cluster_id]))
    return MajorityLabel(
        label=answers[first_member[winner]],
        majority_share=sizes[winner] / n_samples,
        n_samples=n_samples,
        n_answered=sum(sizes.values()),
        n_clusters=len(sizes),
        cluster_sizes=tuple(sorted(sizes.values(), reverse=True)),
        sample_in_label=tuple(cluster_id == winner for cluster_id in cluster_ids),
    )


def difficulty_band(pass_rate: float, low: float = 0.3, high: float = 0.8) -> Band:
    """TOO_EASY if pass_rate > high, TOO_HARD if pass_rate < low, else FRONTIER.

    Both edges belong to the frontier (R-Zero: 0.3 ≤ p̂ ≤ 0.8).
    """
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(
            f"band edges must satisfy 0 <= low <= high <= 1, got low={low}, high={high}; "
            "pass e.g. low=0.3, high=0.8"
        )
    if not 0.0 <= pass_rate <= 1.0:
        raise ValueError(f"pass_rate must be in [0, 1], got {pass_rate}")
    if pass_rate > high:
        return Band.TOO_EASY
    if pass_rate < low:
        return Band.TOO_HARD
    return Band.FRONTIER
