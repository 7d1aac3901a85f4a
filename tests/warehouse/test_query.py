"""run_sql / read_sql: read-only SQL over a warehouse file, or its snapshot while written."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from warehouse import Warehouse, WarehouseError, WarehouseLockedError, read_sql, run_sql
from warehouse.snapshot import snapshot_path

from .rows import task_row


@pytest.fixture
def filled_path(warehouse_path: Path) -> Path:
    with Warehouse.open(warehouse_path) as warehouse:
        warehouse.write("tasks", [task_row(slot) for slot in range(4)])
    return warehouse_path


def test_run_sql_returns_an_arrow_table(filled_path: Path) -> None:
    result = run_sql(filled_path, "SELECT slot FROM tasks WHERE slot >= ? ORDER BY slot", [2])
    assert result.column("slot").to_pylist() == [2, 3]


def test_run_sql_cannot_modify_the_file(filled_path: Path) -> None:
    with pytest.raises(WarehouseError, match="(?i)read-only"):
        run_sql(filled_path, "DELETE FROM tasks")
    assert run_sql(filled_path, "SELECT count(*) AS n FROM tasks").column("n")[0].as_py() == 4


def test_run_sql_releases_the_file(filled_path: Path) -> None:
    run_sql(filled_path, "SELECT 1")
    with Warehouse.open(filled_path) as warehouse:  # a writer can open right after
        assert warehouse.count("tasks") == 4


def test_run_sql_on_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="no warehouse at"):
        run_sql(tmp_path / "missing.duckdb", "SELECT 1")


def test_run_sql_with_bad_sql_names_the_problem(filled_path: Path) -> None:
    with pytest.raises(WarehouseError, match="query failed.*no_such_table"):
        run_sql(filled_path, "SELECT * FROM no_such_table")


def test_run_sql_while_this_process_writes_reads_the_snapshot(filled_path: Path) -> None:
    with Warehouse.open(filled_path) as warehouse:
        warehouse.write("tasks", [task_row(4)])  # committed, but after the last snapshot
        result = read_sql(filled_path, "SELECT count(*) AS n FROM tasks")
        assert result.table.column("n").to_pylist() == [4]
        assert result.source.kind == "snapshot"
        assert result.source.writer_pid == os.getpid()
        assert result.source.path == snapshot_path(filled_path)
        warehouse.publish_snapshot()
        assert run_sql(filled_path, "SELECT count(*) AS n FROM tasks").column("n")[0].as_py() == 5
        assert warehouse.count("tasks") == 5
    assert not snapshot_path(filled_path).exists()  # the writer removed it on close
    assert read_sql(filled_path, "SELECT 1").source.kind == "live"


def test_run_sql_while_this_process_writes_without_snapshots(filled_path: Path) -> None:
    with Warehouse.open(filled_path, snapshots=False) as warehouse:
        with pytest.raises(WarehouseLockedError, match=f"being written by PID {os.getpid()}"):
            run_sql(filled_path, "SELECT 1")
        assert warehouse.count("tasks") == 4


def test_run_sql_works_on_any_duckdb_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE numbers AS SELECT range AS n FROM range(3)")
    conn.close()
    assert run_sql(path, "SELECT sum(n) AS total FROM numbers").column("total")[0].as_py() == 3
