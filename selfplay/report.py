"""What one run did, iteration by iteration: a table of numbers and PNG plots (`selfplay report`).

`build_report(warehouse_path, run_id)` reads the warehouse through `Warehouse.open_reader`
(the live file, or the running writer's snapshot) with one aggregate query per table, never
one per iteration, and returns a `RunReport`: one `IterationReport` per iteration (tasks
proposed and valid, tasks per difficulty band, pseudo-label checks, Challenger reward mean,
held-out accuracy after the iteration, seconds per stage) and the held-out accuracy per
benchmark. `write_plots(report, out_dir)` draws it with matplotlib's Agg canvas (no display).

Iterations: a `selfplay run` numbers them 1..K and evaluates the base Solver as iteration 0,
so row 0 has held-out accuracy (and evaluation time) but no tasks; a `selfplay generate` run
is a single iteration 0.
Rows are grouped by each table's own `iteration` column: tasks by the iteration that
proposed them, labels and difficulty by the iteration whose Solver measured them (the same
iteration in today's pipeline). A task labelled twice in one iteration counts once, with its
newest label.

Checks of the pseudo-labels, where a check exists:
- `label_agreement`: majority-vote labels (math, mcq) that equal the Challenger's own
  reference answer, among those that could be compared. The reference is the Challenger's
  guess, not ground truth: it is the only check math and mcq tasks have.
- `executor_majority_accuracy`: code kinds, whose label comes from the executor and so is
  ground truth. It asks what a majority vote would have got: among executor-labelled tasks
  with Solver samples, the share whose most common Solver answer (exact string; ties go to
  the smallest) the executor graded correct (`trajectories.verdict`) on every sample that
  gave it. A task whose samples gave no answer counts as wrong. Correctness rather than string
  equality with the label, because code_i and code_f tasks have many correct answers besides
  the Challenger's.

Held-out accuracy: the mean `evaluations.score` per benchmark per iteration; the overall
figure is the mean over benchmarks (each benchmark weighs the same, whatever its size).

Example:
    report = build_report("selfplay.duckdb", "3fa2")  # a unique prefix of the run id will do
    for row in report.iterations:
        print(row.iteration, row.valid, row.bands["frontier"], row.heldout_accuracy)
    write_plots(report, Path("reports") / report.run_id)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warehouse import ReadSource, Warehouse

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BANDS: tuple[str, ...] = ("too_easy", "frontier", "too_hard")
DIFFICULTY_PLOT = "difficulty_by_iteration.png"
HELDOUT_PLOT = "heldout_accuracy.png"
STAGE_TIME_PLOT = "stage_seconds.png"


class ReportError(Exception):
    """The report cannot be built (unknown run, nothing generated yet); one line says why."""


@dataclass(frozen=True)
class IterationReport:
    """One iteration of a run; None (shown as '-') where the warehouse has nothing to say."""

    iteration: int
    proposals: int  # Challenger proposals, rejected ones included
    valid: int  # proposals that parsed (and, for code kinds, ran)
    bands: dict[str, int]  # tasks per difficulty band, every band in BANDS present
    pass_rates: tuple[float, ...]  # p̂ of each task measured in this iteration
    band_low: float | None  # frontier band edges used in this iteration
    band_high: float | None
    label_checked: int  # majority labels comparable with the Challenger's answer
    label_agreement: float | None  # share of them that agree
    executor_checked: int  # executor-labelled (code) tasks with Solver samples
    executor_majority_accuracy: float | None  # share whose majority answer is correct
    challenger_reward_mean: float | None  # None: no Challenger rewards stored
    heldout: dict[str, float]  # benchmark -> mean score after this iteration
    heldout_accuracy: float | None  # mean over benchmarks
    stage_seconds: dict[str, float]  # stage -> seconds, in the order the stages ran
    seconds: float | None  # time in stages, summed: downtime before a resume is left out

    @property
    def has_tasks(self) -> bool:
        return self.proposals > 0


@dataclass(frozen=True)
class RunReport:
    """A run's iterations in order, and its held-out accuracy per benchmark."""

    run_id: str
    command: str
    created_at: datetime
    warehouse: Path
    source: ReadSource  # the live file, or the snapshot read while a writer held it
    iterations: tuple[IterationReport, ...]
    benchmarks: tuple[str, ...]  # in the order they were first evaluated

    def heldout_by_benchmark(self) -> dict[str, dict[int, float]]:
        """benchmark -> iteration -> mean score (iterations without that benchmark left out)."""
        return {
            name: {r.iteration: r.heldout[name] for r in self.iterations if name in r.heldout}
            for name in self.benchmarks
        }


