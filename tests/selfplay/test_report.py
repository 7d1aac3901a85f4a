"""`selfplay.report` on a real DuckDB warehouse with a two-iteration run: exact numbers, real PNGs.

`write_two_iteration_run` writes, through the warehouse writer, a run whose every figure is
worked out by hand in the comments; a second run and a base-model evaluation with no run
sit beside it to prove the report reads only its own run's rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from selfplay.report import (
    DIFFICULTY_PLOT,
    HELDOUT_PLOT,
    STAGE_TIME_PLOT,
    ReportError,
    build_report,
    write_plots,
)
from warehouse import Warehouse, WarehouseError, content_key

RUN = "aaa111"  # the two-iteration run
OTHER_RUN = "aaa222"  # shares the prefix "aaa": its rows must not leak into RUN's report
EMPTY_RUN = "bbb333"  # a run that has proposed nothing yet
T0 = datetime(2025, 1, 1, 12, 0, 0)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run_row(run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "created_at": T0,
        "command": "run",
        "config_json": {"seed": 0},
        "config_hash": content_key({"seed": 0}),
        "seed": 0,
        "selfplay_version": "0.1.0",
    }


def task_id(run_id: str, iteration: int, slot: int) -> str:
    return content_key("task", run_id, iteration, slot)


def task_row(
    run_id: str, iteration: int, slot: int, kind: str = "math", *, valid: bool = True
) -> dict[str, Any]:
    return {
        "task_id": task_id(run_id, iteration, slot),
        "run_id": run_id,
        "iteration": iteration,
        "slot": slot,
        "kind": kind,
        "grounded": False,
        "challenger_model": "tiny",
        "prompt_json": [{"role": "user", "content": "Propose a task."}],
        "raw_completion": "...",
        "parse_status": "valid" if valid else "rejected",
        "rejection_reason": None if valid else "no_question",
        "question": f"Question {slot}?" if valid else None,
        "reference_answer": "1" if valid else None,
        "sampling_json": {"temperature": 0.8},
        "completion_tokens": 10,
        "latency_s": 0.1,
    }


def difficulty_row(
    run_id: str,
    iteration: int,
    slot: int,
    pass_rate: float,
    band: str,
    *,
    checkpoint: str = "solver-0",
    created: float = 100,
) -> dict[str, Any]:
    return {
        "difficulty_id": content_key("difficulty", run_id, iteration, slot, checkpoint),
        "task_id": task_id(run_id, iteration, slot),
        "run_id": run_id,
        "iteration": iteration,
        "solver_checkpoint": checkpoint,
        "pass_rate": pass_rate,
        "band": band,
        "band_low": 0.3,
        "band_high": 0.8,
        "n_samples": 8,
        "created_at": _at(created),
    }


def label_row(
    run_id: str,
    iteration: int,
    slot: int,
    *,
    source: str = "majority",
    agrees: bool | None = None,
    label: str | None = "1",
    checkpoint: str = "solver-0",
    created: float = 100,
) -> dict[str, Any]:
    return {
        "label_id": content_key("label", run_id, iteration, slot, checkpoint),
        "task_id": task_id(run_id, iteration, slot),
        "run_id": run_id,
        "iteration": iteration,
        "solver_checkpoint": checkpoint,
        "label_source": source,
        "label": label,
        "majority_share": 0.5,
        "n_samples": 8,
        "n_answered": 8,
        "n_clusters": 2,
        "cluster_sizes_json": [4, 4],
        "equivalence_timeouts": 0,
        "reference_answer": "1",
        "agrees_with_reference": agrees,
        "created_at": _at(created),
    }


def solver_rows(
    run_id: str, iteration: int, slot: int, answers: list[tuple[str | None, str]]
) -> list[dict[str, Any]]:
    """Solver samples of one task: (extracted answer, executor verdict) each."""
    return [
        {
            "trajectory_id": content_key("trajectory", run_id, iteration, slot, index),
            "task_id": task_id(run_id, iteration, slot),
            "run_id": run_id,
            "iteration": iteration,
            "role": "solver",
            "sample_index": index,
            "model": "tiny",
            "checkpoint": "solver-0",
            "sampling_json": {"temperature": 0.8},
            "prompt_json": [{"role": "user", "content": "Solve."}],
            "completion": f"answer: {answer}",
            "extracted_answer": answer,
            "in_label_cluster": verdict == "correct",
            "verdict": verdict,
            "reward": float(verdict == "correct"),
            "prompt_tokens": 5,
            "completion_tokens": 5,
            "finish_reason": "stop",
            "latency_s": 0.1,
        }
        for index, (answer, verdict) in enumerate(answers)
    ]


def reward_row(
    run_id: str, iteration: int, slot: int, reward: float, role: str = "challenger"
) -> dict[str, Any]:
    return {
        "reward_id": content_key("reward", run_id, iteration, slot, role),
        "task_id": task_id(run_id, iteration, slot),
        "run_id": run_id,
        "iteration": iteration,
        "role": role,
        "reward": reward,
        "parts_json": {"uncertainty": reward},
    }


def evaluation_rows(
    run_id: str | None, iteration: int | None, benchmark: str, scores: list[float]
) -> list[dict[str, Any]]:
    return [
        {
            "evaluation_id": content_key("evaluation", run_id, iteration, benchmark, item),
            "run_id": run_id,
            "iteration": iteration,
            "checkpoint": f"solver-{iteration}",
            "benchmark": benchmark,
            "item_id": str(item),
            "prompt": f"item {item}",
            "answer": "1",
            "score": score,
            # Iteration k is evaluated after iteration k ran: arith first, then humaneval.
            "created_at": _at(1000 * (iteration or 0) + (0 if benchmark == "arith" else 1)),
        }
        for item, score in enumerate(scores)
    ]


def stage_row(run_id: str, iteration: int, stage: str, start: float, end: float) -> dict[str, Any]:
    return {
        "stage_run_id": content_key("stage", run_id, iteration, stage),
        "run_id": run_id,
        "iteration": iteration,
        "stage": stage,
        "started_at": _at(start),
        "finished_at": _at(end),
        "rows_written": 1,
        "status": "completed",
    }


def write_two_iteration_run(path: Path) -> None:
    """RUN: base evaluation, iterations 1 and 2; OTHER_RUN and EMPTY_RUN beside it."""
    tables: dict[str, list[dict[str, Any]]] = {
        "runs": [run_row(RUN), run_row(OTHER_RUN), run_row(EMPTY_RUN)],
        # Iteration 1: 5 proposals, 4 valid (3 math, 1 code_o). Iteration 2: 3 valid.
        "tasks": [
            *(task_row(RUN, 1, slot) for slot in range(3)),
            task_row(RUN, 1, 3, "code_o"),
            task_row(RUN, 1, 4, valid=False),
            task_row(RUN, 2, 0),
            task_row(RUN, 2, 1, "code_i"),
            task_row(RUN, 2, 2, "code_i"),
            task_row(OTHER_RUN, 1, 0),
        ],
        "difficulty": [
            # Iteration 1: too_hard 1, frontier 2, too_easy 1.
            difficulty_row(RUN, 1, 0, 0.125, "too_hard"),
            difficulty_row(RUN, 1, 1, 0.5, "frontier"),
            difficulty_row(RUN, 1, 2, 0.625, "frontier"),
            difficulty_row(RUN, 1, 3, 1.0, "too_easy"),
            # An older measurement of slot 1 in the same iteration: superseded, not counted.
            difficulty_row(RUN, 1, 1, 0.0, "too_hard", checkpoint="solver-old", created=50),
            # Iteration 2: too_hard 1, frontier 2.
            difficulty_row(RUN, 2, 0, 0.0, "too_hard"),
            difficulty_row(RUN, 2, 1, 0.375, "frontier"),
            difficulty_row(RUN, 2, 2, 0.75, "frontier"),
            difficulty_row(OTHER_RUN, 1, 0, 1.0, "too_easy"),
        ],
        "labels": [
            # Iteration 1: 2 of 3 majority labels agree with the reference.
            label_row(RUN, 1, 0, agrees=True),
            label_row(RUN, 1, 1, agrees=False),
            label_row(RUN, 1, 2, agrees=True),
            label_row(RUN, 1, 1, agrees=True, checkpoint="solver-old", created=50),  # superseded
            label_row(RUN, 1, 3, source="executor", label="7"),
            # Iteration 2: no majority label could be compared (no answer), 2 executor labels.
            label_row(RUN, 2, 0, label=None),
            label_row(RUN, 2, 1, source="executor"),
            label_row(RUN, 2, 2, source="executor"),
            label_row(OTHER_RUN, 1, 0, agrees=False),
        ],
        "trajectories": [
            # Iteration 1, code_o: majority answer "7" passed the executor -> 1 of 1.
            *solver_rows(
                RUN,
                1,
                3,
                [("7", "correct"), ("7", "correct"), ("8", "incorrect"), (None, "no_answer")],
            ),
            # A majority-labelled task's samples: not an executor check.
            *solver_rows(RUN, 1, 0, [("1", "correct"), ("2", "incorrect")]),
            # Iteration 2, code_i: majority "1" failed; a 1-1 tie goes to "x", which passed.
            *solver_rows(RUN, 2, 1, [("1", "incorrect"), ("1", "incorrect"), ("2", "correct")]),
            *solver_rows(RUN, 2, 2, [("y", "incorrect"), ("x", "correct")]),
        ],
        "rewards": [
            # Iteration 1 Challenger rewards: mean (0.5 + 1 + 0.75 + 0 - 1) / 5 = 0.25.
            *(
                reward_row(RUN, 1, slot, reward)
                for slot, reward in enumerate([0.5, 1.0, 0.75, 0.0, -1.0])
            ),
            reward_row(RUN, 1, 0, 9.0, role="solver"),  # not a Challenger reward
            reward_row(OTHER_RUN, 1, 0, 5.0),
            # Iteration 2 has no rewards (as in runs written before rewards were stored).
        ],
        "evaluations": [
            *evaluation_rows(None, None, "arith", [1, 1, 1, 1]),  # base model outside any run
            *evaluation_rows(RUN, 0, "arith", [1, 0, 0, 0]),  # 0.25
            *evaluation_rows(RUN, 0, "humaneval", [0, 1]),  # 0.5
            *evaluation_rows(RUN, 1, "arith", [1, 1, 0, 0]),  # 0.5
            *evaluation_rows(RUN, 1, "humaneval", [1, 1]),  # 1.0
            *evaluation_rows(RUN, 2, "arith", [1, 1, 1, 0]),  # 0.75; humaneval not run
            *evaluation_rows(OTHER_RUN, 1, "arith", [0, 0]),
        ],
        "stage_runs": [
            # Iteration 1: 10 + 20 + 30 s of stages, with a 10 s gap (a resume) before training.
            stage_row(RUN, 1, "propose", 0, 10),
            stage_row(RUN, 1, "solve_and_label", 10, 30),
            stage_row(RUN, 1, "train", 40, 70),
            stage_row(RUN, 2, "propose", 100, 105),
            stage_row(OTHER_RUN, 1, "propose", 0, 999),
        ],
    }
    with Warehouse.open(path) as warehouse:
        for table, rows in tables.items():
            assert warehouse.write(table, rows) == len(rows), table


@pytest.fixture(scope="module")
def warehouse_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "w.duckdb"
    write_two_iteration_run(path)
    return path


def test_iterations_and_counts(warehouse_path: Path):
    report = build_report(warehouse_path, RUN)
    assert report.run_id == RUN and report.command == "run"
    assert [r.iteration for r in report.iterations] == [0, 1, 2]
    base, first, second = report.iterations
    assert (base.proposals, base.valid, base.pass_rates) == (0, 0, ())
    assert (first.proposals, first.valid) == (5, 4)
    assert first.bands == {"too_easy": 1, "frontier": 2, "too_hard": 1}
    assert sorted(first.pass_rates) == [0.125, 0.5, 0.625, 1.0]
    assert (first.band_low, first.band_high) == (0.3, 0.8)
    assert (second.proposals, second.valid) == (3, 3)
    assert second.bands == {"too_easy": 0, "frontier": 2, "too_hard": 1}


def test_label_checks_and_rewards(warehouse_path: Path):
    base, first, second = build_report(warehouse_path, RUN).iterations
    assert (first.label_checked, first.label_agreement) == (3, pytest.approx(2 / 3))
    assert (first.executor_checked, first.executor_majority_accuracy) == (1, 1.0)
    assert (second.label_checked, second.label_agreement) == (0, None)
    assert (second.executor_checked, second.executor_majority_accuracy) == (2, 0.5)
    assert first.challenger_reward_mean == pytest.approx(0.25)
    assert base.challenger_reward_mean is None and second.challenger_reward_mean is None


def test_heldout_accuracy(warehouse_path: Path):
    report = build_report(warehouse_path, RUN)
    assert report.benchmarks == ("arith", "humaneval")
    assert report.heldout_by_benchmark() == {
        "arith": {0: 0.25, 1: 0.5, 2: 0.75},
        "humaneval": {0: 0.5, 1: 1.0},
    }
    assert [r.heldout_accuracy for r in report.iterations] == [0.375, 0.75, 0.75]


def test_stage_seconds(warehouse_path: Path):
    base, first, second = build_report(warehouse_path, RUN).iterations
    assert first.stage_seconds == {"propose": 10.0, "solve_and_label": 20.0, "train": 30.0}
    assert list(first.stage_seconds) == ["propose", "solve_and_label", "train"]  # order run
    assert first.seconds == 60.0  # the 10 s gap between stages is not a stage
    assert (second.stage_seconds, second.seconds) == ({"propose": 5.0}, 5.0)
    assert (base.stage_seconds, base.seconds) == ({}, None)


def test_unique_prefix_finds_the_run(warehouse_path: Path):
    assert build_report(warehouse_path, "aaa1").run_id == RUN


def test_plots_are_real_pngs(warehouse_path: Path, tmp_path: Path):
    report = build_report(warehouse_path, RUN)
    paths = write_plots(report, tmp_path / "out")
    assert [p.name for p in paths] == [DIFFICULTY_PLOT, HELDOUT_PLOT, STAGE_TIME_PLOT]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert path.stat().st_size > 10_000, f"{path.name}: {path.stat().st_size} bytes"
        pixels = matplotlib.image.imread(path)
        height, width = pixels.shape[:2]
        assert height >= 300 and width >= 400, (path.name, pixels.shape)
        assert pixels.std() > 0.05, f"{path.name} is nearly blank (std {pixels.std():.3f})"


def test_plots_with_nothing_to_show_are_skipped(tmp_path: Path):
    path = tmp_path / "w.duckdb"
    with Warehouse.open(path) as warehouse:
        warehouse.write("runs", [run_row(RUN)])
        warehouse.write("tasks", [task_row(RUN, 1, 0, valid=False)])
    report = build_report(path, RUN)
    assert [(r.iteration, r.proposals, r.valid) for r in report.iterations] == [(1, 1, 0)]
    assert write_plots(report, tmp_path / "out") == []


@pytest.mark.parametrize(
    ("run_id", "message"),
    [
        ("zzz", "no run 'zzz' in "),
        ("aaa", "run id prefix 'aaa' matches several runs (aaa111, aaa222); give more of the id"),
        (EMPTY_RUN, f"run {EMPTY_RUN} has no iterations yet: no Challenger proposal is stored"),
    ],
)
def test_clear_errors(warehouse_path: Path, run_id: str, message: str):
    with pytest.raises(ReportError) as raised:
        build_report(warehouse_path, run_id)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_warehouse(tmp_path: Path):
    with pytest.raises(WarehouseError, match="no warehouse at"):
        build_report(tmp_path / "none.duckdb", RUN)
