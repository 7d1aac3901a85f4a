"""Read snapshots: when the writer publishes them, what they hold, and that publishing is safe."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from warehouse import ReadSource, Warehouse, WarehouseError, read_sql, snapshot_path, utc_now

from .rows import task_row

# Tries to open the file for writing from another process; prints what happened.
PROBE = """
import sys, duckdb
try:
    duckdb.connect(sys.argv[1]).close()
    print("opened")
except duckdb.IOException as err:
    print("locked" if "Could not set lock" in str(err) else f"other: {err}")
"""


def _probe(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_snapshot_path_sits_beside_the_warehouse() -> None:
    assert snapshot_path("runs/selfplay.duckdb") == Path("runs/selfplay.snapshot.duckdb")
    assert snapshot_path("/tmp/warehouse") == Path("/tmp/warehouse.snapshot")


def test_publishing_keeps_the_writer_lock(warehouse_path: Path) -> None:
    # POSIX drops every fcntl lock of a process when it closes *any* descriptor
    # of the file; a copy made inside the writer process would let others in.
    with Warehouse.open(warehouse_path) as warehouse:
        for _ in range(2):
            warehouse.publish_snapshot()
        assert _probe(warehouse_path) == "locked"
        warehouse.write("tasks", [task_row(0)])  # and the writer still writes
    assert _probe(warehouse_path) == "opened"


def test_snapshot_is_stamped_and_holds_tables_and_views(warehouse_path: Path) -> None:
    before = utc_now() - timedelta(seconds=1)
    with Warehouse.open(warehouse_path) as warehouse:
        warehouse.write("tasks", [task_row(slot) for slot in range(3)])
        published = warehouse.publish_snapshot()
        conn = duckdb.connect(str(published), read_only=True)
        [(at, source, pid, version)] = conn.execute(
            "SELECT published_at, source_path, writer_pid, schema_version FROM snapshot_info"
        ).fetchall()
        assert conn.execute("SELECT count(*) FROM tasks").fetchall() == [(3,)]
        assert conn.execute("SELECT count(*) FROM frontier_tasks").fetchall() == [(0,)]
        conn.close()
    assert at >= before and source == str(warehouse_path)
    assert pid == os.getpid() and version == 3
    assert not list(warehouse_path.parent.glob(".*.tmp*"))  # no scratch copy left


def test_stage_runs_writes_publish_and_other_writes_do_not(warehouse_path: Path) -> None:
    with Warehouse.open(warehouse_path) as warehouse:
        warehouse.write("tasks", [task_row(0)])
        assert _tasks_seen_by_readers(warehouse_path) == 0
        warehouse.write(
            "stage_runs",
            [
                {
                    "stage_run_id": "s0",
                    "run_id": "r",
                    "iteration": 0,
                    "stage": "propose",
                    "started_at": datetime(2025, 1, 1),
                    "finished_at": datetime(2025, 1, 1),
                    "rows_written": 1,
                    "status": "completed",
                }
            ],
        )
        assert _tasks_seen_by_readers(warehouse_path) == 1


def _tasks_seen_by_readers(path: Path) -> int:
    return int(read_sql(path, "SELECT count(*) AS n FROM tasks").table["n"][0].as_py())


def test_snapshots_off_publishes_nothing(warehouse_path: Path) -> None:
    with Warehouse.open(warehouse_path, snapshots=False) as warehouse:
        warehouse.write("tasks", [task_row(0)])
        assert not snapshot_path(warehouse_path).exists()


def test_a_failed_publish_warns_and_the_run_keeps_writing(
    warehouse_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot_path(warehouse_path).mkdir(parents=True)  # a folder where the file should go
    with (
        caplog.at_level(logging.WARNING, logger="warehouse.writer"),
        Warehouse.open(warehouse_path) as warehouse,
    ):
        assert warehouse.write("tasks", [task_row(0)]) == 1
        with pytest.raises(WarehouseError, match="cannot publish a read snapshot"):
            warehouse.publish_snapshot()
    assert "readers keep the previous snapshot" in caplog.text
    with Warehouse.open(warehouse_path, snapshots=False) as reopened:
        assert reopened.count("tasks") == 1


def test_only_a_file_writer_publishes(warehouse_path: Path) -> None:
    Warehouse.open(warehouse_path).close()
    with (
        Warehouse.open(warehouse_path, read_only=True) as reader,
        pytest.raises(WarehouseError, match="only a writer of a warehouse file"),
    ):
        reader.publish_snapshot()
    with Warehouse.open(":memory:") as memory, pytest.raises(WarehouseError, match="only a writer"):
        memory.publish_snapshot()


def test_read_source_describes_itself() -> None:
    live = ReadSource(Path("w.duckdb"), Path("w.duckdb"), "live")
    assert live.describe() == "read the live warehouse w.duckdb"
    published = datetime(2025, 1, 1, 12, 0, 0)
    snapshot = ReadSource(Path("w.duckdb"), Path("w.snapshot.duckdb"), "snapshot", 42, published)
    text = snapshot.describe(now=published + timedelta(seconds=90))
    assert text == (
        "w.duckdb is being written by PID 42; read its snapshot published at "
        "2025-01-01 12:00:00 UTC, 90 s old (rows of the stage in progress are not in it)"
    )