# ---- reading -------------------------------------------------------------------------------

# The newest label (or difficulty) of each task within an iteration.
_LATEST_PER_ITERATION = (
    "QUALIFY row_number() OVER (PARTITION BY task_id, iteration "
    "ORDER BY created_at DESC, solver_checkpoint DESC) = 1"
)

_TASKS_SQL = """
SELECT iteration, count(*) AS proposals, count(*) FILTER (parse_status = 'valid') AS valid
FROM tasks WHERE run_id = $run GROUP BY iteration
"""

_DIFFICULTY_SQL = f"""
SELECT iteration, pass_rate, band, band_low, band_high
FROM difficulty WHERE run_id = $run
{_LATEST_PER_ITERATION}
ORDER BY iteration, task_id
"""

_LABELS_SQL = f"""
SELECT iteration,
       count(agrees_with_reference) AS n_checked,
       avg(agrees_with_reference::INTEGER) AS agreement
FROM (
    SELECT * FROM labels WHERE run_id = $run
    {_LATEST_PER_ITERATION}
)
WHERE label_source = 'majority'
GROUP BY iteration
"""

# Per executor-labelled task: is the Solver's most common answer one the executor passed?
_TRAJECTORIES_SQL = f"""
WITH latest_labels AS (
    SELECT task_id, iteration, solver_checkpoint, label_source FROM labels WHERE run_id = $run
    {_LATEST_PER_ITERATION}
),
answers AS (
    SELECT task_id, checkpoint, extracted_answer, count(*) AS n,
           coalesce(bool_and(verdict = 'correct'), false) AS correct
    FROM trajectories
    WHERE run_id = $run AND role = 'solver' AND task_id IN (
        SELECT task_id FROM latest_labels WHERE label_source = 'executor'
    )
    GROUP BY task_id, checkpoint, extracted_answer
),
majority AS (
    SELECT task_id, checkpoint,
           first(correct AND extracted_answer IS NOT NULL
                 ORDER BY extracted_answer IS NULL, n DESC, extracted_answer) AS correct
    FROM answers GROUP BY task_id, checkpoint
)
SELECT l.iteration, count(*) AS n_checked, avg(m.correct::INTEGER) AS accuracy
FROM latest_labels AS l
JOIN majority AS m ON m.task_id = l.task_id AND m.checkpoint = l.solver_checkpoint
WHERE l.label_source = 'executor'
GROUP BY l.iteration
"""

_REWARDS_SQL = """
SELECT iteration, avg(reward) AS reward_mean
FROM rewards WHERE run_id = $run AND role = 'challenger' GROUP BY iteration
"""

_EVALUATIONS_SQL = """
SELECT iteration, benchmark, avg(score) AS accuracy, min(created_at) AS first_at
FROM evaluations WHERE run_id = $run AND iteration IS NOT NULL
GROUP BY iteration, benchmark
ORDER BY first_at, benchmark
"""

_STAGE_RUNS_SQL = """
SELECT iteration, stage, sum(epoch(finished_at - started_at)) AS seconds
FROM stage_runs WHERE run_id = $run
GROUP BY iteration, stage
ORDER BY iteration, min(started_at), stage
"""


