"""Opening a warehouse written by schema version 1 upgrades it in place without losing rows.

`data/warehouse_v1.duckdb.gz` was written by the v1 `Warehouse` itself, before
schema v2 existed (see data/make_v1_fixture.py); its row counts at the time
are in data/warehouse_v1.json.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from warehouse import VIEWS, Warehouse, WarehouseError, latest_version, migrate, run_sql

from .pipeline import TaskSpec, iteration_rows, reward_row, run_row

DATA = Path(__file__).parent / "data"
V1_TABLES = (
    "runs",
    "stage_runs",
    "documents",
    "tasks",
    "trajectories",
    "labels",
    "difficulty",
    "sandbox_events",
)


@pytest.fixture
def v1_path(tmp_path: Path) -> Path:
    path = tmp_path / "old" / "warehouse.duckdb"
    path.parent.mkdir()
    with gzip.open(DATA / "warehouse_v1.duckdb.gz", "rb") as packed, path.open("wb") as raw:
        shutil.copyfileobj(packed, raw)
    return path


def _dump(path: Path, tables: tuple[str, ...]) -> dict[str, list[tuple]]:
    """Every row of `tables`, sorted, straight from DuckDB (no warehouse code involved)."""
    conn = duckdb.connect(str(path), read_only=True)
    try:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall()) for table in tables
        }
    finally:
        conn.close()


def test_fixture_is_a_version_1_file(v1_path: Path) -> None:
    conn = duckdb.connect(str(v1_path), read_only=True)
    assert conn.execute("SELECT max(version) FROM schema_version").fetchall() == [(1,)]
    tables = {row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "rewards" not in tables and "evaluations" not in tables
    conn.close()


def test_v1_file_is_upgraded_in_place_without_losing_a_row(v1_path: Path) -> None:
    recorded = json.loads((DATA / "warehouse_v1.json").read_text())
    before = _dump(v1_path, V1_TABLES)
    assert {table: len(rows) for table, rows in before.items()} == {
        table: recorded[table] for table in V1_TABLES
    }
    with Warehouse.open(v1_path) as warehouse:
        versions = warehouse.query("SELECT version FROM schema_version ORDER BY version")
        assert versions.column("version").to_pylist() == [1, 2, 3]
        assert warehouse.count("rewards") == 0 and warehouse.count("checkpoints") == 0
    assert _dump(v1_path, V1_TABLES) == before  # every row, every value, unchanged


def test_upgraded_file_takes_v2_rows_and_answers_the_views(v1_path: Path) -> None:
    with Warehouse.open(v1_path) as warehouse:
        [task] = warehouse.query(
            "SELECT task_id, run_id FROM tasks WHERE parse_status = 'valid' LIMIT 1"
        ).to_pylist()
        reward = reward_row(task["run_id"], task["task_id"], 0, {"uncertainty": 0.5})
        assert warehouse.write("rewards", [reward]) == 1
        frontier = warehouse.query("SELECT count(*) AS n FROM frontier_tasks")
        assert frontier.column("n")[0].as_py() == 2  # one "x * 7" task per iteration
        for name in VIEWS:
            warehouse.query(f'SELECT * FROM "{name}"')
    parts = run_sql(v1_path, "SELECT part, value FROM challenger_reward_parts").to_pylist()
    assert parts == [{"part": "uncertainty", "value": 0.5}]


def test_v1_file_opened_read_only_asks_for_a_writer_to_migrate_it(v1_path: Path) -> None:
    with pytest.raises(WarehouseError, match="schema version 1.*open it once for writing"):
        Warehouse.open(v1_path, read_only=True)
    assert _dump(v1_path, ("schema_version",))["schema_version"][0][0] == 1  # untouched


def test_v1_file_written_now_by_the_frozen_v1_ddl_upgrades_too(tmp_path: Path) -> None:
    # The same path the fixture takes, at any size: build v1 with migrate(target=1),
    # fill it through plain SQL, then let the current writer upgrade it.
    path = tmp_path / "built_v1.duckdb"
    conn = duckdb.connect(str(path))
    assert migrate(conn, target=1) == 1
    conn.close()
    run = "run-v1"
    specs = [TaskSpec(f"What is {i} + {i}?", str(2 * i), i % 5) for i in range(40)]
    rows = iteration_rows(run, 0, specs)
    # Write the v1 rows with a v1-only writer: the current one on a file it may not migrate.
    _write_v1_rows(path, run, rows)
    before = _dump(path, V1_TABLES)
    with Warehouse.open(path) as warehouse:
        assert warehouse.count("tasks") == 40
        assert warehouse.count("trajectories") == 40 * 4
    assert _dump(path, V1_TABLES) == before
    assert latest_version() == 3


def _write_v1_rows(path: Path, run: str, rows: dict[str, list[dict]]) -> None:
    """Insert rows into a v1 file through DuckDB alone, as the v1 writer did."""
    import pyarrow as pa

    conn = duckdb.connect(str(path))
    try:
        for table, table_rows in {"runs": [run_row(run)], **rows}.items():
            batch = pa.Table.from_pylist([_json_cells(row) for row in table_rows])
            if "created_at" not in batch.column_names:
                batch = batch.append_column(
                    "created_at", pa.array([run_row(run)["created_at"]] * batch.num_rows)
                )
            conn.register("incoming", batch)
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
            conn.unregister("incoming")
    finally:
        conn.close()


def _json_cells(row: dict) -> dict:
    return {
        key: json.dumps(value) if isinstance(value, list | dict) else value
        for key, value in row.items()
    }
