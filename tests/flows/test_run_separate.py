"""`selfplay run` with separate weights (R-Zero style) end to end on the tiny model: one
iteration in which the Challenger and the Solver each have their own engine and their own
checkpoint, through real vLLM, TRL, math-verify, the sandbox and a DuckDB file.

Both roles start from the same tiny model on purpose: that is the case where one engine could
wrongly serve both (as it does with shared weights), and then the Challenger would train from
the Solver's new checkpoint and the evaluation would score the Challenger's weights.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from flows.cli import main
from selfplay.loop import current_weights
from tests.flows.test_run import EVAL_ITEMS, STAGES, run_args
from warehouse.writer import Warehouse


def _rows(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.vllm
def test_separate_weights_train_each_role_on_its_own_engine(tiny_model: Path, tmp_path: Path):
    result = CliRunner().invoke(
        main,
        run_args(tiny_model, tmp_path, iterations=1, extra={"training.weights": "separate"}),
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    warehouse = tmp_path / "w.duckdb"
    [(run_id,)] = _rows(warehouse, "SELECT run_id FROM runs")
    assert _rows(warehouse, "SELECT iteration, stage FROM stage_runs ORDER BY all") == sorted(
        [(0, "evaluate")] + [(1, stage) for stage in STAGES]
    )
    # A checkpoint per role, each trained from the starting model, not one from the other.
    checkpoints = {
        role: (Path(path), parent, steps)
        for role, path, parent, steps in _rows(
            warehouse, "SELECT role, path, parent, steps FROM checkpoints WHERE iteration = 1"
        )
    }
    assert sorted(checkpoints) == ["challenger", "solver"]
    solver, challenger = checkpoints["solver"][0], checkpoints["challenger"][0]
    iteration_dir = tmp_path / "checkpoints" / run_id / "iteration-001"
    assert (solver, challenger) == (iteration_dir / "solver", iteration_dir / "challenger")
    assert checkpoints["solver"][1] == str(tiny_model)
    assert checkpoints["challenger"][1] == str(tiny_model), "the Challenger trains its own weights"
    # Whether a step moved the weights depends on its groups' rewards differing: not asserted.
    assert (solver / "config.json").is_file() and (challenger / "config.json").is_file()
    # One GRPO step per role, each matching its checkpoint row.
    assert _rows(
        warehouse,
        "SELECT role, count(*) FROM training_steps WHERE iteration = 1 GROUP BY 1 ORDER BY 1",
    ) == [("challenger", 1), ("solver", 1)]
    assert checkpoints["solver"][2] == checkpoints["challenger"][2] == 1
    # The evaluation after the iteration scores the Solver's checkpoint, the baseline the start;
    # one engine for both roles would have ended on the Challenger's checkpoint.
    assert _rows(
        warehouse, "SELECT iteration, checkpoint, count(*) FROM evaluations GROUP BY ALL ORDER BY 1"
    ) == [(0, str(tiny_model), EVAL_ITEMS), (1, str(solver), EVAL_ITEMS)]
    # The iteration sampled both roles from the starting weights, each on its own engine.
    assert _rows(warehouse, "SELECT DISTINCT challenger_model FROM tasks") == [(str(tiny_model),)]
    assert _rows(warehouse, "SELECT DISTINCT model FROM trajectories") == [(str(tiny_model),)]
    # A resumed run would restart each role from its own newest checkpoint.
    with Warehouse.open(warehouse) as opened:
        assert current_weights(opened, run_id, shared=False) == {
            "solver": str(solver),
            "challenger": str(challenger),
        }
