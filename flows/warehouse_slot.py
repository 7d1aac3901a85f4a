"""One flow run per warehouse file at a time, queued by a Prefect global concurrency limit.

DuckDB lets one process write a file; a second writer fails at once (WarehouseLockedError).
For flows started by schedules that is the wrong answer: two scheduled runs should take
turns. Each flow therefore holds the single slot of a limit named after its warehouse file
while it has the file open. The slot is a lease the holder keeps renewing, so a killed run
frees it after `LEASE_SECONDS`; the limit shows under Concurrency in the UI.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from prefect import get_client, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

LEASE_SECONDS = 120


def limit_name(warehouse_path: Path | str) -> str:
    resolved = Path(warehouse_path).expanduser().resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    return f"warehouse-{resolved.stem[:40]}-{digest}"


def ensure_limit(warehouse_path: Path | str) -> str:
    """Create the warehouse's limit (one slot) if the server has none; return its name."""
    name = limit_name(warehouse_path)
    # ObjectAlreadyExists: another run created it between the upsert's read and create.
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
    return name


@contextmanager
def warehouse_slot(warehouse_path: Path | str, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the warehouse's slot; wait (up to `timeout_s`, None: as long as it takes) for it."""
    name = ensure_limit(warehouse_path)
    get_run_logger().info("waiting for the warehouse slot %s (one writer per file)", name)
    with concurrency(name, occupy=1, timeout_seconds=timeout_s, lease_duration=LEASE_SECONDS):
        yield
