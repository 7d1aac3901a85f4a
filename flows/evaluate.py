"""The `evaluate` Prefect flow: the held-out evaluation of one model, outside a self-play run.

It is the `evaluate` stage of `selfplay run` on its own (same held-out set, same scorers, same
`evaluations` rows) under a run of its own, so a schedule can track any checkpoint: the base
model, a run's newest Solver, or a model trained elsewhere.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.generate import start_engines
from flows.run import _Run, evaluate_stage
from flows.warehouse_slot import warehouse_slot
from selfplay import __version__
from selfplay.config import Config
from selfplay.loop import BASELINE
from selfplay.rows import run_row
from warehouse.keys import content_key
from warehouse.writer import Warehouse


@flow(name="evaluate")
def evaluate_flow(
    config: dict[str, Any] | None = None, model: str | None = None, command: str = "evaluate"
) -> dict:
    """Held-out accuracy of `model` (default: the configured Solver) per benchmark.

    `model`: the embedded model's name, a checkpoint directory (e.g. a run's
    `iteration-003/solver`) or a hub id where a hub is reachable.
    """
    cfg = Config.model_validate(config or {})
    if model is not None:
        # One engine: the Challenger is not used, so it names the same weights.
        cfg.model.solver = cfg.model.challenger = model
    started = time.time()
    run_id = content_key("run", cfg.to_json(), time.time_ns())
    with warehouse_slot(cfg.warehouse.path), Warehouse.open(cfg.warehouse.path) as warehouse:
        warehouse.write("runs", [run_row(run_id, cfg, command, __version__)])
        run = _Run(cfg, warehouse, run_id, documents=[])
        try:
            run.staged(start_engines, retry=True)(run)
            scores = run.staged(evaluate_stage, retry=True)(run, BASELINE)
            solver = run.solver.model
        finally:
            run.close()
    rows = "\n".join(f"| {name} | {score:.1%} |" for name, score in scores.items())
    create_markdown_artifact(
        f"# Held-out evaluation of {solver}\n\n| benchmark | accuracy |\n|---|---|\n{rows}\n",
        key="selfplay-evaluation",
        description=f"evaluate run {run_id}",
    )
    logger = get_run_logger()
    logger.info("evaluation run %s of %s stored in %s", run_id, solver, cfg.warehouse.path)
    return {
        "run_id": run_id,
        "model": solver,
        "scores": scores,
        "warehouse": str(cfg.warehouse.path),
        "wall_seconds": round(time.time() - started, 1),
    }
