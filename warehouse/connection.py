"""Opening a DuckDB file, with DuckDB's errors turned into warehouse errors.

DuckDB lets one process hold a file for writing; every other process, even a
read-only one, fails at once with an IO error naming the holder's PID. We turn
that and the other open failures (unwritable path, not a DuckDB file, missing
file) into `WarehouseError`s that say what to do.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import duckdb

from warehouse.errors import WarehouseError, WarehouseLockedError

MEMORY = ":memory:"
WRITER_WAIT_S = 2.0

# e.g. 'Conflicting lock is held in /usr/bin/python3.11 (PID 3810) by user root.'
_LOCK_HOLDER = re.compile(r"held in (?P<program>.*?) ?\(PID (?P<pid>\d+)\)")


def parse_lock_holder(message: str) -> tuple[int | None, str | None]:
    """Return (pid, program) of the lock holder named in a DuckDB lock error."""
    match = _LOCK_HOLDER.search(message)
    if match is None:
        match_pid = re.search(r"PID (\d+)", message)
        return (int(match_pid.group(1)) if match_pid else None), None
    return int(match.group("pid")), (match.group("program") or None)


def connect(path: Path | str, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open `path` with DuckDB, raising `WarehouseError` with a fix on failure.

    For writing, missing parent directories are created first.
    """
    if str(path) == MEMORY:
        return duckdb.connect(MEMORY)
    path = Path(path)
    if read_only and not path.exists():
        raise WarehouseError(
            f"no warehouse at {path}; run the pipeline first or point warehouse.path "
            "at an existing warehouse file"
        )
    if not read_only:
        _make_parent(path)
    # A reader (`selfplay sql`, `report`, `export`) holds the live file for one statement; a
    # writer that starts in that moment waits it out rather than failing. A writer holding
    # the file is still an error, after WRITER_WAIT_S.
    deadline = time.monotonic() + WRITER_WAIT_S
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.ConnectionException as err:
            # DuckDB shares one database instance per file inside a process and
            # refuses a second connection with another mode (read-only vs. write).
            raise WarehouseLockedError(
                f"{path} is already open in this process (PID {os.getpid()}) in another "
                "mode; reuse that Warehouse or close it first",
                path=path,
                pid=os.getpid(),
            ) from err
        except duckdb.Error as err:
            held = "Could not set lock" in str(err)
            if read_only or not held or time.monotonic() >= deadline:
                raise _translate_open_error(path, err, read_only) from err
        time.sleep(0.1)


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WarehouseError(
            f"cannot create the directory for the warehouse {path}: {err.strerror or err}; "
            "point warehouse.path at a location you can write to"
        ) from err


def _translate_open_error(path: Path, err: duckdb.Error, read_only: bool) -> WarehouseError:
    message = str(err)
    if "Could not set lock" in message:
        pid, program = parse_lock_holder(message)
        holder = f"PID {pid}" if pid is not None else "an unknown PID"
        if program:
            holder += f", {program}"
        # A writer is also kept out by readers (selfplay sql / export on the live file).
        what = (
            f"is open for writing by another process ({holder})"
            if read_only
            else f"is open in another process ({holder}), and DuckDB lets a writer in only "
            "when no other process has the file open"
        )
        return WarehouseLockedError(
            f"{path} {what}; stop that process or point warehouse.path elsewhere",
            path=path,
            pid=pid,
        )
    if "not a valid DuckDB database" in message:
        return WarehouseError(
            f"{path} exists but is not a DuckDB database; point warehouse.path at a new "
            "file or an existing warehouse"
        )
    if "Cannot open file" in message or "Permission denied" in message:
        detail = message.rsplit(":", 1)[-1].strip()
        return WarehouseError(
            f"cannot open the warehouse {path} for writing ({detail}); point "
            "warehouse.path at a location you can write to"
        )
    return WarehouseError(f"cannot open the warehouse {path}: {message}")
