"""The `run` Prefect flow: K self-play iterations that train both roles, resumable.

A parent flow evaluates the starting model (iteration 0), then runs one child flow per
iteration: propose -> solve_and_label (the `generate` flow's stages) -> train_solver ->
train_challenger -> evaluate. Each stage commits its rows with its `stage_runs` row in one
transaction, so after a crash `selfplay run --resume RUN_ID` skips exactly the committed
stages and redoes the one that was cut off: nothing lost, nothing written twice. The engines
start once per process from the newest registered checkpoints and then reload new weights
in place after every optimiser step (`selfplay.training`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from corpora import Document
from flows.artifacts import Progress, publish_iteration
from flows.fanout import load_documents_fanned_out, score_fanned_out
from flows.generate import (
    _Stages,
    label_stage,
    preflight,
    propose_stage,
    solve_stage,
    start_engines,
)
from flows.warehouse_slot import warehouse_slot
from selfplay import __version__
from selfplay.config import Config, ConfigError
from selfplay.engine import RolloutEngine
from selfplay.evaluation import (
    EvalItem,
    eval_sampling,
    evaluation_rows,
    heldout_completions,
    humaneval_limits,
    load_heldout,
    overlap_with_training,
    summarise,
)
from selfplay.loop import (
    BASELINE,
    SolverJudgedReward,
    challenger_prompts,
    checkpoint_dir,
    completed_stages,
    current_weights,
    restore_tasks,
    solver_examples,
    trained_task_texts,
)
from selfplay.rows import overlap_check_row, run_row, training_rows
from selfplay.training import default_solver_reward, train_challenger, train_solver
from verifiers.sandbox import SandboxPool
from warehouse.keys import content_key
from warehouse.writer import Warehouse


@dataclass
class IterationSummary:
    iteration: int
    proposals: int = 0
    valid: int = 0
    bands: dict[str, int] = field(default_factory=dict)
    solver_steps: int = 0
    challenger_steps: int = 0
    heldout: dict[str, float] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    resumed: bool = False  # some of its stages had committed before this process started


@dataclass
class RunSummary:
    run_id: str
    warehouse: str
    run_dir: str
    baseline: dict[str, float] = field(default_factory=dict)
    iterations: list[IterationSummary] = field(default_factory=list)
    skipped_stages: int = 0
    wall_seconds: float = 0.0


class _Run(_Stages):
    """The generate stages' handles, plus what training and evaluation need."""

    def __init__(
        self, config: Config, warehouse: Warehouse, run_id: str, documents: list[Document]
    ) -> None:
        shared = config.training.weights == "shared"
        weights = current_weights(warehouse, run_id, shared)
        super().__init__(
            config, warehouse, run_id, weights.get("challenger"), weights.get("solver")
        )
        self.documents = documents  # an attribute, not a flow parameter: Prefect stores those
        self.run_dir = config.run.checkpoint_dir / run_id
        self.done = completed_stages(warehouse, run_id)
        self.skipped = 0
        self.heldout: list[EvalItem] | None = None
        self.eval_pool: SandboxPool | None = None
        self.progress: Progress | None = None  # made inside the flow run, which it belongs to
        self.stages_done = 0

    def stage_done(self) -> None:
        """Move the run's progress artifact on: the baseline evaluation, then 5 per iteration."""
        self.stages_done += 1
        self._show_progress(self.stages_done)

    def training_progress(self, done: int, total: int) -> None:
        """Within a training stage: move the progress artifact on after every optimiser step."""
        self._show_progress(self.stages_done + done / max(total, 1))

    def _show_progress(self, stages_done: float) -> None:
        if self.progress is None:
            self.progress = Progress(f"run {self.run_id}: stages done (5 per iteration)")
        self.progress.set(stages_done / (1 + STAGES_PER_ITERATION * self.config.run.iterations))

    def start_engines(self) -> None:
        super().start_engines()
        if self.config.training.weights == "separate" and self._solver is self._challenger:
            # Separate weights drift apart even from one start: each role needs its own engine.
            settings, seed = self.config.engine, self.config.run.seed
            self._solver = RolloutEngine(self.solver_model, settings, seed)

    def pending(self, iteration: int, stage: str) -> bool:
        if (iteration, stage) in self.done:
            self.skipped += 1
            return False
        return True

    def close(self) -> None:
        super().close()
        if self.eval_pool is not None:
            self.eval_pool.close()


STAGES_PER_ITERATION = 5  # propose, solve_and_label, train_solver, train_challenger, evaluate


def _prompts_per_step(run: _Run) -> int:
    return run.config.training.batch_size // run.config.training.num_generations