def build_report(warehouse_path: Path | str, run_id: str) -> RunReport:
    """Read everything the report shows about `run_id` (or a unique prefix of it).

    Raises `ReportError` for an unknown or ambiguous run id and for a run that has proposed
    no task yet; `WarehouseError` when the file cannot be read.
    """
    with Warehouse.open_reader(warehouse_path) as warehouse:
        run = _find_run(warehouse, run_id)
        params = {"run": run["run_id"]}
        tasks = _rows(warehouse, _TASKS_SQL, params)
        if not tasks:
            raise ReportError(
                f"run {run['run_id']} has no iterations yet: no Challenger proposal is stored "
                f"in {warehouse_path}; run the report again once its first propose stage is done"
            )
        difficulty = _rows(warehouse, _DIFFICULTY_SQL, params)
        labels = _by_iteration(_rows(warehouse, _LABELS_SQL, params))
        executor = _by_iteration(_rows(warehouse, _TRAJECTORIES_SQL, params))
        rewards = _by_iteration(_rows(warehouse, _REWARDS_SQL, params))
        evaluations = _rows(warehouse, _EVALUATIONS_SQL, params)
        stages = _rows(warehouse, _STAGE_RUNS_SQL, params)
        source = warehouse.source
    heldout: dict[int, dict[str, float]] = {}
    for row in evaluations:
        heldout.setdefault(row["iteration"], {})[row["benchmark"]] = row["accuracy"]
    numbers = sorted(
        {r["iteration"] for r in [*tasks, *difficulty, *evaluations, *stages]}
        | labels.keys()
        | executor.keys()
        | rewards.keys()
    )
    by_task_iteration = _by_iteration(tasks)
    iterations = tuple(
        _iteration_report(
            k,
            by_task_iteration.get(k, {}),
            [r for r in difficulty if r["iteration"] == k],
            labels.get(k, {}),
            executor.get(k, {}),
            rewards.get(k, {}).get("reward_mean"),
            heldout.get(k, {}),
            [r for r in stages if r["iteration"] == k],
        )
        for k in numbers
    )
    return RunReport(
        run_id=run["run_id"],
        command=run["command"],
        created_at=run["created_at"],
        warehouse=Path(warehouse_path),
        source=source,
        iterations=iterations,
        benchmarks=tuple(dict.fromkeys(r["benchmark"] for r in evaluations)),
    )


def _find_run(warehouse: Warehouse, run_id: str) -> dict[str, Any]:
    if not run_id:
        raise ReportError("the run id is empty; list runs with: selfplay sql 'FROM runs'")
    matches = _rows(
        warehouse,
        "SELECT run_id, command, created_at FROM runs WHERE starts_with(run_id, $prefix) "
        "ORDER BY run_id = $prefix DESC, created_at LIMIT 6",
        {"prefix": run_id},
    )
    if not matches:
        raise ReportError(
            f"no run {run_id!r} in {warehouse.source.warehouse}; list the runs with: "
            "selfplay sql 'SELECT run_id, created_at, command FROM runs ORDER BY created_at'"
        )
    if matches[0]["run_id"] != run_id and len(matches) > 1:
        shown = ", ".join(m["run_id"] for m in matches[:5])
        raise ReportError(
            f"run id prefix {run_id!r} matches several runs ({shown}"
            f"{', ...' if len(matches) > 5 else ''}); give more of the id"
        )
    return matches[0]


