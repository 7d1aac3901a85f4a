"""The `generate` Prefect flow: one self-play data-generation iteration into the warehouse.

Thin wiring of `selfplay.generate`: every stage is a Prefect task around a plain function,
so the same stages run in a unit test without Prefect. Everything that can fail on bad input
(models, corpus, warehouse path) is checked before the first row is written, and each stage
commits its rows and its `stage_runs` row in one transaction, so a crash leaves whole stages
behind, never half of one. `flows/run.py` reuses these stages for every iteration of a run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from prefect import Task, flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.tasks import exponential_backoff

from corpora import Document
from flows.artifacts import Progress, publish_iteration
from flows.fanout import label_fanned_out, load_documents_fanned_out
from flows.warehouse_slot import warehouse_slot
from selfplay import __version__
from selfplay.config import Config, FlowsConfig
from selfplay.engine import RolloutEngine
from selfplay.generate import (
    ProposedTask,
    SolverSample,
    TaskLabel,
    load_documents,
    plan_slots,
    propose,
    solve,
)
from selfplay.kinds import EXECUTED_KINDS
from selfplay.models import ModelError, resolve_model
from selfplay.rows import (
    challenger_reward_rows,
    document_rows,
    label_rows,
    run_row,
    sandbox_event_rows,
    task_rows,
    trajectory_rows,
)
from verifiers.equivalence import EquivalenceChecker
from verifiers.sandbox import SandboxLimits, SandboxPool
from warehouse.errors import WarehouseError
from warehouse.keys import content_key
from warehouse.writer import Warehouse

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class GenerateSummary:
    """What one generate run produced; printed by the CLI and returned by the flow."""

    run_id: str
    warehouse: str
    proposals: int = 0
    valid: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    solver_samples: int = 0
    bands: dict[str, int] = field(default_factory=dict)
    agrees_with_reference: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0


class _Stages:
    """Engines, verifier pool and the warehouse writer of one run, opened once, closed once.

    `challenger_model` / `solver_model` default to the configured models; a resumed run
    passes the checkpoints it had reached. Same weights for both roles: one engine serves
    both (SPICE / Absolute Zero style), and training reloads it in place.
    """

    def __init__(
        self,
        config: Config,
        warehouse: Warehouse,
        run_id: str,
        challenger_model: str | None = None,
        solver_model: str | None = None,
    ) -> None:
        self.config, self.warehouse, self.run_id = config, warehouse, run_id
        cache = config.model.cache_dir
        self.challenger_model = challenger_model or resolve_model(config.model.challenger, cache)
        self.solver_model = solver_model or resolve_model(config.model.solver, cache)
        self._challenger: RolloutEngine | None = None
        self._solver: RolloutEngine | None = None
        self.checker: EquivalenceChecker | None = None
        self.pool: SandboxPool | None = None
        self.summary = GenerateSummary(run_id=run_id, warehouse=str(config.warehouse.path))

    def start_engines(self) -> None:
        settings, seed = self.config.engine, self.config.run.seed
        if self._challenger is None:
            self._challenger = RolloutEngine(self.challenger_model, settings, seed)
        if self._solver is None:
            same = self.solver_model == self.challenger_model
            self._solver = (
                self._challenger if same else RolloutEngine(self.solver_model, settings, seed)
            )

    @property
    def challenger(self) -> RolloutEngine:
        assert self._challenger is not None, "start-engines runs first"
        return self._challenger

    @property
    def solver(self) -> RolloutEngine:
        assert self._solver is not None, "start-engines runs first"
        return self._solver

    def staged(self, stage: Task[P, R], retry: bool = False) -> Task[P, R]:
        return staged(stage, self.config.flows, retry)

    def commit(
        self, iteration: int, stage: str, started: float, tables: dict[str, list[dict]]
    ) -> int:
        """Write a stage's rows and its `stage_runs` row in one transaction; return the rows."""
        rows = sum(len(table_rows) for table_rows in tables.values())
        stage_run = {
            "stage_run_id": content_key("stage", self.run_id, iteration, stage),
            "run_id": self.run_id,
            "iteration": iteration,
            "stage": stage,
            "started_at": datetime.fromtimestamp(started, UTC),
            "finished_at": datetime.now(UTC),
            "rows_written": rows,
            "status": "completed",
        }
        self.warehouse.write_all({**tables, "stage_runs": [stage_run]})
        return rows

    def close(self) -> None:
        engines = {id(e): e for e in (self._challenger, self._solver) if e is not None}
        for engine in engines.values():
            engine.close()
        if self.checker is not None:
            self.checker.close()
        if self.pool is not None:
            self.pool.close()


def staged(stage: Task[P, R], flows: FlowsConfig, retry: bool = False) -> Task[P, R]:
    """`stage` with the run's timeout; with `retry`, also retried with doubling delays
    when the failure can pass (an engine that did not start, a crashed worker pool)."""
    if not retry:
        return stage.with_options(timeout_seconds=flows.stage_timeout_s)
    return stage.with_options(
        timeout_seconds=flows.stage_timeout_s,
        retries=flows.retries,
        retry_delay_seconds=exponential_backoff(flows.retry_delay_s),
        retry_condition_fn=_may_pass,
    )


# Bad input and bugs fail the same way every time: retrying them only delays the Failed state.
_PERMANENT = (ValueError, TypeError, LookupError, AssertionError, ModelError, WarehouseError)


def _may_pass(task: Task, task_run: object, state: Any) -> bool:
    return not isinstance(state.result(raise_on_failure=False), _PERMANENT)


