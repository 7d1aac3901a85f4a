"""Two real processes: a run writing the warehouse, and readers / a second writer beside it.

The writer is tests/warehouse/run_writer.py in its own process, the flow's
stand-in. While it holds the file: a second writer fails at once naming its
PID; `read_sql`, `Warehouse.open_reader` and `export_curriculum` read the last
published snapshot and never see half a stage; and the file is whole after.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from warehouse import Warehouse, WarehouseLockedError, read_sql, snapshot_path
from warehouse.export import ExportFilters, ExportOptions, export_curriculum

from .run_writer import SAMPLES, TASKS

REPO = Path(__file__).resolve().parents[2]
COUNTS = """
SELECT
    (SELECT count(*) FROM stage_runs WHERE stage = 'propose') AS proposed,
    (SELECT count(*) FROM stage_runs WHERE stage = 'solve_and_label') AS solved,
    (SELECT count(*) FROM tasks) AS tasks,
    (SELECT count(*) FROM trajectories) AS trajectories,
    (SELECT count(*) FROM labels) AS labels
"""


class WriterProcess:
    """Drives run_writer.py; every read has a deadline, so a hang fails the test instead."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.warehouse.run_writer", str(path)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # A thread owns stdout: select() on the pipe misses lines already buffered.
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.pid = int(self.expect("ready").split()[1])

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def expect(self, prefix: str, timeout: float = 60) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            pytest.fail(f"writer sent nothing for {timeout} s (waiting for {prefix!r})")
        if not line.startswith(prefix):
            self.process.kill()
            pytest.fail(f"writer said {line!r}, expected {prefix!r}: {self.process.stderr.read()}")
        return line

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def stage(self) -> int:
        self.send("stage")
        return int(self.expect("done").split()[1])

    def quit(self) -> None:
        self.send("quit")
        self.expect("closed")
        assert self.process.wait(timeout=30) == 0


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[WriterProcess]:
    process = WriterProcess(tmp_path / "run" / "warehouse.duckdb")
    yield process
    if process.process.poll() is None:
        process.process.kill()
        process.process.wait()


def _path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "warehouse.duckdb"


def _assert_whole_stages(counts: dict[str, int]) -> None:
    assert counts["tasks"] == TASKS * counts["proposed"], counts
    assert counts["trajectories"] == TASKS * SAMPLES * counts["solved"], counts
    assert counts["labels"] == TASKS * counts["solved"], counts


def test_second_writer_is_refused_at_once_naming_the_run(
    writer: WriterProcess, tmp_path: Path
) -> None:
    path = _path(tmp_path)
    writer.stage()
    started = time.monotonic()
    with pytest.raises(WarehouseLockedError) as caught:
        Warehouse.open(path)
    assert time.monotonic() - started < 5  # an error, not a wait
    assert caught.value.pid == writer.pid
    assert f"PID {writer.pid}" in str(caught.value) and str(path) in str(caught.value)


def test_readers_see_the_last_finished_stage_while_the_run_writes(
    writer: WriterProcess, tmp_path: Path
) -> None:
    path = _path(tmp_path)
    first = read_sql(path, COUNTS)
    assert first.source.kind == "snapshot" and first.source.writer_pid == writer.pid
    assert first.table.to_pylist()[0]["tasks"] == 0  # published at open, before any stage
    for expected_stages in (1, 2, 3):
        assert writer.stage() == expected_stages
        [counts] = read_sql(path, COUNTS).table.to_pylist()
        _assert_whole_stages(counts)
        assert counts["proposed"] + counts["solved"] == expected_stages
    with Warehouse.open_reader(path) as reader:
        assert reader.source.kind == "snapshot"
        assert "being written by PID" in reader.source.describe()
        assert reader.count("tasks") == 2 * TASKS
    # The snapshot reader let go of nothing the writer needs: it carries on.
    assert writer.stage() == 4
    writer.quit()
    assert not snapshot_path(path).exists()
    live = read_sql(path, COUNTS)
    assert live.source.kind == "live"
    _assert_whole_stages(live.table.to_pylist()[0])


def test_readers_racing_a_busy_writer_never_see_half_a_stage(
    writer: WriterProcess, tmp_path: Path
) -> None:
    path = _path(tmp_path)
    writer.send("burst 24")
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        [counts] = read_sql(path, COUNTS).table.to_pylist()
        _assert_whole_stages(counts)
        seen.add((counts["proposed"], counts["solved"]))
        if counts["proposed"] + counts["solved"] == 24:
            break
    assert (12, 12) in seen, f"never saw the last stage; saw {sorted(seen)}"
    assert len(seen) >= 2, "the reader saw only one state: the race was not exercised"
    for _ in range(24):
        writer.expect("done")
    writer.quit()
    with Warehouse.open(path) as reopened:  # whole and writable after the race
        assert reopened.count("tasks") == 12 * TASKS


def test_export_during_a_run_reads_the_snapshot_and_says_so(
    writer: WriterProcess, tmp_path: Path
) -> None:
    path = _path(tmp_path)
    writer.stage()
    writer.stage()
    out = tmp_path / "curriculum"
    result = export_curriculum(
        path, out, ExportFilters(bands=()), ExportOptions(near_dedup=None, decontaminate=False)
    )
    assert result.source.kind == "snapshot" and result.source.writer_pid == writer.pid
    assert result.counts["selected"] == TASKS
    assert f"being written by PID {writer.pid}" in result.card_path.read_text()
    assert writer.stage() == 3  # the export held nothing the run needed


def test_killed_writer_leaves_a_whole_file_that_readers_and_writers_reopen(
    writer: WriterProcess, tmp_path: Path
) -> None:
    path = _path(tmp_path)
    writer.stage()
    writer.stage()
    os.kill(writer.pid, signal.SIGKILL)  # no close: the stale snapshot stays behind
    writer.process.wait(timeout=30)
    assert snapshot_path(path).exists()
    result = read_sql(path, COUNTS)
    assert result.source.kind == "live"  # the lock died with the process
    _assert_whole_stages(result.table.to_pylist()[0])
    with Warehouse.open(path) as reopened:
        assert reopened.count("labels") == TASKS


# Holds the live file read-only (as a long `selfplay sql` would) until stdin closes.
READER_SCRIPT = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1], read_only=True)
print("reading", flush=True)
sys.stdin.read()
"""


def test_a_reader_on_the_live_file_keeps_a_writer_out_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    Warehouse.open(path).close()
    reader = subprocess.Popen(
        [sys.executable, "-c", READER_SCRIPT, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
        with pytest.raises(WarehouseLockedError) as caught:
            Warehouse.open(path)
        assert caught.value.pid == reader.pid
        assert "lets a writer in only when no other process has the file open" in str(caught.value)
    finally:
        reader.communicate(input="", timeout=30)
    with Warehouse.open(path) as warehouse:  # free again once the reader is gone
        assert warehouse.count("tasks") == 0