def _rows(warehouse: Warehouse, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return warehouse.query(sql, params).to_pylist()


def _by_iteration(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {row["iteration"]: row for row in rows}


def _iteration_report(
    iteration: int,
    tasks: Mapping[str, Any],
    difficulty: Sequence[Mapping[str, Any]],
    labels: Mapping[str, Any],
    executor: Mapping[str, Any],
    challenger_reward_mean: float | None,
    heldout: dict[str, float],
    stages: Sequence[Mapping[str, Any]],
) -> IterationReport:
    bands = dict.fromkeys(BANDS, 0)
    for row in difficulty:
        bands[row["band"]] = bands.get(row["band"], 0) + 1
    # Edges of the band most tasks were graded with (the config can change between resumes).
    edges = [(r["band_low"], r["band_high"]) for r in difficulty]
    band_low, band_high = max(set(edges), key=edges.count) if edges else (None, None)
    return IterationReport(
        iteration=iteration,
        proposals=int(tasks.get("proposals", 0)),
        valid=int(tasks.get("valid", 0)),
        bands=bands,
        pass_rates=tuple(r["pass_rate"] for r in difficulty),
        band_low=band_low,
        band_high=band_high,
        label_checked=int(labels.get("n_checked", 0)),
        label_agreement=labels.get("agreement"),
        executor_checked=int(executor.get("n_checked", 0)),
        executor_majority_accuracy=executor.get("accuracy"),
        challenger_reward_mean=challenger_reward_mean,
        heldout=heldout,
        heldout_accuracy=sum(heldout.values()) / len(heldout) if heldout else None,
        stage_seconds={s["stage"]: float(s["seconds"]) for s in stages},
        seconds=sum(float(s["seconds"]) for s in stages) if stages else None,
    )


# ---- plots ---------------------------------------------------------------------------------


def write_plots(report: RunReport, out_dir: Path | str) -> list[Path]:
    """Write the report's PNG plots into `out_dir` (created); return the paths written.

    `difficulty_by_iteration.png`: a p̂ histogram per iteration, frontier band shaded;
    `heldout_accuracy.png`: accuracy per benchmark and overall by iteration (0 = base model);
    `stage_seconds.png`: seconds per stage, stacked, per iteration. A plot with nothing to
    show (no difficulty, no evaluation, no stage rows yet) is not written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (
        (DIFFICULTY_PLOT, _difficulty_figure),
        (HELDOUT_PLOT, _heldout_figure),
        (STAGE_TIME_PLOT, _stage_time_figure),
    ):
        figure = draw(report)
        if figure is not None:
            path = out / name
            figure.savefig(path, dpi=100)
            written.append(path)
    return written


def _difficulty_figure(report: RunReport) -> Figure | None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    measured = [r for r in report.iterations if r.pass_rates]
    if not measured:
        return None
    columns = min(4, len(measured))
    rows = math.ceil(len(measured) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True)
    edges = [i / 20 for i in range(21)]  # bins of 0.05: p̂ = k/m falls in its own bin for m <= 20
    for ax, row in zip(axes.flat, measured, strict=False):
        if row.band_low is not None and row.band_high is not None:
            ax.axvspan(row.band_low, row.band_high, color="tab:green", alpha=0.12)
            for edge in (row.band_low, row.band_high):
                ax.axvline(edge, color="tab:green", linestyle="--", linewidth=1)
        ax.hist(row.pass_rates, bins=edges, color="tab:blue", edgecolor="white")
        ax.set_title(
            f"iteration {row.iteration}: {len(row.pass_rates)} tasks, "
            f"{row.bands['frontier']} frontier",
            fontsize=9,
        )
        ax.set_xlim(0, 1)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("pass rate p̂")
        ax.set_ylabel("tasks")
    for ax in list(axes.flat)[len(measured) :]:
        ax.set_visible(False)
    figure.suptitle(f"Difficulty per iteration, run {report.run_id} (shaded: frontier band)")
    return figure


def _heldout_figure(report: RunReport) -> Figure | None:
    from matplotlib.figure import Figure

    overall = {
        r.iteration: r.heldout_accuracy for r in report.iterations if r.heldout_accuracy is not None
    }
    if not overall:
        return None
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    ax = figure.subplots()
    for name, scores in report.heldout_by_benchmark().items():
        ax.plot(list(scores), list(scores.values()), marker="o", label=name)
    ax.plot(
        list(overall),
        list(overall.values()),
        color="black",
        linestyle="--",
        linewidth=2,
        marker="s",
        label="mean over benchmarks",
    )
    ticks = list(overall)
    ax.set_xticks(ticks, [("0\nbase" if k == 0 else str(k)) for k in ticks])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("after iteration")
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Held-out accuracy, run {report.run_id}")
    return figure


def _stage_time_figure(report: RunReport) -> Figure | None:
    from matplotlib.figure import Figure

    timed = [r for r in report.iterations if r.stage_seconds]
    if not timed:
        return None
    stages = list(dict.fromkeys(s for r in timed for s in r.stage_seconds))
    figure = Figure(figsize=(max(5.0, 0.6 * len(timed) + 3), 4), layout="constrained")
    ax = figure.subplots()
    positions = [r.iteration for r in timed]
    bottoms = [0.0] * len(timed)
    for stage in stages:
        seconds = [r.stage_seconds.get(stage, 0.0) for r in timed]
        ax.bar(positions, seconds, bottom=bottoms, label=stage)
        bottoms = [b + s for b, s in zip(bottoms, seconds, strict=True)]
    ax.set_xticks(positions)
    ax.set_xlabel("iteration")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8)
    ax.set_title(f"Time per stage, run {report.run_id}")
    return figure
