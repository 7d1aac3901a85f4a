"""Read-only access to a warehouse file, also while a run writes it (`selfplay sql`).

`connect_reader` opens the live file read-only; when a writer holds it (DuckDB
then refuses every other open, read-only included) it opens the snapshot that
writer published instead (see `warehouse.snapshot`) and says so in the
returned `ReadSource`. It never waits: a held file without a snapshot is a
`WarehouseLockedError` naming the writer's PID at once.

`run_sql` and `read_sql` open their own connection and close it after one
statement, so a reader never keeps a writer from starting for longer than its
query. Rendering the result is the CLI's job.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from warehouse.connection import MEMORY, connect
from warehouse.errors import WarehouseError, WarehouseLockedError
from warehouse.snapshot import ReadSource, read_stamp, snapshot_path


@dataclass(frozen=True)
class SqlResult:
    """A query's rows and the file they were read from (live or snapshot)."""

    table: pa.Table
    source: ReadSource


_OPEN_ATTEMPTS = 5


def connect_reader(path: Path | str) -> tuple[duckdb.DuckDBPyConnection, ReadSource]:
    """Open the live warehouse read-only, or its writer's snapshot while it is held."""
    if str(path) == MEMORY:
        return connect(MEMORY, read_only=False), ReadSource(Path(MEMORY), Path(MEMORY), "live")
    path = Path(path)
    locked: WarehouseLockedError | None = None
    # More than once: a writer that closes between our two opens removes its snapshot (the
    # live file is then free), and one that publishes while DuckDB opens the snapshot swaps
    # the file under it mid-open, which DuckDB reports as a damaged file.
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            return connect(path, read_only=True), ReadSource(path, path, "live")
        except WarehouseLockedError as err:
            locked = err
        snapshot = snapshot_path(path)
        try:
            conn = connect(snapshot, read_only=True)
        except WarehouseError:
            if snapshot.exists() and attempt == _OPEN_ATTEMPTS - 1:
                raise
            time.sleep(0.05)
            continue
        source = ReadSource(path, snapshot, "snapshot", locked.pid, read_stamp(conn))
        return conn, source
    assert locked is not None
    writer = f"PID {locked.pid}" if locked.pid is not None else "another process"
    raise WarehouseLockedError(
        f"the warehouse {path} is being written by {writer}, which has published no read "
        "snapshot yet (writers publish one when they open and after each stage); "
        "wait for the stage or the run to finish",
        path=path,
        pid=locked.pid,
    ) from locked


def read_sql(
    path: Path | str,
    sql: str,
    params: Sequence[Any] | dict[str, Any] | None = None,
) -> SqlResult:
    """Run `sql` read-only against the warehouse at `path` (or its snapshot)."""
    conn, source = connect_reader(path)
    try:
        relation = conn.sql(sql, params=params)
        table = relation.to_arrow_table() if relation is not None else pa.table({})
        return SqlResult(table, source)
    except duckdb.Error as err:
        where = path if source.kind == "live" else f"{path} (snapshot {source.path})"
        raise WarehouseError(f"query failed on {where}: {err}") from err
    finally:
        conn.close()


def run_sql(
    path: Path | str,
    sql: str,
    params: Sequence[Any] | dict[str, Any] | None = None,
) -> pa.Table:
    """Run `sql` read-only against the warehouse at `path`; return an Arrow table."""
    return read_sql(path, sql, params).table
