"""Benchmark: majority-vote labelling of answer groups, ours against naive all-pairs math-verify.

The same N groups of m Solver answers (default 10,000 groups of 8; seeded, see
`answer_groups`) are labelled two ways, each in one warm worker process, so both get one core
and math-verify's `signal.alarm` timeouts work (they need a process's main thread):

- ours: `EquivalenceChecker.cluster_batch` (normalised-string equality first, then
  math-verify both ways against each cluster's representative, parses cached per worker),
  then `verifiers.majority.majority_vote` per group: what the `label` stage does;
- naive: parse each answer of a group with math-verify, `verify` every one of the
  m(m−1)/2 pairs, join equal pairs into clusters (union-find), the same majority vote.

The naive way takes tens of milliseconds a group, so it runs on the first `--naive-groups`
(default 1,000) and its time is extrapolated linearly to N (groups are drawn independently,
so the first 1,000 are a fair sample); the report says so. The two agree on p̂ for nearly
every group; the share that agrees is reported too.

    python -m bench.labelling
    python -m bench.labelling --groups 2000 --naive-groups 200

`measure_labelling(...)` returns the figures as a `LabellingBench`; `results(quick)` as table
records for `python -m bench`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.report import BenchResult, Record, Step, no_step
from verifiers.equivalence import EquivalenceChecker
from verifiers.majority import MajorityLabel, majority_vote

Group = list[str | None]

# Answers that are no number: what a 135M Solver writes when it loses the thread (several
# taken from a real run's trajectories).
_JUNK = (
    "2x+3", "\\sqrt{2}", "3\\pi", "(1, 2)", "x^2-1", "\\frac{\\sqrt{3}}{2}", "2^{10}",
    "\\infty", "y=2x", "n(n+1)/2", "1/", "3:0", "not possible", "sqrt(2^2)/",
    "Lizzy is an AI assistant", "k)",
)  # fmt: skip


def _written(value: int | tuple[int, int], rng: random.Random) -> str:
    """One way a Solver writes `value` (an integer or a fraction p/q) as its final answer."""
    if isinstance(value, tuple):
        p, q = value
        choices = [f"{p}/{q}", f"\\frac{{{p}}}{{{q}}}", f"\\dfrac{{{p}}}{{{q}}}"]
        if 100 % q == 0 or q in (8, 16):
            choices.append(f"{p / q:g}")
        return rng.choice(choices)
    if rng.random() < 0.6:
        return str(value)  # the plain form is the commonest
    return rng.choice(
        [
            f"{value}.0",
            f"x = {value}",
            f"{value} \\text{{ cm}}",
            f"\\frac{{{2 * value}}}{{2}}",
            f"{value * 3}/3",
            f"${value}$",
        ]
    )


def answer_groups(count: int, size: int = 8, seed: int = 0) -> list[Group]:
    """`count` seeded groups of `size` answers, shaped like a weak Solver's.

    Modelled on the math tasks of a real `selfplay generate --tasks 32` run of the embedded
    model: there 4.9 distinct normalised answers per group of 8, 19% without an answer, 10%
    neither an integer nor empty; here 4.5, 18% and 25%, the last on purpose, so that
    math-verify has equal values in different forms to find. Per answer: 35% the group's
    value, often in a form only math-verify equates ("\\frac{24}{2}", "36/3"); 35% one of
    four wrong values; 18% no answer; 12% junk (symbolic or prose). One group in ten is
    about a fraction.
    """
    rng = random.Random(seed)
    groups: list[Group] = []
    for _ in range(count):
        value: int | tuple[int, int]
        wrong: list[int | tuple[int, int]]
        if rng.random() < 0.1:
            q = rng.choice((2, 3, 4, 5, 6, 8))
            value = (rng.randrange(1, 3 * q), q)
            wrong = [(value[0] + 1, q), rng.randrange(1, 10), 1, 0]
        else:
            value = rng.randrange(0, 300)
            wrong = [value + rng.choice((-1, 1)), value + 10, 2 * value + 1, rng.randrange(1000)]
        group: Group = []
        for _ in range(size):
            draw = rng.random()
            if draw < 0.35:
                group.append(_written(value, rng))
            elif draw < 0.70:
                group.append(_written(rng.choice(wrong), rng))
            elif draw < 0.88:
                group.append(None)
            else:
                group.append(rng.choice(_JUNK))
        groups.append(group)
    return groups


# --- the naive baseline (runs in a worker process) ----------------------------------------


def _naive_warm_up() -> bool:
    from math_verify import parse, verify

    return bool(verify(parse("$1$"), parse("$1$")))


def call_costs(repeats: int = 20) -> dict[str, float]:
    """Milliseconds per math-verify call for typical answers (run in a worker process)."""
    from math_verify import parse, verify

    started = time.perf_counter()
    for index in range(repeats):
        parse(f"${index}$")
    costs = {"parse an integer": 1000 * (time.perf_counter() - started) / repeats}
    pairs = {
        "verify integer vs other integer": ("12", "13"),
        "verify integer vs equal fraction": ("12", "\\frac{24}{2}"),
        "verify integer vs expression": ("12", "2x+3"),
        "verify expression vs prose": ("2x+3", "not possible"),
    }
    for label, (first, second) in pairs.items():
        gold, target = parse(f"${first}$"), parse(f"${second}$")
        started = time.perf_counter()
        for _ in range(repeats):
            verify(gold, target)
        costs[label] = 1000 * (time.perf_counter() - started) / repeats
    return costs


def naive_cluster_ids(groups: Sequence[Group]) -> list[list[int | None]]:
    """Every pair of every group through math-verify; clusters = connected components.

    Each answer is parsed once per group (a naive labeller would not do less), with
    math-verify's own default timeouts. Cluster ids count in order of first member.
    """
    from math_verify import parse, verify

    out: list[list[int | None]] = []
    for group in groups:
        parsed = [None if a is None else _safe(parse, f"${a}$") for a in group]
        parent = list(range(len(group)))

        def root(i: int, parent: list[int] = parent) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                if parsed[i] and parsed[j] and _safe(verify, parsed[i], parsed[j]):
                    parent[root(j)] = root(i)
        ids: dict[int, int] = {}
        out.append(
            [
                None if not parsed[i] else ids.setdefault(root(i), len(ids))
                for i in range(len(group))
            ]
        )
    return out


def _safe(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Exception:  # a timeout or a comparison sympy cannot do: no match
        return None


# --- measurement ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LabellingBench:
    groups: int
    group_size: int
    ours_s: float
    naive_groups: int
    naive_s: float  # on naive_groups only
    ours_timeouts: int
    agreement: float  # share of the naive subsample whose p̂ ours reproduces
    call_costs_ms: dict[str, float]  # math-verify's cost per call, by kind of answer

    @property
    def naive_extrapolated_s(self) -> float:
        return self.naive_s * self.groups / self.naive_groups

    @property
    def speedup(self) -> float:
        return self.naive_extrapolated_s / self.ours_s

    def report(self) -> str:
        scaled = (
            ""
            if self.naive_groups == self.groups
            else (
                f" (measured on {self.naive_groups:,} groups: {self.naive_s:.1f} s, extrapolated)"
            )
        )
        return "\n".join(
            [
                f"{self.groups:,} groups of {self.group_size} answers",
                f"ours (cluster_batch + majority_vote): {self.ours_s:8.1f} s "
                f"({1000 * self.ours_s / self.groups:.2f} ms/group, {self.ours_timeouts} timeouts)",
                f"naive all-pairs math-verify:          {self.naive_extrapolated_s:8.1f} s{scaled}",
                f"speed-up: {self.speedup:.1f}x; same p̂ on {self.agreement:.1%} of the subsample",
                "math-verify cost per call: "
                + ", ".join(f"{k} {v:.2f} ms" for k, v in self.call_costs_ms.items()),
            ]
        )


def measure_labelling(
    groups: int = 10_000, naive_groups: int = 1_000, group_size: int = 8, step: Step = no_step
) -> LabellingBench:
    """Label the same seeded groups both ways (one worker process each); see the module doc."""
    answers = answer_groups(groups, group_size)
    naive_groups = min(naive_groups, groups)
    step("starting the math-verify workers")
    context = multiprocessing.get_context("spawn")
    with (
        EquivalenceChecker(workers=1) as checker,
        ProcessPoolExecutor(1, mp_context=context) as naive_pool,
    ):
        naive_pool.submit(_naive_warm_up).result()  # imported and warm, as our worker is
        checker.cluster([["1", "1.0"]])
        step(f"ours on {groups:,} groups")
        started = time.perf_counter()
        batch = checker.cluster_batch(answers)
        ours = [majority_vote(g, ids) for g, ids in zip(answers, batch.cluster_ids, strict=True)]
        ours_s = time.perf_counter() - started
        step(f"naive all-pairs on {naive_groups:,} groups")
        started = time.perf_counter()
        naive_ids = naive_pool.submit(naive_cluster_ids, answers[:naive_groups]).result()
        naive = [majority_vote(g, ids) for g, ids in zip(answers, naive_ids, strict=False)]
        naive_s = time.perf_counter() - started
        costs = naive_pool.submit(call_costs).result()
    return LabellingBench(
        groups=groups,
        group_size=group_size,
        ours_s=ours_s,
        naive_groups=naive_groups,
        naive_s=naive_s,
        ours_timeouts=sum(batch.timeouts),
        agreement=_agreement(ours, naive),
        call_costs_ms=costs,
    )


def _agreement(ours: Sequence[MajorityLabel], naive: Sequence[MajorityLabel]) -> float:
    same = sum(a.majority_share == b.majority_share for a, b in zip(ours, naive, strict=False))
    return same / max(1, len(naive))


def results(quick: bool = False, step: Step = no_step) -> BenchResult:
    """Table records for `python -m bench` (quick: 150 groups, 40 naive)."""
    groups, naive_groups = (150, 40) if quick else (10_000, 1_000)
    bench = measure_labelling(groups, naive_groups, step=step)
    subsample = (
        ""
        if bench.naive_groups == bench.groups
        else f"; naive measured on {bench.naive_groups:,} groups and extrapolated"
    )
    record = Record(
        what=f"majority-vote labelling, {bench.groups:,} groups of {bench.group_size} answers, "
        f"vs naive all-pairs math-verify{subsample} (1 worker each)",
        ours=f"{bench.ours_s:.1f} s",
        baseline=f"{bench.naive_extrapolated_s:.0f} s",
        ratio=bench.speedup,
    )
    details = (
        "```\n" + bench.report() + "\n```\n\n"
        "Answer groups are synthetic and seeded (`bench.labelling.answer_groups`), shaped "
        "like a real run's: per group a value written in several equivalent forms, four wrong "
        "values, blanks and symbolic or prose junk. "
        "Agreement is on p̂: the naive labeller joins clusters transitively over all pairs, "
        "ours compares each answer with cluster representatives only, both ways."
    )
    return BenchResult([record], details)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=10_000, help="answer groups to label")
    parser.add_argument("--naive-groups", type=int, default=1_000, help="naive subsample")
    parser.add_argument("--size", type=int, default=8, help="answers per group (m)")
    args = parser.parse_args(argv)
    print(measure_labelling(args.groups, args.naive_groups, args.size).report())


if __name__ == "__main__":
    main()