@task(name="train-solver", cache_policy=NONE)
def train_solver_stage(run: _Run, iteration: int) -> int:
    started = time.time()
    examples = solver_examples(run.warehouse, run.run_id, iteration, _prompts_per_step(run))
    parent = run.solver.model
    assert run.checker is not None, "start-engines opens the checker"
    result = train_solver(
        parent,
        examples,
        default_solver_reward(run.checker, run.config.rewards, run.pool),
        run.config,
        checkpoint_dir(run.run_dir, iteration) / "solver",
        engine=run.solver,
        on_step=run.training_progress,
    )
    run.commit(
        iteration, "train_solver", started, training_rows(run.run_id, iteration, result, parent)
    )
    get_run_logger().info(
        "Solver: %d frontier tasks, %d GRPO steps -> %s",
        len(examples),
        len(result.steps),
        result.checkpoint_dir,
    )
    return len(result.steps)


@task(name="train-challenger", cache_policy=NONE)
def train_challenger_stage(run: _Run, iteration: int) -> int:
    started = time.time()
    prompts = challenger_prompts(run.warehouse, run.run_id, iteration, _prompts_per_step(run))
    parent = run.challenger.model
    assert run.checker is not None, "start-engines opens the checker"
    reward = SolverJudgedReward(run.solver, run.checker, run.config, run.pool)
    result = train_challenger(
        parent,
        prompts,
        reward,
        run.config,
        checkpoint_dir(run.run_dir, iteration) / "challenger",
        engine=run.challenger,
        on_step=run.training_progress,
    )
    rows = training_rows(run.run_id, iteration, result, parent)
    run.commit(iteration, "train_challenger", started, rows)
    get_run_logger().info(
        "Challenger: %d prompts, %d GRPO steps -> %s",
        len(prompts),
        len(result.steps),
        result.checkpoint_dir,
    )
    return len(result.steps)


@task(name="evaluate", cache_policy=NONE)
def evaluate_stage(run: _Run, iteration: int) -> dict[str, float]:
    """Held-out accuracy of the Solver's current weights, and the overlap check beside it."""
    started = time.time()
    config = run.config
    if run.heldout is None:
        run.heldout = load_heldout(config.evaluation)
        run.eval_pool = SandboxPool(workers=config.executor.workers, limits=humaneval_limits())
    assert run.eval_pool is not None
    engine = run.solver
    # One engine call here; the scoring and HumanEval runs fan out (flows.fanout).
    completions = heldout_completions(engine, run.heldout, eval_sampling(config.evaluation))
    results = score_fanned_out(config, run.heldout, completions, run.eval_pool)
    overlap = overlap_with_training(
        trained_task_texts(run.warehouse, run.run_id, iteration), run.heldout
    )
    tables = {
        "evaluations": evaluation_rows(results, run.run_id, iteration, engine.model),
        "overlap_checks": [overlap_check_row(run.run_id, iteration, overlap, len(run.heldout))],
    }
    run.commit(iteration, "evaluate", started, tables)
    scores = summarise(results)
    logger = get_run_logger()
    logger.info("held-out after iteration %d: %s", iteration, _percent(scores))
    if not overlap.clean:
        logger.warning(
            "%d evaluation items overlap training tasks: %s",
            len(overlap.overlapping_item_ids),
            overlap.overlapping_item_ids[:5],
        )
    return scores


@flow(name="iteration", flow_run_name="iteration-{iteration}", validate_parameters=False)
def iteration_flow(run: _Run, iteration: int) -> IterationSummary:
    """One self-play iteration; stages that committed in an earlier process are skipped."""
    skipped = run.skipped
    tasks = None
    if run.pending(iteration, "propose"):
        tasks = run.staged(propose_stage)(run, run.documents, iteration)
    run.stage_done()
    if run.pending(iteration, "solve_and_label"):
        tasks = tasks if tasks is not None else restore_tasks(run.warehouse, run.run_id, iteration)
        solve_started = time.time()
        samples = run.staged(solve_stage)(run, tasks)
        run.staged(label_stage, retry=True)(run, tasks, samples, iteration, solve_started)
    run.stage_done()
    if run.pending(iteration, "train_solver"):
        run.staged(train_solver_stage)(run, iteration)
    run.stage_done()
    if run.pending(iteration, "train_challenger"):
        run.staged(train_challenger_stage)(run, iteration)
    run.stage_done()
    if run.pending(iteration, "evaluate"):
        run.staged(evaluate_stage, retry=True)(run, iteration)
    run.stage_done()
    title = f"run {run.run_id} iteration {iteration}"
    publish_iteration(run.warehouse, run.run_id, iteration, title)
    return _iteration_summary(run, iteration, resumed=run.skipped > skipped)