@task(name="start-engines", cache_policy=NONE)
def start_engines(stages: _Stages) -> None:
    stages.start_engines()
    config = stages.config
    stages.checker = EquivalenceChecker(
        workers=config.labels.equivalence_workers, timeout_s=config.labels.equivalence_timeout_s
    )
    if EXECUTED_KINDS & set(config.generate.kinds):
        limits = SandboxLimits(
            wall_s=config.executor.timeout_s,
            cpu_s=config.executor.timeout_s,
            memory_mb=config.executor.memory_mb,
        )
        stages.pool = SandboxPool(workers=config.executor.workers, limits=limits)


@task(name="propose", cache_policy=NONE)
def propose_stage(stages: _Stages, documents: list[Document], iteration: int) -> list[ProposedTask]:
    logger = get_run_logger()
    started = time.time()
    slots = plan_slots(stages.config, documents, stages.run_id, iteration)
    engine = stages.challenger
    tasks = propose(engine, slots, stages.config, stages.pool)
    grounding = [s.document for s in slots if s.document is not None]
    tables = {
        "documents": document_rows(grounding),
        "tasks": task_rows(tasks, engine.model, stages.config.sampling.challenger),
    }
    stages.commit(iteration, "propose", started, tables)
    summary = stages.summary
    summary.stage_seconds["propose"] = round(time.time() - started, 2)
    summary.proposals = len(tasks)
    summary.valid = sum(t.proposal.valid for t in tasks)
    summary.rejections = dict(
        Counter(t.proposal.rejection for t in tasks if t.proposal.rejection).most_common()
    )
    logger.info(
        "Challenger: %d proposals, %d valid; rejected: %s",
        summary.proposals,
        summary.valid,
        summary.rejections or "none",
    )
    return tasks


@task(name="solve", cache_policy=NONE)
def solve_stage(stages: _Stages, tasks: list[ProposedTask]) -> list[SolverSample]:
    logger = get_run_logger()
    started = time.time()
    samples = solve(stages.solver, tasks, stages.config)
    stages.summary.stage_seconds["solve"] = round(time.time() - started, 2)
    answered = sum(s.answer is not None for s in samples)
    logger.info("Solver: %d samples, %d with an extractable answer", len(samples), answered)
    return samples


@task(name="label", cache_policy=NONE)
def label_stage(
    stages: _Stages,
    tasks: list[ProposedTask],
    samples: list[SolverSample],
    iteration: int,
    solve_started: float,
) -> list[TaskLabel]:
    logger = get_run_logger()
    started = time.time()
    assert stages.checker is not None, "start-engines opens the checker"
    labels = label_fanned_out(stages.checker, tasks, samples, stages.config, stages.pool)
    config, model = stages.config, stages.solver.model
    labels_out, difficulty_out = label_rows(labels, tasks, model, config)
    tables = {
        "trajectories": trajectory_rows(samples, labels, tasks, model, config.sampling.solver),
        "labels": labels_out,
        "difficulty": difficulty_out,
        "sandbox_events": sandbox_event_rows(tasks, labels),
        "rewards": challenger_reward_rows(tasks, labels, config),
    }
    # Trajectories need their verdicts, so solving and labelling commit as one stage.
    stages.commit(iteration, "solve_and_label", solve_started, tables)
    summary = stages.summary
    summary.stage_seconds["label"] = round(time.time() - started, 2)
    summary.solver_samples = len(samples)
    summary.bands = dict(Counter(str(lab.band) for lab in labels))
    summary.agrees_with_reference = sum(bool(lab.agrees_with_reference) for lab in labels)
    logger.info(
        "Labels: bands %s; %d agree with the Challenger",
        summary.bands,
        summary.agrees_with_reference,
    )
    return labels


def preflight(
    config: Config, load: Callable[[Config], list[Document]] = load_documents
) -> list[Document]:
    """Everything bad input can break, checked before any row is written: the corpus, both
    models (converting the embedded one if needed) and the warehouse path. Flows read the
    corpus with `load_documents_fanned_out`; the CLI's check before a flow, with no Prefect
    server up yet, reads it in this process."""
    documents = load(config)
    for name in (config.model.challenger, config.model.solver):
        resolve_model(name, config.model.cache_dir)
    with Warehouse.open(config.warehouse.path):
        pass
    return documents


@flow(name="generate")
def generate_flow(config: dict[str, Any] | None = None, command: str = "generate") -> dict:
    """Propose, solve and label one iteration of tasks; every row lands in the warehouse."""
    cfg = Config.model_validate(config or {})
    started = time.time()
    with warehouse_slot(cfg.warehouse.path):  # preflight opens the file too
        documents = preflight(cfg, load_documents_fanned_out)
        summary = _generate(cfg, documents, command)
    summary.wall_seconds = round(time.time() - started, 1)
    return asdict(summary)


def _generate(cfg: Config, documents: list[Document], command: str) -> GenerateSummary:
    iteration = 0
    run_id = content_key("run", cfg.to_json(), time.time_ns())
    with Warehouse.open(cfg.warehouse.path) as warehouse:
        stages = _Stages(cfg, warehouse, run_id)
        progress = Progress(f"generate run {run_id}: stages done")
        try:
            warehouse.write("runs", [run_row(run_id, cfg, command, __version__)])
            get_run_logger().info("run %s: %d documents available", run_id, len(documents))
            stages.staged(start_engines, retry=True)(stages)
            progress.set(0.25)
            tasks = stages.staged(propose_stage)(stages, documents, iteration)
            progress.set(0.5)
            solve_started = time.time()
            samples = stages.staged(solve_stage)(stages, tasks)
            progress.set(0.75)
            stages.staged(label_stage, retry=True)(stages, tasks, samples, iteration, solve_started)
            progress.set(1.0)
        finally:
            stages.close()
        publish_iteration(warehouse, run_id, iteration, f"generate run {run_id}")
    return stages.summary
