"""The schema: migrate creates every table and view, is idempotent, and upgrades in place.

The upgrade of a file written by schema version 1 is in test_migrations.py.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from warehouse import TABLES, Warehouse, WarehouseError, latest_version, migrate
from warehouse import schema as schema_module
from warehouse.views import VIEWS

from .rows import task_row


def _tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def _views(conn: duckdb.DuckDBPyConnection) -> set[str]:
    query = "SELECT view_name FROM duckdb_views() WHERE NOT internal"
    return {row[0] for row in conn.execute(query).fetchall()}


def test_migrate_creates_all_tables_views_and_records_each_version(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "fresh.duckdb"))
    assert migrate(conn) == 3
    assert _tables(conn) == set(TABLES) | {"schema_version"}
    assert _views(conn) == set(VIEWS)
    versions = conn.execute("SELECT version, applied_at FROM schema_version").fetchall()
    assert [version for version, _ in versions] == [1, 2, 3]
    assert all(applied_at is not None for _, applied_at in versions)
    conn.close()


def test_migrate_to_an_older_target_stops_there_without_views(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "v1.duckdb"))
    assert migrate(conn, target=1) == 1
    assert "rewards" not in _tables(conn) and "tasks" in _tables(conn)
    assert _views(conn) == set()  # views read v2 tables
    with pytest.raises(ValueError, match="target schema version 7 is not in 1..3"):
        migrate(conn, target=7)
    conn.close()


def test_migrate_twice_changes_nothing(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "twice.duckdb"))
    migrate(conn)
    conn.execute(
        "INSERT INTO sandbox_events (event_id, kind, detail, created_at) "
        "VALUES ('e1', 'probe', 'kept', now())"
    )
    assert migrate(conn) == 3
    assert conn.execute("SELECT count(*) FROM schema_version").fetchall() == [(3,)]
    assert conn.execute("SELECT detail FROM sandbox_events").fetchall() == [("kept",)]
    conn.close()


def test_join_columns_are_indexed(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "indexes.duckdb"))
    migrate(conn)
    indexed = {
        (table, sql.split("(")[-1].rstrip(");").strip())
        for table, sql in conn.execute("SELECT table_name, sql FROM duckdb_indexes()").fetchall()
    }
    assert ("trajectories", "task_id") in indexed
    assert ("trajectories", "run_id") in indexed
    assert ("tasks", "run_id") in indexed
    conn.close()


def test_later_version_upgrades_an_existing_file_in_place(
    warehouse_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Warehouse.open(warehouse_path) as warehouse:
        warehouse.write("tasks", [task_row(0)])

    def migrate_to_next(conn: duckdb.DuckDBPyConnection) -> None:
        conn.execute("ALTER TABLE tasks ADD COLUMN topic VARCHAR")

    next_version = latest_version() + 1
    monkeypatch.setitem(schema_module.MIGRATIONS, next_version, migrate_to_next)
    with Warehouse.open(warehouse_path) as warehouse:
        assert warehouse.count("tasks") == 1  # old rows survive the upgrade
        assert "topic" in [column.name for column in warehouse.columns("tasks")]
        versions = warehouse.query("SELECT version FROM schema_version ORDER BY version")
        assert versions.column("version").to_pylist() == [*range(1, next_version + 1)]


def test_failed_migration_leaves_the_previous_version(
    warehouse_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Warehouse.open(warehouse_path).close()

    def broken_next(conn: duckdb.DuckDBPyConnection) -> None:
        conn.execute("ALTER TABLE tasks ADD COLUMN topic VARCHAR")
        conn.execute("ALTER TABLE no_such_table ADD COLUMN x INTEGER")

    next_version = latest_version() + 1
    monkeypatch.setitem(schema_module.MIGRATIONS, next_version, broken_next)
    with pytest.raises(WarehouseError, match="no_such_table"):
        Warehouse.open(warehouse_path)
    monkeypatch.delitem(schema_module.MIGRATIONS, next_version)
    with Warehouse.open(warehouse_path) as warehouse:
        assert warehouse.count("schema_version") == next_version - 1
        assert "topic" not in [column.name for column in warehouse.columns("tasks")]


def test_file_from_newer_selfplay_is_refused(warehouse_path: Path) -> None:
    Warehouse.open(warehouse_path).close()
    conn = duckdb.connect(str(warehouse_path))
    conn.execute("INSERT INTO schema_version VALUES (99, now())")
    conn.close()
    with pytest.raises(WarehouseError, match="schema version 99.*upgrade selfplay"):
        Warehouse.open(warehouse_path)


def test_file_opens_with_plain_duckdb_and_tables_are_visible(warehouse_path: Path) -> None:
    with Warehouse.open(warehouse_path) as warehouse:
        warehouse.write("tasks", [task_row(0), task_row(1)])
    conn = duckdb.connect(str(warehouse_path), read_only=True)
    assert set(TABLES) <= _tables(conn)
    assert conn.execute("SELECT count(*) FROM tasks").fetchall() == [(2,)]
    table = conn.sql("SELECT task_id, prompt_json FROM tasks ORDER BY slot").to_arrow_table()
    assert table.num_rows == 2
    conn.close()


def test_read_only_open_of_a_plain_duckdb_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(WarehouseError, match="not a selfplay warehouse"):
        Warehouse.open(path, read_only=True)
