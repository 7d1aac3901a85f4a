"""Benchmark: warehouse ingest against row-by-row INSERT and a raw DuckDB Arrow insert,
plus snapshot publishing and a 1M-row curriculum export.

Ingest: the same N Solver trajectories (default 1,000,000) go into a fresh
warehouse file three ways, in one run:

- our writer: `Warehouse.write("trajectories", table)`, one Arrow batch, with
  its column checks, `created_at` fill and insert-only-new semantics;
- a raw DuckDB Arrow insert: `INSERT INTO trajectories SELECT * FROM table`
  on a fresh file with the same schema (no checks, no idempotence);
- row-by-row `INSERT ... VALUES (?, ...)`, once in autocommit (what a naive
  writer does) and once inside one transaction. One by one, a million rows
  would take many minutes, so these run on a slice (default 20,000 rows) and
  every comparison is in rows per second.

Writer and raw insert take turns, best of `--repeats`, so load from other
work on the machine hits both alike. Targets: >= 100x row-by-row, >= 0.8x raw.

Then: the time to publish a read snapshot of that warehouse, and the time to
export a curriculum of `--export-rows` tasks (default 1,000,000, each with one
trajectory, 1% exact and 1% near duplicates, 1,000 evaluation texts of which
100 quote a task).

    python -m bench.warehouse
    python -m bench.warehouse --rows 200000 --slice 5000 --export-rows 100000

`measure_warehouse(...)` returns the same figures as a `WarehouseBench`; `results(quick)` as
table records for `python -m bench`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench.report import BenchResult, Record, Step, no_step
from warehouse import Warehouse, migrate, utc_now
from warehouse.export import ExportFilters, ExportOptions, export_curriculum

TARGET_ROW_BY_ROW, TARGET_RAW = 100.0, 0.8
_NOW = pa.scalar(utc_now(), pa.timestamp("us"))


@dataclass(frozen=True)
class WarehouseBench:
    """Measured figures: rows and seconds per method, and what they imply."""

    rows: int
    slice_rows: int
    writer_s: float
    raw_s: float
    row_autocommit_s: float
    row_transaction_s: float
    snapshot_s: float
    snapshot_mb: float
    export_rows: int
    export_s: float
    export_counts: dict[str, int]
    export_steps: dict[str, float]

    def rate(self, seconds: float, rows: int) -> float:
        return rows / seconds

    @property
    def vs_raw(self) -> float:
        return self.rate(self.writer_s, self.rows) / self.rate(self.raw_s, self.rows)

    @property
    def vs_row_autocommit(self) -> float:
        return self.rate(self.writer_s, self.rows) / self.rate(
            self.row_autocommit_s, self.slice_rows
        )

    @property
    def vs_row_transaction(self) -> float:
        return self.rate(self.writer_s, self.rows) / self.rate(
            self.row_transaction_s, self.slice_rows
        )


def trajectories(rows: int, tasks_per: int = 8) -> pa.Table:
    """`rows` Solver trajectories with the warehouse's column types, built column-wise."""
    index = np.arange(rows)
    pool = 1000  # distinct prompts/completions, cycled: realistic widths, cheap to build
    prompts = pa.array(
        [f'[{{"role": "user", "content": "What is {i} + {i % 7}?"}}]' for i in range(pool)]
    )
    completions = pa.array(
        [
            f"Let me think step by step. {i} plus {i % 7} is \\boxed{{{i + i % 7}}}."
            for i in range(pool)
        ]
    )
    cycle = pa.array(index % pool)
    return pa.table(
        {
            "trajectory_id": pa.array([f"{i:032x}" for i in range(rows)]),
            "task_id": pa.array([f"t{i:031x}" for i in index // tasks_per]),
            "run_id": pa.repeat(pa.scalar("bench-run"), rows),
            "iteration": pa.array((index // 100_000).astype(np.int32)),
            "role": pa.repeat(pa.scalar("solver"), rows),
            "sample_index": pa.array((index % tasks_per).astype(np.int32)),
            "model": pa.repeat(pa.scalar("SmolLM2-135M-Instruct"), rows),
            "checkpoint": pa.repeat(pa.scalar("base"), rows),
            "sampling_json": pa.repeat(pa.scalar('{"temperature": 0.8, "max_tokens": 256}'), rows),
            "prompt_json": prompts.take(cycle),
            "completion": completions.take(cycle),
            "extracted_answer": pc.cast(pa.array(index % 97), pa.string()),
            "in_label_cluster": pa.array(index % 3 == 0),
            "verdict": pa.array(np.where(index % 3 == 0, "correct", "incorrect")),
            "reward": pa.array((index % 3 == 0).astype(np.float64)),
            "prompt_tokens": pa.array(np.full(rows, 42, np.int32)),
            "completion_tokens": pa.array((index % 200 + 10).astype(np.int32)),
            "finish_reason": pa.repeat(pa.scalar("stop"), rows),
            "latency_s": pa.array(np.full(rows, 0.05)),
            "created_at": pa.repeat(_NOW, rows),
        }
    )


def _fresh(directory: Path, name: str) -> Path:
    path = directory / f"{name}.duckdb"
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    return path


def time_writer(directory: Path, table: pa.Table) -> float:
    with Warehouse.open(_fresh(directory, "writer")) as warehouse:
        started = time.perf_counter()
        inserted = warehouse.write("trajectories", table)
        elapsed = time.perf_counter() - started
    assert inserted == table.num_rows, f"writer inserted {inserted} of {table.num_rows}"
    return elapsed


def time_raw(directory: Path, table: pa.Table) -> float:
    conn = duckdb.connect(str(_fresh(directory, "raw")))
    try:
        migrate(conn)
        conn.execute("CHECKPOINT")  # as the writer's file: schema on disk, empty WAL
        conn.register("incoming", table)
        started = time.perf_counter()
        conn.execute("INSERT INTO trajectories SELECT * FROM incoming")
        return time.perf_counter() - started
    finally:
        conn.close()


def time_row_by_row(directory: Path, table: pa.Table, *, one_transaction: bool) -> float:
    conn = duckdb.connect(str(_fresh(directory, f"rows-{one_transaction}")))
    try:
        migrate(conn)
        conn.execute("CHECKPOINT")
        statement = f"INSERT INTO trajectories VALUES ({', '.join('?' * table.num_columns)})"
        rows = [list(row.values()) for row in table.to_pylist()]
        started = time.perf_counter()
        if one_transaction:
            conn.execute("BEGIN TRANSACTION")
        for row in rows:
            conn.execute(statement, row)
        if one_transaction:
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def time_snapshot(directory: Path) -> tuple[float, float]:
    """Seconds to publish a snapshot of the writer benchmark's warehouse, and its size (MB)."""
    path = directory / "writer.duckdb"
    with Warehouse.open(path, snapshots=False) as warehouse:
        started = time.perf_counter()
        published = warehouse.publish_snapshot()
        elapsed = time.perf_counter() - started
        size = published.stat().st_size / 1e6
    return elapsed, size


def curriculum_tables(tasks: int, seed: int = 0) -> dict[str, pa.Table]:
    """Tasks with one trajectory, a label and a difficulty row each; 1% exact, 1% near copies."""
    rng = np.random.default_rng(seed)
    vocabulary = pa.array([f"w{i}" for i in range(20_000)] + [str(i) for i in range(1000)])
    lengths = rng.integers(12, 30, tasks)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    words = vocabulary.take(pa.array(rng.integers(0, len(vocabulary), int(offsets[-1]))))
    questions = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), words), " ")
    copies = np.arange(0, tasks - 1, 100)  # every 100th task is followed by a copy
    near = copies[1::2]  # half the copies get one extra word: near, not exact
    questions = pc.if_else(
        _mask(tasks, copies + 1),
        questions.take(pa.array(np.maximum(np.arange(tasks) - 1, 0))),
        questions,
    )
    questions = pc.if_else(
        _mask(tasks, near + 1),
        pc.binary_join_element_wise(questions, pa.repeat(pa.scalar("again"), tasks), " "),
        questions,
    )
    ids = pa.array([f"t{i:031x}" for i in range(tasks)])
    pass_rate = pa.array(rng.integers(0, 9, tasks) / 8)
    band = pc.if_else(
        pc.greater(pass_rate, 0.8),
        "too_easy",
        pc.if_else(pc.less(pass_rate, 0.3), "too_hard", "frontier"),
    )
    common = {
        "task_id": ids,
        "run_id": pa.repeat(pa.scalar("bench-run"), tasks),
        "iteration": pa.array((np.arange(tasks) // 100_000).astype(np.int32)),
        "created_at": pa.repeat(_NOW, tasks),
    }
    answers = pc.cast(pa.array(rng.integers(0, 1000, tasks)), pa.string())
    return {
        "tasks": _tasks(common, questions, answers, tasks),
        "trajectories": _curriculum_trajectories(common, questions, answers, tasks),
        "labels": pa.table(
            common
            | {
                "label_id": ids,
                "solver_checkpoint": pa.repeat(pa.scalar("base"), tasks),
                "label_source": pa.repeat(pa.scalar("majority"), tasks),
                "label": answers,
                "majority_share": pass_rate,
                "n_samples": _ints(8, tasks),
                "n_answered": _ints(8, tasks),
                "n_clusters": _ints(3, tasks),
                "cluster_sizes_json": pa.repeat(pa.scalar("[4, 3, 1]"), tasks),
                "equivalence_timeouts": _ints(0, tasks),
                "reference_answer": answers,
                "agrees_with_reference": pa.repeat(pa.scalar(True), tasks),
            }
        ),
        "difficulty": pa.table(
            common
            | {
                "difficulty_id": ids,
                "solver_checkpoint": pa.repeat(pa.scalar("base"), tasks),
                "pass_rate": pass_rate,
                "band": band,
                "band_low": pa.repeat(pa.scalar(0.3), tasks),
                "band_high": pa.repeat(pa.scalar(0.8), tasks),
                "n_samples": _ints(8, tasks),
            }
        ),
    }


def _tasks(common: dict, questions: pa.Array, answers: pa.Array, tasks: int) -> pa.Table:
    return pa.table(
        common
        | {
            "slot": pa.array(np.arange(tasks, dtype=np.int32)),
            "kind": pa.repeat(pa.scalar("math"), tasks),
            "grounded": pa.repeat(pa.scalar(False), tasks),
            "challenger_model": pa.repeat(pa.scalar("SmolLM2-135M-Instruct"), tasks),
            "prompt_json": pa.repeat(pa.scalar('[{"role": "user", "content": "Propose."}]'), tasks),
            "raw_completion": questions,
            "parse_status": pa.repeat(pa.scalar("valid"), tasks),
            "question": questions,
            "reference_answer": answers,
            "sampling_json": pa.repeat(pa.scalar('{"temperature": 0.8}'), tasks),
            "completion_tokens": _ints(40, tasks),
            "latency_s": pa.repeat(pa.scalar(0.1), tasks),
        }
    )


def _curriculum_trajectories(
    common: dict, questions: pa.Array, answers: pa.Array, tasks: int
) -> pa.Table:
    prompts = pc.binary_join_element_wise(
        pa.repeat(pa.scalar('[{"role": "user", "content": "'), tasks),
        questions,
        pa.repeat(pa.scalar('"}]'), tasks),
        "",
    )
    return pa.table(
        common
        | {
            "trajectory_id": common["task_id"],
            "role": pa.repeat(pa.scalar("solver"), tasks),
            "sample_index": _ints(0, tasks),
            "model": pa.repeat(pa.scalar("solver"), tasks),
            "checkpoint": pa.repeat(pa.scalar("base"), tasks),
            "sampling_json": pa.repeat(pa.scalar("{}"), tasks),
            "prompt_json": prompts,
            "completion": answers,
            "extracted_answer": answers,
            "prompt_tokens": _ints(30, tasks),
            "completion_tokens": _ints(10, tasks),
            "finish_reason": pa.repeat(pa.scalar("stop"), tasks),
            "latency_s": pa.repeat(pa.scalar(0.1), tasks),
        }
    )


def _ints(value: int, count: int) -> pa.Array:
    return pa.array(np.full(count, value, dtype=np.int32))


def _mask(count: int, positions: np.ndarray) -> pa.Array:
    mask = np.zeros(count, dtype=bool)
    mask[positions[positions < count]] = True
    return pa.array(mask)


def time_export(directory: Path, tasks: int) -> tuple[float, dict[str, int], dict[str, float]]:
    path = _fresh(directory, "curriculum")
    tables = curriculum_tables(tasks)
    with Warehouse.open(path, snapshots=False) as warehouse:
        for table, rows in tables.items():
            warehouse.write(table, rows)
    # 1,000 evaluation texts, 100 of which quote a task: the decontamination finds work.
    quoted = tables["tasks"]["question"].take(pa.array(np.arange(50, tasks, max(tasks // 100, 1))))
    evaluations = [
        f"Evaluation item {i}: what is {i} plus {i + 1}, shown step by step?"
        for i in range(1000 - len(quoted))
    ]
    evaluations += [f"Benchmark question: {text} Answer:" for text in quoted.to_pylist()]
    started = time.perf_counter()
    result = export_curriculum(
        path,
        directory / "export",
        ExportFilters(bands=()),
        ExportOptions(overwrite=True),
        evaluation_texts=evaluations,
    )
    return time.perf_counter() - started, result.counts, result.seconds


def measure_warehouse(
    rows: int = 1_000_000,
    slice_rows: int = 20_000,
    export_rows: int = 1_000_000,
    repeats: int = 2,
    step: Step = no_step,
) -> WarehouseBench:
    """Run every measurement once (writer and raw `repeats` times, taking the best)."""
    import datasets

    datasets.disable_progress_bars()
    step(f"building {rows:,} trajectory rows")
    table = trajectories(rows)
    with tempfile.TemporaryDirectory(prefix="bench-warehouse-") as scratch:
        directory = Path(scratch)
        writer_s, raw_s = [], []
        for _ in range(repeats):  # alternate, so background load hits both alike
            step("ingest: our writer, then a raw Arrow insert")
            writer_s.append(time_writer(directory, table))
            raw_s.append(time_raw(directory, table))
        part = table.slice(0, slice_rows)
        step(f"row-by-row INSERT of {slice_rows:,} rows")
        autocommit = time_row_by_row(directory, part, one_transaction=False)
        transaction = time_row_by_row(directory, part, one_transaction=True)
        step("snapshot publish")
        snapshot_s, snapshot_mb = time_snapshot(directory)
        step(f"curriculum export of {export_rows:,} tasks")
        export_s, counts, steps = time_export(directory, export_rows)
    return WarehouseBench(
        rows,
        slice_rows,
        min(writer_s),
        min(raw_s),
        autocommit,
        transaction,
        snapshot_s,
        snapshot_mb,
        export_rows,
        export_s,
        counts,
        steps,
    )


def report(bench: WarehouseBench) -> str:
    def line(label: str, rows: int, seconds: float) -> str:
        return f"  {label:<52} {rows:>10,} rows {seconds:8.2f} s {rows / seconds:>12,.0f} rows/s"

    def verdict(ratio: float, target: float) -> str:
        return "meets" if ratio >= target else "MISSES"

    return "\n".join(
        [
            f"warehouse ingest: {bench.rows:,} trajectory rows into a fresh DuckDB file",
            line("our writer (Warehouse.write, one Arrow batch)", bench.rows, bench.writer_s),
            line("raw DuckDB Arrow INSERT, same schema", bench.rows, bench.raw_s),
            line("row-by-row INSERT, autocommit (slice)", bench.slice_rows, bench.row_autocommit_s),
            line(
                "row-by-row INSERT, one transaction (slice)",
                bench.slice_rows,
                bench.row_transaction_s,
            ),
            f"  row-by-row ran on a {bench.slice_rows:,}-row slice (a million one by one would "
            f"take ~{bench.rows / bench.slice_rows * bench.row_autocommit_s / 60:.0f} min); "
            "ratios compare rows per second",
            "ratios (rows/s):",
            f"  writer / row-by-row autocommit   {bench.vs_row_autocommit:8.0f}x   target >= "
            f"{TARGET_ROW_BY_ROW:.0f}x: {verdict(bench.vs_row_autocommit, TARGET_ROW_BY_ROW)}",
            f"  writer / row-by-row transaction  {bench.vs_row_transaction:8.0f}x",
            f"  writer / raw Arrow insert        {bench.vs_raw:8.2f}x   target >= {TARGET_RAW}x: "
            f"{verdict(bench.vs_raw, TARGET_RAW)}",
            f"snapshot publish of that warehouse ({bench.snapshot_mb:.0f} MB): "
            f"{bench.snapshot_s:.2f} s",
            f"curriculum export of {bench.export_rows:,} tasks: {bench.export_s:.1f} s "
            f"({', '.join(f'{k} {v:,}' for k, v in bench.export_counts.items())})",
            "  steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in bench.export_steps.items()),
        ]
    )


def results(quick: bool = False, step: Step = no_step) -> BenchResult:
    """Table records for `python -m bench` (quick: 20,000 rows, 1,000 one by one, 5,000
    exported)."""
    rows, slice_rows, export_rows = (
        (20_000, 1_000, 5_000) if quick else (1_000_000, 20_000, 1_000_000)
    )
    bench = measure_warehouse(rows, slice_rows, export_rows, step=step)
    ours = f"{bench.rows / bench.writer_s:,.0f} rows/s"
    what = f"warehouse ingest, {bench.rows:,} trajectories in one `Warehouse.write`"
    sliced = f" ({bench.slice_rows:,}-row slice)"
    records = [
        Record(
            f"{what} vs raw DuckDB Arrow `INSERT` (no checks, no idempotence)",
            ours,
            f"{bench.rows / bench.raw_s:,.0f} rows/s",
            bench.vs_raw,
        ),
        Record(
            f"{what} vs row-by-row `INSERT`, autocommit{sliced}",
            ours,
            f"{bench.slice_rows / bench.row_autocommit_s:,.0f} rows/s",
            bench.vs_row_autocommit,
        ),
        Record(
            f"{what} vs row-by-row `INSERT` in one transaction{sliced}",
            ours,
            f"{bench.slice_rows / bench.row_transaction_s:,.0f} rows/s",
            bench.vs_row_transaction,
        ),
        Record(
            f"curriculum export of {bench.export_rows:,} tasks (dedup, decontamination, "
            "`save_to_disk`, Parquet, card)",
            f"{bench.export_s:.1f} s",
        ),
    ]
    return BenchResult(records, "```\n" + report(bench) + "\n```")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="trajectory rows to ingest")
    parser.add_argument("--slice", type=int, default=20_000, help="rows for row-by-row INSERT")
    parser.add_argument("--export-rows", type=int, default=1_000_000, help="curriculum tasks")
    parser.add_argument("--repeats", type=int, default=2, help="best of N for writer and raw")
    args = parser.parse_args(argv)
    print(report(measure_warehouse(args.rows, args.slice, args.export_rows, args.repeats)))


if __name__ == "__main__":
    main()
