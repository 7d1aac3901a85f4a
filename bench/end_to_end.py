"""Benchmark: one `generate` run end to end: frontier tasks per CPU-minute, and where the time goes.

Runs the `generate` Prefect flow (`flows.generate.generate_flow`, what `selfplay generate`
calls) once on the embedded default (SmolLM2-135M-Instruct, default config) with `--tasks`
proposals (default 16) into a temporary warehouse, and reports:

- frontier tasks accepted (0.3 <= p̂ <= 0.8, the ones that train the Solver) per CPU-minute
  of the whole process tree (this process, the vLLM engine core, the math-verify workers,
  Prefect's server), sampled with psutil every 0.25 s, and per wall-minute;
- the wall time of the run split by stage. The flow records only `propose`, `solve` and
  `label` (summary `stage_seconds`, `stage_runs` rows), so the benchmark wraps the calls the
  flow makes for the rest, without changing `flows/`: engine and worker-pool start/stop,
  the Challenger (`propose`: generation and parsing), the Solver (`solve`), verification
  (math-verify `cluster_batch` / `equivalent` and sandbox runs), labelling (`label` minus
  verification: majority vote, bands), the warehouse (row builders, `Warehouse.write` /
  `write_all`, snapshot publishing). Nested calls count once, in the innermost category.
  Whatever is left of the wall time is orchestration: Prefect's server and task machinery,
  the preflight checks, Python work between stages.

    python -m bench.end_to_end                # 16 proposals x 8 samples
    python -m bench.end_to_end --tasks 4 --samples 4

`measure_end_to_end(...)` returns an `EndToEndBench`; `results(quick)` table records for
`python -m bench`. vLLM starts its workers with spawn: run it as a module or under an
`if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import BenchResult, Record, Step, no_step

STAGES = (
    "engines start/stop",
    "Challenger",
    "Solver",
    "verification",
    "labelling",
    "warehouse",
    "orchestration",
)


class StageClock:
    """Exclusive wall seconds per category of wrapped calls: a nested call's time goes to
    its own category and is taken out of its caller's."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._local = threading.local()
        self._lock = threading.Lock()

    def wrap(self, category: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = self._stack()
            stack.append([category, time.perf_counter(), 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                _, started, inner = stack.pop()
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.seconds[category] += elapsed - inner
                if stack:
                    stack[-1][2] += elapsed

        return timed

    def _stack(self) -> list[list[Any]]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        stack: list[list[Any]] = self._local.stack
        return stack


@contextmanager
def instrumented(clock: StageClock) -> Iterator[list[str]]:
    """Wrap what the generate flow calls with `clock`; yields the names wrapped."""
    import flows.fanout as fanout_module
    import flows.generate as flow_module
    import selfplay.generate as stage_module
    from selfplay.engine import RolloutEngine
    from verifiers.equivalence import EquivalenceChecker
    from verifiers.sandbox import SandboxPool
    from warehouse.writer import Warehouse

    targets: list[tuple[Any, str, str]] = [
        (RolloutEngine, "__init__", "engines start/stop"),
        (RolloutEngine, "close", "engines start/stop"),
        (EquivalenceChecker, "__init__", "engines start/stop"),
        (EquivalenceChecker, "close", "engines start/stop"),
        (SandboxPool, "__init__", "engines start/stop"),
        (SandboxPool, "close", "engines start/stop"),
        (flow_module, "propose", "Challenger"),
        (flow_module, "solve", "Solver"),
        (fanout_module, "label", "labelling"),  # called once per label piece
        (EquivalenceChecker, "cluster_batch", "verification"),
        (EquivalenceChecker, "equivalent", "verification"),
        (stage_module, "validate_proposals", "verification"),
        (stage_module, "verify_proposal_answers", "verification"),
        (Warehouse, "write", "warehouse"),
        (Warehouse, "write_all", "warehouse"),
        (Warehouse, "publish_snapshot", "warehouse"),
        (flow_module, "preflight", "preflight"),
    ]
    # Every row builder the flow imported from selfplay.rows, whatever it adds later.
    targets += [
        (flow_module, name, "warehouse")
        for name, value in sorted(vars(flow_module).items())
        if callable(value) and getattr(value, "__module__", "") == "selfplay.rows"
    ]
    saved = []
    for owner, name, category in targets:
        original = (
            owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        )
        if original is None:
            continue  # the flow changed: measure what is still there
        saved.append((owner, name, original))
        setattr(owner, name, clock.wrap(category, original))
    try:
        yield [f"{getattr(o, '__name__', o)}.{n}" for o, n, _ in saved]
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


class CpuMeter:
    """CPU seconds of this process and every descendant, sampled in a background thread.

    A process that exits between samples loses at most one interval of its CPU time.
    """

    def __init__(self, interval_s: float = 0.25) -> None:
        import psutil  # comes with vLLM; only this benchmark needs it

        self._error = psutil.Error
        self._me = psutil.Process()
        self._interval = interval_s
        self._before = self._tree()
        self._latest: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)

    def _tree(self) -> dict[int, float]:
        times: dict[int, float] = {}
        for process in [self._me, *self._me.children(recursive=True)]:
            try:
                cpu = process.cpu_times()
                times[process.pid] = cpu.user + cpu.system
            except self._error:
                continue
        return times

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._latest.update(self._tree())

    def __enter__(self) -> CpuMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._latest.update(self._tree())

    @property
    def seconds(self) -> float:
        return sum(cpu - self._before.get(pid, 0.0) for pid, cpu in self._latest.items())


@dataclass
class EndToEndBench:
    tasks: int
    samples: int
    wall_s: float
    cpu_s: float
    summary: dict[str, Any]
    stages: dict[str, float]  # STAGES -> seconds; orchestration is the rest of wall_s
    preflight_s: float
    stage_runs: list[tuple[str, float, int]] = field(default_factory=list)
    # Per Solver finish reason: (reason, samples, generated tokens, answered, in label cluster).
    solver_finish: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    challenger_tokens: int = 0
    wrapped: list[str] = field(default_factory=list)

    @property
    def frontier(self) -> int:
        return int(self.summary.get("bands", {}).get("frontier", 0))

    @property
    def per_cpu_minute(self) -> float:
        return self.frontier / (self.cpu_s / 60)

    @property
    def per_wall_minute(self) -> float:
        return self.frontier / (self.wall_s / 60)

    def dominant(self) -> str:
        return max(self.stages, key=lambda stage: self.stages[stage])

    def report(self) -> str:
        s = self.summary
        lines = [
            f"generate: {self.tasks} proposals x {self.samples} samples on the embedded model",
            f"proposals {s.get('proposals')}, valid {s.get('valid')}, rejected "
            f"{s.get('rejections') or 'none'}; bands {s.get('bands')}; "
            f"label = Challenger answer for {s.get('agrees_with_reference')}",
            f"wall {self.wall_s:.1f} s, CPU {self.cpu_s:.1f} s "
            f"({self.cpu_s / self.wall_s:.2f} cores busy on average)",
            f"frontier tasks: {self.frontier} = {self.per_cpu_minute:.2f} per CPU-minute, "
            f"{self.per_wall_minute:.2f} per wall-minute",
            "wall time by stage:",
        ]
        lines += [
            f"  {stage:<20} {seconds:7.1f} s  {seconds / self.wall_s:6.1%}"
            for stage, seconds in self.stages.items()
        ]
        before_flow = self.wall_s - float(s.get("wall_seconds", self.wall_s))
        lines.append(
            f"  orchestration: {before_flow:.1f} s before the flow body starts (Prefect's "
            f"ephemeral server, flow-run set-up), preflight {self.preflight_s:.1f} s, the rest "
            "Prefect task runs and work between stages"
        )
        lines.append(
            f"flow's own stage_seconds: {s.get('stage_seconds')}, "
            f"wall_seconds {s.get('wall_seconds')}"
        )
        lines += [
            f"stage_runs: {stage} {seconds:.1f} s, {rows} rows"
            for stage, seconds, rows in self.stage_runs
        ]
        lines.append(self._token_report())
        return "\n".join(lines)

    def _token_report(self) -> str:
        total = sum(tokens for _, _, tokens, _, _ in self.solver_finish)
        samples = sum(n for _, n, _, _, _ in self.solver_finish)
        lines = [
            f"generated tokens: Challenger {self.challenger_tokens:,} "
            f"({self.challenger_tokens / max(self.stages['Challenger'], 1e-9):.0f}/s of its "
            f"stage), Solver {total:,} ({total / max(self.stages['Solver'], 1e-9):.0f}/s)"
        ]
        for reason, n, tokens, answered, in_label in self.solver_finish:
            lines.append(
                f"  Solver finish_reason={reason}: {n} samples ({n / max(samples, 1):.0%}), "
                f"{tokens:,} tokens ({tokens / max(total, 1):.0%}), answered "
                f"{answered / max(n, 1):.0%}, in the label cluster {in_label / max(n, 1):.0%}"
            )
        return "\n".join(lines)


def prefect_environment() -> None:
    # As the CLI does; a home of its own so that other Prefect users of this machine are not
    # touched, kept across runs so that its database is not re-created every time.
    os.environ.setdefault(
        "PREFECT_HOME", str(Path(tempfile.gettempdir()) / "selfplay-bench-prefect")
    )
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here


def measure_end_to_end(
    tasks: int = 16,
    samples: int = 8,
    overrides: dict[str, Any] | None = None,
    step: Step = no_step,
) -> EndToEndBench:
    """One instrumented `generate` flow run into a temporary warehouse."""
    prefect_environment()
    import duckdb

    from flows.generate import generate_flow

    clock = StageClock()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as scratch:
        path = Path(scratch) / "selfplay.duckdb"
        config: dict[str, Any] = {
            "generate": {"tasks": tasks, "samples_per_task": samples},
            "warehouse": {"path": str(path)},
            **(overrides or {}),
        }
        step(f"generate flow: {tasks} proposals x {samples} samples")
        with instrumented(clock) as wrapped, CpuMeter() as cpu:
            started = time.perf_counter()
            summary = generate_flow(config=config, command="python -m bench.end_to_end")
            wall_s = time.perf_counter() - started
        with duckdb.connect(str(path), read_only=True) as conn:
            stage_runs = conn.execute(
                "SELECT stage, epoch(finished_at - started_at), rows_written FROM stage_runs "
                "ORDER BY started_at"
            ).fetchall()
            solver_finish = conn.execute(
                "SELECT coalesce(finish_reason, '?'), count(*), sum(completion_tokens), "
                "count(extracted_answer), count(*) FILTER (WHERE in_label_cluster) "
                "FROM trajectories GROUP BY 1 ORDER BY 1"
            ).fetchall()
            challenger_row = conn.execute("SELECT sum(completion_tokens) FROM tasks").fetchone()
    measured = dict(clock.seconds)
    preflight_s = measured.pop("preflight", 0.0)
    stages = {stage: measured.get(stage, 0.0) for stage in STAGES[:-1]}
    stages["orchestration"] = wall_s - sum(stages.values())
    return EndToEndBench(
        tasks=tasks,
        samples=samples,
        wall_s=wall_s,
        cpu_s=cpu.seconds,
        summary=summary,
        stages=stages,
        preflight_s=preflight_s,
        stage_runs=[(str(a), float(b), int(c)) for a, b, c in stage_runs],
        solver_finish=[
            (str(r), int(n), int(t or 0), int(a), int(i)) for r, n, t, a, i in solver_finish
        ],
        challenger_tokens=int(challenger_row[0] or 0) if challenger_row else 0,
        wrapped=wrapped,
    )


def results(quick: bool = False, step: Step = no_step) -> BenchResult:
    """Table records for `python -m bench` (quick: 2 proposals x 2 samples, short answers)."""
    if quick:
        short = {"sampling": {"solver": {"max_tokens": 32}}}
        bench = measure_end_to_end(tasks=2, samples=2, overrides=short, step=step)
    else:
        bench = measure_end_to_end(step=step)
    run = f"`generate --tasks {bench.tasks}` (m = {bench.samples}, embedded SmolLM2-135M)"
    wall = f"{bench.wall_s:.0f} s (whole run)"
    records = [
        Record(
            f"frontier tasks accepted per CPU-minute, {run}: {bench.frontier} frontier tasks, "
            f"{bench.cpu_s / 60:.1f} CPU-min over {bench.wall_s / 60:.1f} wall-min "
            f"({bench.per_wall_minute:.2f} per wall-minute)",
            f"{bench.per_cpu_minute:.2f} /CPU-min",
        )
    ]
    labelling = bench.stages["verification"] + bench.stages["labelling"]
    records.append(
        Record(
            f"labelling (math-verify clustering + majority vote), share of {run} wall time",
            f"{labelling:.1f} s",
            wall,
            labelling / bench.wall_s,
        )
    )
    records += [
        Record(
            f"stage {stage}, share of {run} wall time",
            f"{seconds:.1f} s",
            wall,
            seconds / bench.wall_s,
        )
        for stage, seconds in bench.stages.items()
    ]
    details = (
        "```\n" + bench.report() + "\n```\n\n"
        f"Dominant stage: **{bench.dominant()}**. Stages come from wrapping the calls the flow "
        "makes (`bench/end_to_end.py`), since `stage_runs` records only propose and "
        "solve-and-label; wrapped: " + ", ".join(f"`{name}`" for name in bench.wrapped) + "."
    )
    return BenchResult(records, details)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=16, help="Challenger proposals")
    parser.add_argument("--samples", type=int, default=8, help="Solver samples per task (m)")
    args = parser.parse_args(argv)
    print(measure_end_to_end(args.tasks, args.samples).report())


if __name__ == "__main__":
    main()
