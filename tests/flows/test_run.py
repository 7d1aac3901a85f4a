"""`selfplay run` end to end on the tiny model: two iterations of generate, Solver and
Challenger GRPO (TRL), held-out evaluation, all through real vLLM, math-verify, the sandbox
and a DuckDB file; then a real SIGKILL in the middle of a stage and `--resume`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from prefect import get_client

from flows.artifacts import SUMMARY_KEY
from flows.cli import main
from warehouse.query import read_sql

TASKS, SAMPLES, ITERATIONS = 8, 4, 2
EVAL_ITEMS = 4 + 2  # basic_arithmetic items + HumanEval problems
STAGES = ("propose", "solve_and_label", "train_solver", "train_challenger", "evaluate")


def run_args(
    tiny_model: Path,
    tmp: Path,
    iterations: int = ITERATIONS,
    extra: Mapping[str, object] | None = None,
) -> list[str]:
    """`selfplay run` on the tiny model, small enough for a test; `extra`: more settings."""
    settings = {
        "model.challenger": tiny_model,
        "model.solver": tiny_model,
        "generate.tasks": TASKS,
        "generate.samples_per_task": SAMPLES,
        "generate.kinds": "[math]",  # the tiny model only proposes maths (tests/conftest.py)
        "generate.constrained_format": "false",
        "sampling.challenger.max_tokens": 48,
        "sampling.challenger.temperature": 0.7,
        "sampling.solver.max_tokens": 48,
        "training.solver_steps": 1,  # one step per role shows the lineage; more adds only time
        "training.challenger_steps": 1,
        "training.batch_size": 8,
        "training.num_generations": 4,
        "training.max_completion_length": 48,
        "training.learning_rate": 3e-4,
        "evaluation.reasoning_gym": "[basic_arithmetic]",
        "evaluation.items_per_task": 4,
        "evaluation.humaneval_problems": 2,
        "evaluation.max_tokens": 48,
        # Each engine reserves 5 % of the machine for its KV cache, not vLLM's 92 %.
        "engine.gpu_memory_utilization": 0.05,
        "run.checkpoint_dir": tmp / "checkpoints",
        **(extra or {}),
    }
    args = ["run", "--iterations", str(iterations), "--warehouse", str(tmp / "w.duckdb")]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return args


def _rows(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def finished(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("run")
    result = CliRunner().invoke(main, run_args(tiny_model, tmp), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [(run_id,)] = _rows(tmp / "w.duckdb", "SELECT run_id FROM runs")
    return tmp / "w.duckdb", run_id, result.output


def _assert_complete(warehouse: Path, run_id: str, tiny_model: Path) -> None:
    """Every stage once, every row each stage owes, lineage unbroken."""
    stages = _rows(warehouse, "SELECT iteration, stage FROM stage_runs ORDER BY all")
    expected = [(0, "evaluate")] + [(i, s) for i in range(1, ITERATIONS + 1) for s in STAGES]
    assert stages == sorted(expected)
    for iteration in range(1, ITERATIONS + 1):
        where = f"run_id = '{run_id}' AND iteration = {iteration}"
        [(tasks, valid)] = _rows(
            warehouse,
            f"SELECT count(*), count(*) FILTER (parse_status = 'valid') FROM tasks WHERE {where}",
        )
        assert tasks == TASKS and valid > 0
        assert _rows(warehouse, f"SELECT count(*) FROM trajectories WHERE {where}") == [
            (valid * SAMPLES,)
        ]
        for table in ("labels", "difficulty"):
            assert _rows(warehouse, f"SELECT count(*) FROM {table} WHERE {where}") == [(valid,)]
        assert _rows(warehouse, f"SELECT count(*) FROM rewards WHERE {where}") == [(TASKS,)]
    # Each role's steps match its checkpoint row; lineage runs solver -> challenger -> solver.
    checkpoints = _rows(
        warehouse,
        "SELECT iteration, role, path, parent, steps FROM checkpoints "
        "ORDER BY iteration, role DESC",  # solver before challenger
    )
    assert [(c[0], c[1]) for c in checkpoints] == [
        (i, role) for i in range(1, ITERATIONS + 1) for role in ("solver", "challenger")
    ]
    assert checkpoints[0][3] == str(tiny_model)
    for previous, following in zip(checkpoints, checkpoints[1:], strict=False):
        assert following[3] == previous[2], "shared weights: each trains from the one before"
    for iteration, role, path, _parent, steps in checkpoints:
        assert Path(path, "config.json").is_file()
        where = f"iteration = {iteration} AND role = '{role}'"
        assert _rows(warehouse, f"SELECT count(*) FROM training_steps WHERE {where}") == [(steps,)]
    # Held-out evaluation before the first iteration and after each, with the overlap check.
    assert _rows(
        warehouse, "SELECT iteration, count(*) FROM evaluations GROUP BY ALL ORDER BY 1"
    ) == [(i, EVAL_ITEMS) for i in range(ITERATIONS + 1)]
    assert _rows(
        warehouse,
        "SELECT iteration, items_checked, overlapping_items FROM overlap_checks ORDER BY 1",
    ) == [(i, EVAL_ITEMS, 0) for i in range(ITERATIONS + 1)]


@pytest.mark.vllm
def test_run_trains_both_roles_and_registers_everything(finished, tiny_model: Path):
    warehouse, run_id, output = finished
    _assert_complete(warehouse, run_id, tiny_model)
    # Both roles really took GRPO steps in every iteration.
    assert _rows(warehouse, "SELECT role, count(*) FROM training_steps GROUP BY 1 ORDER BY 1") == [
        ("challenger", ITERATIONS),
        ("solver", ITERATIONS),
    ]
    # Rows sampled after training name the checkpoint that produced them.
    [(model,)] = _rows(warehouse, "SELECT DISTINCT model FROM trajectories WHERE iteration = 2")
    [(first_challenger,)] = _rows(
        warehouse, "SELECT path FROM checkpoints WHERE iteration = 1 AND role = 'challenger'"
    )
    assert model == first_challenger
    assert f"run id: {run_id}\n" in output
    assert "stages already committed, skipped: 0 " in output


def test_run_publishes_artifacts_every_iteration(finished):
    """Read back from the session's (ephemeral) Prefect server, as the UI shows them."""
    _, run_id, _ = finished
    with get_client(sync_client=True) as client:
        mine = [a for a in client.read_artifacts() if run_id in (a.description or "")]
    summaries = sorted(a.description for a in mine if a.key == SUMMARY_KEY)
    assert summaries == [f"run {run_id} iteration {k}: summary" for k in (1, 2)]
    assert all("| held-out accuracy (mean) |" in a.data for a in mine if a.key == SUMMARY_KEY)
    assert {a.key for a in mine if a.type == "image"} >= {
        "selfplay-difficulty-by-iteration",
        "selfplay-heldout-accuracy",
    }
    (progress,) = [a for a in mine if a.type == "progress"]
    assert progress.data == 100.0


