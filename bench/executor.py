"""Benchmark: the sandbox pool against a fresh interpreter per snippet, and against bare exec.

Runs the same N mixed, benign snippets (default 1,000: arithmetic, loops, comprehensions,
sorting, strings, dicts, recursion, a raised exception, prints) three ways, in one run,
taking turns slice by slice so that load from other work on the machine is shared fairly:

- the warm `SandboxPool` (`run_many`, all workers busy);
- `subprocess.run([sys.executable, "-c", snippet])`, one fresh interpreter per snippet,
  twice: with as many in flight as the pool has workers (the fair comparison), and one
  after another (the loop a caller without a pool would write);
- plain in-process `exec` with stdout captured (no isolation at all), to show what the
  isolation costs per snippet.

Launch:

    python -m bench.executor                 # 1,000 snippets, 2 workers
    python -m bench.executor --snippets 200 --workers 2

`measure_executor(...)` returns the same figures as an `ExecutorBench`; `results(quick)` as
table records for `python -m bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.report import BenchResult, Record, Step, no_step
from verifiers.sandbox import SandboxJob, SandboxPool, Status

_TEMPLATES = (
    "print({a} * {b} + {c})",
    "total = 0\nfor i in range({a} * 10):\n    total += i * i\nprint(total)",
    "print(sorted([(i * {b}) % {c} for i in range({a} * 5)])[:5])",
    "words = ['alpha', 'beta', 'gamma', 'delta'] * {a}\nprint(len(' '.join(words).upper()))",
    "counts = {{}}\nfor ch in 'abracadabra' * {a}:\n    counts[ch] = counts.get(ch, 0) + 1\n"
    "print(sorted(counts.items()))",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nprint(fib({a} % 12 + 5))",
    "import math\nprint(round(math.sqrt({a} * {b}) + math.pi, 6))",
    "from collections import Counter\nprint(Counter(str({a} ** {c})).most_common(2))",
    "def f(xs):\n    return [x for x in xs if x % 3 == 0]\nprint(f(list(range({b}))))",
    "try:\n    print({a} // ({c} - {c}))\n"
    "except ZeroDivisionError as error:\n    print('error', error)",
)


def mixed_snippets(count: int) -> list[str]:
    """`count` deterministic snippets cycling through the templates with varied numbers."""
    snippets = []
    for index in range(count):
        template = _TEMPLATES[index % len(_TEMPLATES)]
        a, b, c = index % 17 + 1, index % 29 + 2, index % 7 + 3
        snippets.append(template.format(a=a, b=b, c=c))
    return snippets


@dataclass(frozen=True)
class ExecutorBench:
    snippets: int
    workers: int
    pool_per_s: float
    subprocess_per_s: float  # as many interpreters in flight as the pool has workers
    subprocess_serial_per_s: float  # one `subprocess.run` after another, the naive loop
    exec_per_s: float
    pool_failures: int  # snippets whose pool status was not ok (should be 0)

    @property
    def pool_vs_subprocess(self) -> float:
        """Against fresh interpreters at the same parallelism: the fair comparison."""
        return self.pool_per_s / self.subprocess_per_s

    @property
    def pool_vs_serial_subprocess(self) -> float:
        """Against a plain loop of `subprocess.run`, what a caller without a pool writes."""
        return self.pool_per_s / self.subprocess_serial_per_s

    @property
    def overhead_ms(self) -> float:
        """Extra wall time per snippet in the pool, over bare exec, at the pool's parallelism."""
        return 1000.0 / self.pool_per_s - 1000.0 / self.exec_per_s

    def report(self) -> str:
        return "\n".join(
            [
                f"snippets: {self.snippets}, workers: {self.workers}",
                f"sandbox pool:            {self.pool_per_s:9.1f} executions/s",
                f"subprocess per snippet:  {self.subprocess_per_s:9.1f} executions/s "
                f"({self.workers} in flight)",
                f"subprocess, one by one:  {self.subprocess_serial_per_s:9.1f} executions/s",
                f"in-process exec:         {self.exec_per_s:9.1f} executions/s",
                f"pool / subprocess:       {self.pool_vs_subprocess:9.1f}x (same parallelism)",
                f"pool / subprocess loop:  {self.pool_vs_serial_subprocess:9.1f}x (one by one)",
                f"exec / pool:             {self.exec_per_s / self.pool_per_s:9.1f}x "
                f"({self.overhead_ms:.2f} ms of isolation per snippet)",
                f"pool failures:           {self.pool_failures}",
            ]
        )


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _time_pool(pool: SandboxPool, snippets: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    results = pool.run_many([SandboxJob(code=snippet) for snippet in snippets])
    elapsed = time.perf_counter() - start
    return elapsed, sum(result.status is not Status.OK for result in results)


def _run_interpreter(snippet: str) -> int:
    completed = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, timeout=60, check=False
    )
    return completed.returncode


