"""`selfplay evaluate` end to end: held-out evaluation of one model under a run of its own."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from flows.cli import main


@pytest.mark.vllm
def test_evaluate_stores_scores_of_the_given_model(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    warehouse = tmp_path / "w.duckdb"
    args = [
        "evaluate",
        "--model",
        str(tiny_model),
        "--warehouse",
        str(warehouse),
        "--set",
        "evaluation.reasoning_gym=[basic_arithmetic,chain_sum]",
        "--set",
        "evaluation.items_per_task=3",
        "--set",
        "evaluation.humaneval_problems=2",
        "--set",
        "evaluation.max_tokens=32",
    ]
    # The runs row records the process's command line, as the console script would see it.
    monkeypatch.setattr("sys.argv", ["selfplay", *args])
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(warehouse), read_only=True) as db:
        [(run_id, command)] = db.execute("SELECT run_id, command FROM runs").fetchall()
        rows = db.execute(
            "SELECT benchmark, count(*), any_value(checkpoint), any_value(iteration), "
            "any_value(run_id) FROM evaluations GROUP BY 1 ORDER BY 1"
        ).fetchall()
        stages = db.execute("SELECT iteration, stage FROM stage_runs").fetchall()
    assert command.startswith("selfplay evaluate --model")
    assert [(b, n) for b, n, *_ in rows] == [
        ("basic_arithmetic", 3),
        ("chain_sum", 3),
        ("humaneval", 2),
    ]
    assert {(c, i, r) for _, _, c, i, r in rows} == {(str(tiny_model), 0, run_id)}
    assert stages == [(0, "evaluate")]
    assert f"run id: {run_id}" in result.output
    assert "basic_arithmetic" in result.output and "humaneval" in result.output
