"""The DuckDB warehouse: schema and migrations, the single writer, views, curriculum export.

Every task, sample, label and difficulty statistic the pipeline makes is a row
here, keyed by a content hash (`content_key`) so a re-run writes nothing twice.
Readers (`read_sql`, `Warehouse.open_reader`, `export_curriculum`) work while a
run writes the file, through the snapshots the writer publishes. This package
never calls a model. docs/warehouse.md describes every table and view.
"""

from warehouse.errors import WarehouseError, WarehouseLockedError
from warehouse.keys import content_key
from warehouse.query import SqlResult, read_sql, run_sql
from warehouse.schema import TABLES, latest_version, migrate
from warehouse.snapshot import ReadSource, snapshot_path
from warehouse.views import VIEWS
from warehouse.writer import ColumnSpec, Warehouse, utc_now

__all__ = [
    "TABLES",
    "VIEWS",
    "ColumnSpec",
    "ReadSource",
    "SqlResult",
    "Warehouse",
    "WarehouseError",
    "WarehouseLockedError",
    "content_key",
    "latest_version",
    "migrate",
    "read_sql",
    "run_sql",
    "snapshot_path",
    "utc_now",
]
