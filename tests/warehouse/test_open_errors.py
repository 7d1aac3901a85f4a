"""Opening failures: another process writing, unwritable paths, non-DuckDB files."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from warehouse import Warehouse, WarehouseError, WarehouseLockedError, run_sql

# The holder writes three rows, reports, then keeps the file open until stdin closes.
# It publishes no read snapshot, so readers meet the bare lock (test_concurrency.py
# covers readers of a writer that does).
HOLDER_SCRIPT = """
import sys
from warehouse import Warehouse
warehouse = Warehouse.open(sys.argv[1], snapshots=False)
warehouse.write("sandbox_events",
                [{"event_id": f"e{i}", "kind": "probe", "detail": "held"} for i in range(3)])
print("ready", flush=True)
sys.stdin.read()
"""


def _start_holder(path: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    selector = selectors.DefaultSelector()
    assert holder.stdout is not None
    selector.register(holder.stdout, selectors.EVENT_READ)
    ready = selector.select(timeout=60) and holder.stdout.readline().strip() == "ready"
    if not ready:
        holder.kill()
        _, stderr = holder.communicate()
        pytest.fail(f"holder process did not start: {stderr}")
    return holder


@pytest.fixture(scope="module")
def held_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A warehouse file held open for writing by another real process."""
    path = tmp_path_factory.mktemp("held") / "warehouse.duckdb"
    holder = _start_holder(path)
    yield path, holder.pid
    holder.communicate(input="")  # closing stdin lets the holder exit cleanly


@pytest.mark.parametrize("read_only", [False, True])
def test_other_process_holding_the_file_gives_locked_error_with_pid(
    held_path: tuple[Path, int], read_only: bool
) -> None:
    path, holder_pid = held_path
    with pytest.raises(WarehouseLockedError) as caught:
        Warehouse.open(path, read_only=read_only)
    assert caught.value.pid == holder_pid
    message = str(caught.value)
    assert f"PID {holder_pid}" in message
    assert str(path) in message
    assert "stop that process or point warehouse.path elsewhere" in message


def test_run_sql_on_a_held_file_without_snapshot_says_who_writes_it(
    held_path: tuple[Path, int],
) -> None:
    path, holder_pid = held_path
    with pytest.raises(WarehouseLockedError) as caught:
        run_sql(path, "SELECT count(*) FROM sandbox_events")
    assert caught.value.pid == holder_pid
    assert f"being written by PID {holder_pid}, which has published no read snapshot" in str(
        caught.value
    )


def test_rows_committed_before_a_killed_writer_survive(tmp_path: Path) -> None:
    path = tmp_path / "killed.duckdb"
    holder = _start_holder(path)
    os.kill(holder.pid, signal.SIGKILL)  # no close(), no checkpoint
    holder.communicate()
    with Warehouse.open(path) as warehouse:
        assert warehouse.count("sandbox_events", "detail = 'held'") == 3


def test_path_under_a_regular_file_is_unwritable(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a directory should be")
    target = blocker / "sub" / "warehouse.duckdb"
    with pytest.raises(WarehouseError, match="point warehouse.path at a location you can write"):
        Warehouse.open(target)
    assert str(target) in _message(target)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_directory_without_write_permission_is_unwritable(tmp_path: Path) -> None:
    locked_dir = tmp_path / "locked"
    locked_dir.mkdir()
    locked_dir.chmod(0o500)
    try:
        target = locked_dir / "warehouse.duckdb"
        assert "location you can write to" in _message(target)
    finally:
        locked_dir.chmod(0o700)


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs sysfs")
def test_file_system_refusing_new_files_is_unwritable() -> None:
    # sysfs refuses new files even to root, so this runs wherever the tests run.
    target = Path("/sys/kernel/warehouse.duckdb")
    message = _message(target)
    assert str(target) in message
    assert "location you can write to" in message


def test_file_that_is_not_duckdb_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "notes.duckdb"
    target.write_text("these are notes, not a database\n" * 200)
    for read_only in (False, True):
        with pytest.raises(WarehouseError, match="exists but is not a DuckDB database"):
            Warehouse.open(target, read_only=read_only)
    assert target.read_text().startswith("these are notes")  # left untouched


def test_read_only_open_of_a_missing_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "absent.duckdb"
    with pytest.raises(WarehouseError, match="no warehouse at .*absent.duckdb"):
        Warehouse.open(target, read_only=True)
    assert not target.exists()


def _message(target: Path) -> str:
    with pytest.raises(WarehouseError) as caught:
        Warehouse.open(target)
    assert not isinstance(caught.value, WarehouseLockedError)
    return str(caught.value)