def _committed(warehouse: Path) -> set[tuple[int, str]]:
    try:
        rows = read_sql(warehouse, "SELECT iteration, stage FROM stage_runs").table.to_pylist()
    except Exception:  # no snapshot published yet
        return set()
    return {(row["iteration"], row["stage"]) for row in rows}


@pytest.mark.vllm
def test_killed_run_resumes_without_losing_or_repeating_rows(tiny_model: Path, tmp_path: Path):
    warehouse = tmp_path / "w.duckdb"
    # Its own Prefect home: two ephemeral servers on one SQLite file lock each other out.
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    code = "import sys; from flows.cli import main; sys.exit(main())"
    log = tmp_path / "run.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", code, *run_args(tiny_model, tmp_path)],
            env=env,
            start_new_session=True,  # the kill takes vLLM's engine process with it
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 600
        while (1, "solve_and_label") not in _committed(warehouse):
            if process.poll() is not None:
                pytest.fail(f"the run ended before the kill:\n{log.read_text()[-3000:]}")
            assert time.monotonic() < deadline, "the first iteration never labelled its tasks"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group may be gone already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        at_kill = set(conn.execute("SELECT iteration, stage FROM stage_runs").fetchall())
        tasks_at_kill = conn.execute("SELECT * FROM tasks ORDER BY task_id").fetchall()
    # Killed at once: somewhere in iteration 1's training or later, how far depends on the CPU.
    assert {(0, "evaluate"), (1, "propose"), (1, "solve_and_label")} <= at_kill
    assert len(at_kill) < 1 + ITERATIONS * len(STAGES), "the run finished before the kill"
    [(run_id,)] = _rows(warehouse, "SELECT run_id FROM runs")

    result = CliRunner().invoke(
        main,
        ["run", "--resume", run_id, "--warehouse", str(warehouse)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"stages already committed, skipped: {len(at_kill)} " in result.output
    _assert_complete(warehouse, run_id, tiny_model)
    assert _rows(warehouse, "SELECT * FROM tasks WHERE iteration = 1 ORDER BY task_id") == [
        row for row in tasks_at_kill
    ], "committed rows are kept as they were"
    assert _rows(warehouse, "SELECT count(*) FROM runs") == [(1,)]


def test_resume_of_an_unknown_run_is_a_clear_error(tmp_path: Path):
    warehouse = tmp_path / "w.duckdb"
    result = CliRunner().invoke(main, ["run", "--resume", "nope", "--warehouse", str(warehouse)])
    assert result.exit_code == 1
    assert "Error: no run 'nope' in" in result.output


def test_resume_refuses_a_changed_config(tmp_path: Path):
    result = CliRunner().invoke(main, ["run", "--resume", "abc", "--set", "generate.tasks=4"])
    assert result.exit_code == 1
    assert "only --iterations and --warehouse may be given" in result.output