def _iteration_summary(run: _Run, iteration: int, resumed: bool) -> IterationSummary:
    """The iteration as its committed rows tell it, stages of earlier processes included."""
    params = [run.run_id, iteration]
    query = run.warehouse.query
    tasks = query(
        "SELECT parse_status FROM tasks WHERE run_id = ? AND iteration = ?", params
    ).column("parse_status")
    bands = query("SELECT band FROM difficulty WHERE run_id = ? AND iteration = ?", params)
    steps = query(
        "SELECT role, count(*) AS n FROM training_steps WHERE run_id = ? AND iteration = ? "
        "GROUP BY role",
        params,
    ).to_pylist()
    stages = query(
        "SELECT stage, epoch(finished_at - started_at) AS seconds FROM stage_runs "
        "WHERE run_id = ? AND iteration = ?",
        params,
    ).to_pylist()
    steps_of = {row["role"]: row["n"] for row in steps}
    return IterationSummary(
        iteration=iteration,
        proposals=len(tasks),
        valid=tasks.to_pylist().count("valid"),
        bands=dict(Counter(bands.column("band").to_pylist())),
        solver_steps=steps_of.get("solver", 0),
        challenger_steps=steps_of.get("challenger", 0),
        heldout=_heldout(run, iteration),
        stage_seconds={row["stage"]: round(row["seconds"], 1) for row in stages},
        resumed=resumed,
    )


def _heldout(run: _Run, iteration: int) -> dict[str, float]:
    table = run.warehouse.query(
        "SELECT benchmark, avg(score) AS score FROM evaluations "
        "WHERE run_id = ? AND iteration = ? GROUP BY benchmark ORDER BY benchmark",
        [run.run_id, iteration],
    )
    return dict(
        zip(table.column("benchmark").to_pylist(), table.column("score").to_pylist(), strict=True)
    )


def _percent(scores: dict[str, float]) -> str:
    return ", ".join(f"{name} {score:.1%}" for name, score in scores.items()) or "no items"


def stored_config(warehouse_path: Path, run_id: str) -> Config:
    """The config a run started with (what `--resume` continues), from its `runs` row."""
    with Warehouse.open(warehouse_path) as warehouse:
        rows = warehouse.query(
            "SELECT command, config_json FROM runs WHERE run_id = ?", [run_id]
        ).to_pylist()
    if not rows:
        raise ConfigError(
            f"no run {run_id!r} in {warehouse_path}; "
            '`selfplay sql "SELECT run_id, command FROM runs"` lists the runs there'
        )
    if "run" not in rows[0]["command"].split():
        raise ConfigError(f"run {run_id} was made by `{rows[0]['command']}`, not `selfplay run`")
    return Config.model_validate(json.loads(rows[0]["config_json"]))


# No log_prints: Prefect's print hook would catch the disassembly that dill (under `datasets`'
# fingerprinting) prints to a captured stdout and reads back, and log it line by line.
@flow(name="run")
def run_flow(
    config: dict[str, Any] | None = None, resume: str | None = None, command: str = "run"
) -> dict:
    """Train both roles for `run.iterations` iterations, evaluating before and after each.

    `resume`: the id of a run to continue; `config` must then be that run's config (see
    `stored_config`), possibly with more iterations.
    """
    cfg = Config.model_validate(config or {})
    started = time.time()
    if cfg.training.weights == "shared" and cfg.model.challenger != cfg.model.solver:
        raise ConfigError(
            "training.weights is 'shared' but model.challenger and model.solver differ; "
            "set both to the same model or set training.weights=separate"
        )
    # Absolute, so that a resume from another folder finds and extends the same checkpoints.
    cfg.run.checkpoint_dir = cfg.run.checkpoint_dir.expanduser().resolve()
    with warehouse_slot(cfg.warehouse.path):  # preflight opens the file too
        documents = preflight(cfg, load_documents_fanned_out)
        summary = _run(cfg, documents, resume, command)
    summary.wall_seconds = round(time.time() - started, 1)
    return asdict(summary)


def _run(cfg: Config, documents: list[Document], resume: str | None, command: str) -> RunSummary:
    run_id = resume or content_key("run", cfg.to_json(), time.time_ns())
    logger = get_run_logger()
    with Warehouse.open(cfg.warehouse.path) as warehouse:
        if resume is None:
            warehouse.write("runs", [run_row(run_id, cfg, command, __version__)])
        run = _Run(cfg, warehouse, run_id, documents)
        summary = RunSummary(run_id, str(cfg.warehouse.path), str(run.run_dir))
        try:
            logger.info(
                "run %s: %d iterations, %d stages already committed, checkpoints in %s",
                run_id,
                cfg.run.iterations,
                len(run.done),
                run.run_dir,
            )
            run.staged(start_engines, retry=True)(run)
            if run.pending(BASELINE, "evaluate"):
                run.staged(evaluate_stage, retry=True)(run, BASELINE)
            run.stage_done()
            for iteration in range(1, cfg.run.iterations + 1):
                summary.iterations.append(iteration_flow(run, iteration))
            summary.baseline = _heldout(run, BASELINE)
        finally:
            run.close()
        summary.skipped_stages = run.skipped
    return summary