def _time_subprocess(executor: ThreadPoolExecutor, snippets: list[str]) -> float:
    start = time.perf_counter()
    list(executor.map(_run_interpreter, snippets))
    return time.perf_counter() - start


def _time_exec(snippets: list[str]) -> float:
    start = time.perf_counter()
    for snippet in snippets:
        with contextlib.redirect_stdout(io.StringIO()):
            # Benign snippets generated above: this is the no-isolation baseline.
            exec(compile(snippet, "<bench>", "exec"), {"__name__": "__bench__"})
    return time.perf_counter() - start


def measure_executor(
    snippet_count: int = 1000, workers: int = 2, rounds: int = 10
) -> ExecutorBench:
    """Time all three ways on the same snippets, in one process.

    The snippets are cut into `rounds` slices and the three ways take turns on each slice,
    so a change in the machine's load during the run (it is shared) weighs on all three
    alike instead of on whichever happened to run at the time.
    """
    snippets = mixed_snippets(snippet_count)
    size = max(1, -(-len(snippets) // max(1, rounds)))
    slices = [snippets[i : i + size] for i in range(0, len(snippets), size)]
    pool_s = subprocess_s = serial_s = exec_s = 0.0
    failures = 0
    with (
        SandboxPool(workers=workers) as pool,
        ThreadPoolExecutor(workers) as executor,
        ThreadPoolExecutor(1) as serial,
    ):
        pool.run("1")  # workers are warm before the clock starts, as in the pipeline
        for piece in slices:
            elapsed, failed = _time_pool(pool, piece)
            pool_s, failures = pool_s + elapsed, failures + failed
            subprocess_s += _time_subprocess(executor, piece)
            serial_s += _time_subprocess(serial, piece)
            exec_s += _time_exec(piece)
    return ExecutorBench(
        snippets=snippet_count,
        workers=workers,
        pool_per_s=_rate(snippet_count, pool_s),
        subprocess_per_s=_rate(snippet_count, subprocess_s),
        subprocess_serial_per_s=_rate(snippet_count, serial_s),
        exec_per_s=_rate(snippet_count, exec_s),
        pool_failures=failures,
    )


def results(quick: bool = False, step: Step = no_step) -> BenchResult:
    """Table records for `python -m bench` (quick: 40 snippets in 2 slices)."""
    snippets, rounds = (40, 2) if quick else (1000, 10)
    step(f"{snippets:,} snippets, pool / subprocess / exec taking turns")
    bench = measure_executor(snippets, workers=2, rounds=rounds)
    pool = f"{bench.pool_per_s:,.0f} runs/s"
    what = f"sandbox pool, {bench.snippets:,} mixed snippets ({bench.workers} workers)"
    records = [
        Record(
            f"{what} vs a fresh `python -c` per snippet, {bench.workers} in flight",
            pool,
            f"{bench.subprocess_per_s:,.0f} runs/s",
            bench.pool_vs_subprocess,
        ),
        Record(
            f"{what} vs a `subprocess.run` loop, one by one",
            pool,
            f"{bench.subprocess_serial_per_s:,.0f} runs/s",
            bench.pool_vs_serial_subprocess,
        ),
        Record(
            f"{what} vs bare in-process `exec` (no isolation: the cost of isolation)",
            pool,
            f"{bench.exec_per_s:,.0f} runs/s",
            bench.pool_per_s / bench.exec_per_s,
        ),
    ]
    return BenchResult(records, "```\n" + bench.report() + "\n```")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snippets", type=int, default=1000, help="how many snippets")
    parser.add_argument("--workers", type=int, default=2, help="pool workers and subprocesses")
    parser.add_argument("--rounds", type=int, default=10, help="slices the three ways alternate on")
    options = parser.parse_args(argv)
    print(measure_executor(options.snippets, options.workers, options.rounds).report())


if __name__ == "__main__":
    main()
