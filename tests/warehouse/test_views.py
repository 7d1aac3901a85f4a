"""The SQL views answer their questions with the right numbers on a hand-built warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from warehouse import VIEWS, Warehouse, content_key

from .pipeline import (
    TaskSpec,
    document_row,
    iteration_rows,
    reward_row,
    run_row,
    sandbox_event_row,
    task_id_for,
    write_iteration,
)

RUN = content_key("run", "views")
GOOD_DOC, POOR_DOC = content_key("doc", "good"), content_key("doc", "poor")

# Iteration 0: two frontier tasks from the good document, one too easy, one
# too hard from the poor document, a rejected proposal; iteration 1 is harder.
ITERATION_0 = [
    TaskSpec("What is 12 * 3?", "36", 2, doc_id=GOOD_DOC),
    TaskSpec("What is 7 squared?", "49", 3, doc_id=GOOD_DOC, reference_answer="48"),
    TaskSpec("What is 1 + 1?", "2", 4),
    TaskSpec("Which is prime? A) 4 B) 9 C) 7", "C", 1, kind="mcq", doc_id=POOR_DOC),
    TaskSpec("unparseable", None, 0, valid=False, doc_id=POOR_DOC),
]
ITERATION_1 = [
    TaskSpec("def f(x): return x * 2\nprint(f(3))", "6", 2, kind="code_o", label_source="executor"),
    TaskSpec(
        "def f(x): return x - 1\nprint(f(0))", "-1", 1, kind="code_o", label_source="executor"
    ),
    TaskSpec("What is 99 * 99?", "9801", 0),
]


@pytest.fixture(scope="module")
def views_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("views") / "warehouse.duckdb"
    with Warehouse.open(path) as warehouse:
        warehouse.write("runs", [run_row(RUN)])
        warehouse.write(
            "documents",
            [document_row(GOOD_DOC, "Arithmetic facts."), document_row(POOR_DOC, "Primes.")],
        )
        write_iteration(warehouse, RUN, 0, iteration_rows(RUN, 0, ITERATION_0))
        write_iteration(warehouse, RUN, 1, iteration_rows(RUN, 1, ITERATION_1))
        code_task = task_id_for(RUN, 1, 0)
        warehouse.write(
            "sandbox_events",
            [sandbox_event_row(RUN, code_task, "network", i) for i in range(2)]
            + [sandbox_event_row(RUN, code_task, "filesystem", 0)],
        )
        warehouse.write(
            "rewards",
            [
                reward_row(RUN, task_id_for(RUN, 0, 0), 0, {"uncertainty": 1.0, "repetition": 0.0}),
                reward_row(
                    RUN, task_id_for(RUN, 0, 2), 0, {"uncertainty": 0.0, "repetition": -0.5}
                ),
            ],
        )
    yield path


@pytest.fixture
def reader(views_path: Path) -> Iterator[Warehouse]:
    with Warehouse.open_reader(views_path) as opened:
        yield opened


def _rows(reader: Warehouse, sql: str) -> list[dict]:
    return reader.query(sql).to_pylist()


def test_every_view_is_queryable(reader: Warehouse) -> None:
    for name in VIEWS:
        assert reader.query(f'SELECT * FROM "{name}" LIMIT 1').num_columns > 0, name


def test_frontier_tasks_lists_frontier_tasks_with_label_and_pass_rate(reader: Warehouse) -> None:
    rows = _rows(
        reader,
        "SELECT question, label, pass_rate, majority_share FROM frontier_tasks "
        "WHERE iteration = 0 ORDER BY pass_rate",
    )
    assert rows == [
        {"question": "What is 12 * 3?", "label": "36", "pass_rate": 0.5, "majority_share": 0.5},
        {
            "question": "What is 7 squared?",
            "label": "49",
            "pass_rate": 0.75,
            "majority_share": 0.75,
        },
    ]


def test_labelled_tasks_skips_rejected_proposals_and_carries_the_solver_prompt(
    reader: Warehouse,
) -> None:
    rows = _rows(reader, "SELECT question, solver_prompt_json, n_trajectories FROM labelled_tasks")
    assert len(rows) == 7  # 8 proposals, 1 rejected
    assert all(row["n_trajectories"] == 4 for row in rows)
    assert all('"role": "user"' in row["solver_prompt_json"] for row in rows)


def test_difficulty_by_iteration_counts_bands_and_the_change(reader: Warehouse) -> None:
    rows = _rows(
        reader,
        "SELECT iteration, n_tasks, n_too_easy, n_frontier, n_too_hard, frontier_share, "
        "mean_pass_rate, mean_pass_rate_change FROM difficulty_by_iteration ORDER BY iteration",
    )
    assert rows[0] == {
        "iteration": 0,
        "n_tasks": 4,
        "n_too_easy": 1,
        "n_frontier": 2,
        "n_too_hard": 1,
        "frontier_share": 0.5,
        "mean_pass_rate": 0.625,
        "mean_pass_rate_change": None,
    }
    assert rows[1]["n_tasks"] == 3 and rows[1]["n_frontier"] == 1
    assert rows[1]["mean_pass_rate"] == pytest.approx(0.25)
    assert rows[1]["mean_pass_rate_change"] == pytest.approx(0.25 - 0.625)


def test_label_quality_measures_agreement_where_a_check_exists(reader: Warehouse) -> None:
    checks = {
        row["label"]: row for row in _rows(reader, "SELECT * FROM label_checks WHERE iteration = 0")
    }
    assert checks["49"]["agrees_with_reference"] is False  # the Challenger said 48
    assert checks["36"]["agrees_with_reference"] is True
    quality = _rows(
        reader,
        "SELECT confidence_from, n_labels, reference_agreement FROM label_quality "
        "WHERE iteration = 0 AND kind = 'math' ORDER BY confidence_from",
    )
    assert quality == [
        {"confidence_from": 0.4, "n_labels": 1, "reference_agreement": 1.0},  # 0.5
        {"confidence_from": 0.6, "n_labels": 1, "reference_agreement": 0.0},  # 0.75
        {"confidence_from": 0.8, "n_labels": 1, "reference_agreement": 1.0},  # 1.0
    ]


def test_label_quality_compares_the_majority_with_the_executor(reader: Warehouse) -> None:
    rows = _rows(
        reader,
        "SELECT label, majority_answer, majority_matches_executor FROM label_checks "
        "WHERE label_source = 'executor' ORDER BY label",
    )
    # "-1" ties 1-1-1-1 with three wrong answers and wins by sorting first.
    assert rows == [
        {"label": "-1", "majority_answer": "-1", "majority_matches_executor": True},
        {"label": "6", "majority_answer": "6", "majority_matches_executor": True},
    ]
    [summary] = _rows(
        reader,
        "SELECT sum(n_executor_checked) AS n, avg(executor_agreement) AS agreement "
        "FROM label_quality WHERE label_source = 'executor'",
    )
    assert summary == {"n": 2, "agreement": 1.0}


def test_challenger_reward_parts_unnest_each_part(reader: Warehouse) -> None:
    rows = _rows(
        reader,
        "SELECT part, value, reward, band FROM challenger_reward_parts ORDER BY reward, part",
    )
    assert rows == [
        {"part": "repetition", "value": -0.5, "reward": -0.5, "band": "too_easy"},
        {"part": "uncertainty", "value": 0.0, "reward": -0.5, "band": "too_easy"},
        {"part": "repetition", "value": 0.0, "reward": 1.0, "band": "frontier"},
        {"part": "uncertainty", "value": 1.0, "reward": 1.0, "band": "frontier"},
    ]
    by_part = {
        row["part"]: row["mean_value"]
        for row in _rows(reader, "SELECT * FROM challenger_rewards_by_iteration")
    }
    assert by_part == {"repetition": -0.25, "uncertainty": 0.5}


def test_document_yield_ranks_the_document_with_more_frontier_tasks_first(
    reader: Warehouse,
) -> None:
    rows = _rows(
        reader,
        "SELECT doc_id, n_proposals, n_valid, n_frontier, frontier_yield FROM document_yield "
        "ORDER BY frontier_yield DESC",
    )
    assert rows == [
        {
            "doc_id": GOOD_DOC,
            "n_proposals": 2,
            "n_valid": 2,
            "n_frontier": 2,
            "frontier_yield": 1.0,
        },
        {
            "doc_id": POOR_DOC,
            "n_proposals": 2,
            "n_valid": 1,
            "n_frontier": 0,
            "frontier_yield": 0.0,
        },
    ]


def test_sandbox_events_by_kind_counts_events_and_the_hit_rate(reader: Warehouse) -> None:
    rows = _rows(
        reader,
        "SELECT event_kind, n_events, n_tasks_hit, n_tasks_of_kind, task_hit_rate "
        "FROM sandbox_events_by_kind WHERE task_kind = 'code_o' ORDER BY event_kind",
    )
    assert rows == [
        {
            "event_kind": "filesystem",
            "n_events": 1,
            "n_tasks_hit": 1,
            "n_tasks_of_kind": 2,
            "task_hit_rate": 0.5,
        },
        {
            "event_kind": "network",
            "n_events": 2,
            "n_tasks_hit": 1,
            "n_tasks_of_kind": 2,
            "task_hit_rate": 0.5,
        },
    ]


def test_views_follow_a_newer_label_of_the_same_task(views_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "relabelled.duckdb"
    copy.write_bytes(views_path.read_bytes())
    task_id = task_id_for(RUN, 0, 2)  # too easy for the base checkpoint
    with Warehouse.open(copy) as warehouse:
        warehouse.write("labels", [_relabel(task_id)])
        warehouse.write("difficulty", [_rediff(task_id)])
        rows = warehouse.query(
            "SELECT solver_checkpoint, band FROM labelled_tasks WHERE task_id = ? AND is_latest",
            [task_id],
        ).to_pylist()
        assert rows == [{"solver_checkpoint": "solver-step-10", "band": "frontier"}]
        frontier = warehouse.query(
            "SELECT task_id FROM frontier_tasks WHERE task_id = ?", [task_id]
        )
        assert frontier.num_rows == 1


def _relabel(task_id: str) -> dict:
    return {
        "label_id": content_key("label", task_id, "solver-step-10"),
        "task_id": task_id,
        "run_id": RUN,
        "iteration": 1,
        "solver_checkpoint": "solver-step-10",
        "label_source": "majority",
        "label": "2",
        "majority_share": 0.5,
        "n_samples": 4,
        "n_answered": 4,
        "n_clusters": 3,
        "cluster_sizes_json": [2, 1, 1],
        "equivalence_timeouts": 0,
        "reference_answer": "2",
        "agrees_with_reference": True,
    }


def _rediff(task_id: str) -> dict:
    return {
        "difficulty_id": content_key("difficulty", task_id, "solver-step-10"),
        "task_id": task_id,
        "run_id": RUN,
        "iteration": 1,
        "solver_checkpoint": "solver-step-10",
        "pass_rate": 0.5,
        "band": "frontier",
        "band_low": 0.3,
        "band_high": 0.8,
        "n_samples": 4,
    }
