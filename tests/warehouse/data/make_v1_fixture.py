"""Write `warehouse_v1.duckdb.gz`, a warehouse as schema version 1 wrote it.

The migration test upgrades a copy of that file and checks that no row is lost.
The file was written by the v1 `Warehouse` itself (before schema v2 existed),
so it is the real on-disk form, not a re-creation; its row counts are recorded
in `warehouse_v1.json` beside it. It is stored gzipped: DuckDB files are
mostly empty blocks (6.5 MB on disk, 20 kB compressed). Re-running this script needs that v1 code:

    git stash  # or check out the last commit whose latest_version() is 1
    python -m tests.warehouse.data.make_v1_fixture
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from pathlib import Path

from tests.warehouse.pipeline import (
    TaskSpec,
    document_row,
    iteration_rows,
    run_row,
    sandbox_event_row,
    task_id_for,
    write_iteration,
)
from warehouse import Warehouse, content_key, latest_version

HERE = Path(__file__).parent
FIXTURE = HERE / "warehouse_v1.duckdb.gz"
RUN_ID = content_key("run", "v1-fixture")
DOC_ID = content_key("document", "v1-fixture")


def fixture_specs(iteration: int) -> list[TaskSpec]:
    return [
        TaskSpec(f"What is {iteration} + 2?", str(iteration + 2), 4),
        TaskSpec(f"What is {iteration} * 7?", str(iteration * 7), 2, doc_id=DOC_ID),
        TaskSpec(
            "Which planet is largest? A) Mars B) Jupiter",
            "B",
            1,
            kind="mcq",
            doc_id=DOC_ID,
            reference_answer="A",
        ),
        TaskSpec("garbled", None, 0, valid=False),
    ]


def main() -> None:
    if latest_version() != 1:
        raise SystemExit("run this with the schema-v1 code (see the module docstring)")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "warehouse_v1.duckdb"
        counts = _write_v1(path)
        with path.open("rb") as raw, gzip.GzipFile(FIXTURE, "wb", mtime=0) as packed:
            shutil.copyfileobj(raw, packed)
    (HERE / "warehouse_v1.json").write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes): {counts}")


def _write_v1(path: Path) -> dict[str, int]:
    with Warehouse.open(path) as warehouse:
        warehouse.write("runs", [run_row(RUN_ID)])
        warehouse.write("documents", [document_row(DOC_ID, "Jupiter is the largest planet.")])
        for iteration in (0, 1):
            write_iteration(
                warehouse,
                RUN_ID,
                iteration,
                iteration_rows(RUN_ID, iteration, fixture_specs(iteration)),
            )
        warehouse.write(
            "sandbox_events", [sandbox_event_row(RUN_ID, task_id_for(RUN_ID, 0, 0), "network", 0)]
        )
        tables = [row["name"] for row in warehouse.query("SHOW TABLES").to_pylist()]
        return {table: warehouse.count(table) for table in tables}


if __name__ == "__main__":
    main()
