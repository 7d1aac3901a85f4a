"""End to end: the `generate` flow and the `selfplay` CLI on a tiny real model, real vLLM,
real math-verify workers and a real DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from flows.cli import main
from tests.conftest import TINY_PROPOSALS

TASKS, SAMPLES = 9, 6
KINDS = ("math", "mcq", "code_o")


def _generate(tiny_model: Path, warehouse: Path, *extra: str):
    return CliRunner().invoke(
        main,
        [
            "generate",
            "--tasks",
            str(TASKS),
            "--samples",
            str(SAMPLES),
            "--warehouse",
            str(warehouse),
            "--set",
            f"model.challenger={tiny_model}",
            "--set",
            f"model.solver={tiny_model}",
            "--set",
            "sampling.challenger.max_tokens=48",
            "--set",
            "sampling.solver.max_tokens=48",
            # The tiny model's proposal is near-certain token by token; a cooler Challenger
            # keeps the one-in-many garbled sample out of a test that counts parses.
            "--set",
            "sampling.challenger.temperature=0.7",
            # Free sampling, so that the mcq slots show the parser's rejections.
            "--set",
            "generate.constrained_format=false",
            "--set",
            f"generate.kinds=[{','.join(KINDS)}]",
            *extra,
        ],
        catch_exceptions=False,
    )


@pytest.fixture(scope="module")
def generated(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    warehouse = tmp_path_factory.mktemp("run") / "selfplay.duckdb"
    result = _generate(tiny_model, warehouse)
    assert result.exit_code == 0, result.output
    return warehouse, result.output


def _rows(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.vllm
def test_every_proposal_is_a_task_row_with_its_parse_outcome(generated):
    warehouse, output = generated
    assert _rows(warehouse, "SELECT count(*) FROM runs") == [(1,)]
    tasks = _rows(
        warehouse,
        "SELECT kind, parse_status, rejection_reason, question, reference_answer, raw_completion "
        "FROM tasks ORDER BY slot",
    )
    assert len(tasks) == TASKS
    # Kinds go round-robin. The tiny model always writes the maths format, so math
    # proposals parse and the others are rejected: mcq for its missing options block.
    assert [t[0] for t in tasks] == list(KINDS) * (TASKS // len(KINDS))
    math_tasks = [t for t in tasks if t[0] == "math"]
    assert sum(t[1] == "valid" for t in math_tasks) >= len(math_tasks) - 1
    for _kind, status, reason, question, answer, raw in tasks:
        assert raw, "the raw Challenger completion is kept"
        if status == "valid":
            assert question == "What is 2 + 3?" and answer in {"5", "6"}
            assert reason is None
        else:
            assert reason is not None and question is None
    assert any(t[2] == "missing_options" for t in tasks if t[0] == "mcq")
    # No program in a maths-shaped completion: the code kind says so.
    assert all(t[1] == "rejected" and t[2] for t in tasks if t[0] == "code_o")
    summary = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in output.splitlines()
        if line.count("│") == 3
    }
    assert summary["proposals"] == str(TASKS)
    assert summary["valid"] == str(sum(t[1] == "valid" for t in tasks))


@pytest.mark.vllm
def test_solver_samples_labels_and_bands(generated):
    warehouse, _ = generated
    (valid,) = _rows(warehouse, "SELECT count(*) FROM tasks WHERE parse_status = 'valid'")[0]
    assert valid > 0
    assert _rows(warehouse, "SELECT count(*) FROM trajectories WHERE role = 'solver'") == [
        (valid * SAMPLES,)
    ]
    answers = {a for (a,) in _rows(warehouse, "SELECT DISTINCT extracted_answer FROM trajectories")}
    assert answers <= {"5", "6", None} and answers & {"5", "6"}
    labels = _rows(
        warehouse,
        "SELECT l.label, l.majority_share, l.n_samples, l.agrees_with_reference, "
        "l.reference_answer, d.pass_rate, d.band FROM labels l JOIN difficulty d USING (task_id)",
    )
    assert len(labels) == valid
    for label, share, n, agrees, reference, pass_rate, band in labels:
        assert n == SAMPLES and pass_rate == share
        assert 1 / SAMPLES <= share <= 1
        expected = "too_easy" if share > 0.8 else "frontier" if share >= 0.3 else "too_hard"
        assert band == expected
        assert agrees == (label == reference)
    # The majority label is what most samples said: verdict 'correct' counts match p̂·m.
    mismatched = _rows(
        warehouse,
        "SELECT l.task_id FROM labels l JOIN trajectories t USING (task_id) "
        "GROUP BY l.task_id, l.majority_share "
        "HAVING count(*) FILTER (WHERE t.verdict = 'correct') "
        "  != round(l.majority_share * count(*))",
    )
    assert mismatched == []


@pytest.mark.vllm
def test_lineage_joins_from_sample_to_run_and_document(generated, tiny_model: Path):
    warehouse, _ = generated
    orphans = _rows(
        warehouse,
        "SELECT count(*) FROM trajectories t LEFT JOIN tasks k USING (task_id) "
        "LEFT JOIN runs r ON r.run_id = k.run_id WHERE k.task_id IS NULL OR r.run_id IS NULL",
    )
    assert orphans == [(0,)]
    grounded = _rows(
        warehouse,
        "SELECT count(*), count(d.doc_id) FROM tasks k LEFT JOIN documents d USING (doc_id) "
        "WHERE k.grounded",
    )
    assert grounded[0][0] > 0 and grounded[0][0] == grounded[0][1]
    stages = _rows(warehouse, "SELECT stage, status FROM stage_runs ORDER BY started_at")
    assert stages == [("propose", "completed"), ("solve_and_label", "completed")]
    models = _rows(warehouse, "SELECT DISTINCT model, checkpoint FROM trajectories")
    assert models == [(str(tiny_model.resolve()), str(tiny_model.resolve()))]


@pytest.mark.vllm
def test_rewriting_the_same_rows_inserts_nothing(generated):
    from warehouse.writer import Warehouse

    warehouse, _ = generated
    with Warehouse.open(warehouse) as store:
        for table in ("tasks", "trajectories", "labels", "difficulty"):
            rows = store.query(f"SELECT * FROM {table}")
            assert store.write(table, rows) == 0, table


@pytest.mark.vllm
def test_sql_command_prints_a_table(generated):
    warehouse, _ = generated
    result = CliRunner().invoke(
        main,
        [
            "sql",
            "SELECT kind, count(*) AS n FROM tasks GROUP BY kind ORDER BY kind",
            "--warehouse",
            str(warehouse),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "kind" in result.output and "math" in result.output and "mcq" in result.output
    assert "code_o" in result.output and "3 rows" in result.output


def test_proposals_fixture_is_well_formed():
    from selfplay.kinds import get_kind

    for text in TINY_PROPOSALS:
        assert get_kind("math").parse_proposal(text).valid
