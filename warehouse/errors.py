"""Errors raised by the warehouse.

Every message names the file involved and the fix, so the CLI can print it as
one line without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class WarehouseError(Exception):
    """A warehouse operation failed; the message says what and how to fix it."""


class WarehouseLockedError(WarehouseError):
    """The DuckDB file is held open for writing by another connection.

    `pid` is the holder's process id as DuckDB reports it (None when DuckDB
    does not say, e.g. on some network file systems).
    """

    def __init__(self, message: str, *, path: Path | str, pid: int | None) -> None:
        super().__init__(message)
        self.path = Path(path)
        self.pid = pid
