"""The single warehouse writer.

DuckDB allows one writing process per file, so the flow owns exactly one
`Warehouse` and every stage hands it Arrow batches (or lists of dicts):

    with Warehouse.open("runs/warehouse.duckdb") as warehouse:
        inserted = warehouse.write("tasks", proposals_table)
        frontier = warehouse.query("SELECT * FROM difficulty WHERE band = 'frontier'")

Each `write` is one Arrow batch inserted with `INSERT OR IGNORE` inside one
transaction: rows whose key already exists are skipped (a re-run writes
nothing twice) and a failing batch leaves no rows behind. Columns are checked
against the live schema before anything is sent to DuckDB, so a typo gets an
error that lists the unknown and missing columns.

A second writer on the same file is refused at once with the holder's PID,
whether it is another process (DuckDB's lock) or this one (our registry).

While it holds the file, the writer publishes a read snapshot (see
`warehouse.snapshot`) when it opens and after every write to `stage_runs`,
the row each flow stage writes last: readers in other processes then see the
warehouse as of the last finished stage. `publish_snapshot()` publishes one
on demand; `snapshots=False` turns this off (e.g. for bulk loads).
`Warehouse.open_reader(path)` is the reading side: the live file when it is
free, else that snapshot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.connection import MEMORY, connect
from warehouse.errors import WarehouseError, WarehouseLockedError
from warehouse.query import connect_reader
from warehouse.schema import TABLES, current_version, latest_version, migrate
from warehouse.snapshot import ReadSource, publish_snapshot, remove_snapshot

logger = logging.getLogger(__name__)

Rows: TypeAlias = Sequence[dict[str, Any]] | pa.Table | pa.RecordBatch

# DuckDB type -> Arrow type used to build batches from Python rows.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "BOOLEAN": pa.bool_(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "TIMESTAMP": pa.timestamp("us"),
}
_FILLED_COLUMN = "created_at"
_INCOMING = "_warehouse_incoming"
# A write to these tables closes a flow stage: the moment to publish a snapshot.
SNAPSHOT_TRIGGERS: frozenset[str] = frozenset({"stage_runs"})


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a warehouse table, as the database reports it."""

    name: str
    sql_type: str
    nullable: bool

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.sql_type]


def utc_now() -> datetime:
    """Naive UTC now, the form every warehouse TIMESTAMP takes."""
    return datetime.now(UTC).replace(tzinfo=None)


class Warehouse:
    """The one connection that writes a warehouse file; also answers queries."""

    # Resolved paths held for writing by this process: DuckDB itself would let a
    # second connection in the same process share the file silently.
    _open_writers: ClassVar[set[str]] = set()
    _open_writers_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        conn: duckdb.DuckDBPyConnection,
        path: Path | str,
        *,
        read_only: bool,
        columns: dict[str, dict[str, ColumnSpec]],
        writer_key: str | None,
        snapshots: bool = False,
        source: ReadSource | None = None,
    ) -> None:
        """Use `Warehouse.open`; this wraps an already migrated connection."""
        self._conn: duckdb.DuckDBPyConnection | None = conn
        self._path = path if str(path) == MEMORY else Path(path)
        self._read_only = read_only
        self._columns = columns
        self._writer_key = writer_key
        self._snapshots = snapshots and writer_key is not None
        self._published = False
        self._source = source or ReadSource(Path(path), Path(path), "live")
        # One DuckDB connection is not safe to use from several threads at once.
        self._lock = threading.RLock()

    # ---- lifecycle -------------------------------------------------------

    @classmethod
    def open(
        cls, path: Path | str, read_only: bool = False, *, snapshots: bool = True
    ) -> Warehouse:
        """Open (creating and migrating when writable) the warehouse at `path`.

        A writer publishes read snapshots unless `snapshots` is False (see the
        module docstring). Raises `WarehouseLockedError` when another writer
        holds the file and `WarehouseError` when the path is unusable or not a
        warehouse.
        """
        writer_key = None if read_only or str(path) == MEMORY else str(Path(path).resolve())
        if writer_key is not None:
            cls._claim_writer(writer_key, path)
        try:
            conn = connect(path, read_only=read_only)
            try:
                if read_only:
                    _check_readable_version(conn, path)
                else:
                    _migrate(conn, path)
                columns = _load_columns(conn, path)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            cls._release_writer(writer_key)
            raise
        warehouse = cls(
            conn, path, read_only=read_only, columns=columns, writer_key=writer_key,
            snapshots=snapshots,
        )
        warehouse._publish_quietly()  # readers see the state before this run's first stage
        return warehouse

    @classmethod
    def open_reader(cls, path: Path | str) -> Warehouse:
        """Open the warehouse at `path` for reading, also while a run writes it.

        Reads the live file when no writer holds it, else the snapshot the
        writer published; `source` says which, and how old the snapshot is.
        """
        conn, source = connect_reader(path)
        try:
            _check_readable_version(conn, source.path)
            columns = _load_columns(conn, source.path)
        except BaseException:
            conn.close()
            raise
        return cls(
            conn, source.path, read_only=True, columns=columns, writer_key=None, source=source
        )

    @classmethod
    def _claim_writer(cls, key: str, path: Path | str) -> None:
        with cls._open_writers_lock:
            if key in cls._open_writers:
                raise WarehouseLockedError(
                    f"{path} is already open for writing in this process (PID {os.getpid()}); "
                    "reuse that Warehouse or close it first",
                    path=path,
                    pid=os.getpid(),
                )
            cls._open_writers.add(key)

    @classmethod
    def _release_writer(cls, key: str | None) -> None:
        if key is not None:
            with cls._open_writers_lock:
                cls._open_writers.discard(key)

    def close(self) -> None:
        """Close the connection (committing nothing new: writes commit as they go).

        A writer removes its snapshot first: once the file is free, readers
        read the live file, and a stale copy would only take disk space.
        """
        with self._lock:
            if self._conn is not None:
                if self._published and isinstance(self._path, Path):
                    remove_snapshot(self._path)
                self._conn.close()
                self._conn = None
                self._release_writer(self._writer_key)

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self._read_only else "writer"
        state = "closed" if self._conn is None else "open"
        return f"Warehouse({str(self._path)!r}, {mode}, {state})"

    @property
    def path(self) -> Path | str:
        return self._path

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def source(self) -> ReadSource:
        """The file this connection reads: the live warehouse or a writer's snapshot."""
        return self._source

    def columns(self, table: str) -> tuple[ColumnSpec, ...]:
        """The columns of `table` in schema order."""
        return tuple(self._table_specs(table).values())

    # ---- writing ---------------------------------------------------------

    def write(self, table: str, rows: Rows) -> int:
        """Insert `rows` into `table` in one transaction; return how many were new.

        Rows whose primary key already exists are skipped, as are repeats of a
        key inside the batch. Nullable columns may be left out; `created_at`
        is filled with the current UTC time when absent or NULL. Dict and list
        values for JSON columns are serialised for you.
        """
        batch = self._batch(table, rows)
        if batch.num_rows == 0:
            return 0
        with self._lock:
            inserted = self._insert(table, batch)
            if table in SNAPSHOT_TRIGGERS:
                self._publish_quietly()
            return inserted

    def write_all(self, tables: dict[str, Rows]) -> dict[str, int]:
        """Insert rows into several tables in ONE transaction; return the new rows per table.

        Either every table gets its rows or none does: a stage writes its rows and its
        `stage_runs` row this way, so a crash never leaves half a stage. Keys already
        present are skipped, as in `write`.
        """
        prepared = {table: self._batch(table, rows) for table, rows in tables.items()}
        batches = {table: batch for table, batch in prepared.items() if batch.num_rows}
        inserted = dict.fromkeys(tables, 0)
        with self._lock:
            conn = self._live_conn()
            conn.execute("BEGIN TRANSACTION")
            try:
                for table, batch in batches.items():
                    # Unregistered only after COMMIT or ROLLBACK: an aborted transaction
                    # refuses even that.
                    conn.register(f"{_INCOMING}_{table}", batch)
                    try:
                        [(count,)] = conn.execute(
                            f'INSERT OR IGNORE INTO "{table}" BY NAME '
                            f"SELECT * FROM {_INCOMING}_{table}"
                        ).fetchall()
                    except duckdb.Error as err:
                        raise _write_failed(table, batch, err) from err
                    inserted[table] = int(count)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            finally:
                for table in batches:
                    conn.unregister(f"{_INCOMING}_{table}")
            if SNAPSHOT_TRIGGERS & batches.keys():
                self._publish_quietly()
        return inserted

    def publish_snapshot(self) -> Path:
        """Publish a read snapshot of everything committed so far; return its path.

        Raises `WarehouseError` for a read-only or in-memory warehouse, or when
        the copy fails.
        """
        if self._read_only or not isinstance(self._path, Path):
            raise WarehouseError(
                f"only a writer of a warehouse file publishes snapshots; {self!r} is not one"
            )
        with self._lock:
            published = publish_snapshot(
                self._live_conn(),
                self._path,
                schema_version=current_version(self._live_conn()),
                published_at=utc_now(),
            )
            self._published = True
            return published

    def _publish_quietly(self) -> None:
        # A failed snapshot costs readers freshness, never the run its rows.
        if not self._snapshots:
            return
        try:
            self.publish_snapshot()
        except WarehouseError as err:
            logger.warning("%s; readers keep the previous snapshot", err)

    def _insert(self, table: str, batch: pa.Table) -> int:
        conn = self._live_conn()
        conn.register(_INCOMING, batch)
        try:
            # A plain INSERT is DuckDB's fast append path; INSERT OR IGNORE checks
            # each row for a conflict and took ~1.4x as long for 1M new rows here.
            # New rows are the common case, so try the plain one first: a batch
            # with a known key fails on its first conflicting chunk (a re-run
            # repeats whole stages) and is then sent again with OR IGNORE.
            try:
                return self._insert_in_transaction(conn, table, "INSERT")
            except duckdb.ConstraintException as err:
                if "duplicate key" not in str(err).lower():
                    raise
            return self._insert_in_transaction(conn, table, "INSERT OR IGNORE")
        except duckdb.Error as err:
            raise _write_failed(table, batch, err) from err
        finally:
            conn.unregister(_INCOMING)

    @staticmethod
    def _insert_in_transaction(conn: duckdb.DuckDBPyConnection, table: str, verb: str) -> int:
        conn.execute("BEGIN TRANSACTION")
        try:
            [(inserted,)] = conn.execute(
                f'{verb} INTO "{table}" BY NAME SELECT * FROM {_INCOMING}'
            ).fetchall()
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return int(inserted)

    # ---- reading ---------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run `sql` (with optional `?`/`$name` parameters) and return an Arrow table."""
        with self._lock:
            conn = self._live_conn()
            try:
                relation = conn.sql(sql, params=params)
                # Statements without a result (DDL, SET) give no relation.
                return relation.to_arrow_table() if relation is not None else pa.table({})
            except duckdb.Error as err:
                raise WarehouseError(f"query failed on {self._path}: {err}") from err

    def count(
        self,
        table: str,
        where: str | None = None,
        params: Sequence[Any] | dict[str, Any] | None = None,
    ) -> int:
        """Number of rows in `table`, optionally filtered by a SQL `where` clause."""
        if table != "schema_version":
            self._table_specs(table)
        sql = f'SELECT count(*) AS n FROM "{table}"' + (f" WHERE {where}" if where else "")
        return int(self.query(sql, params).column("n")[0].as_py())

    # ---- helpers ---------------------------------------------------------

    def _batch(self, table: str, rows: Rows) -> pa.Table:
        """`rows` checked against the table's columns, as one Arrow batch ready to insert."""
        if self._read_only:
            raise WarehouseError(
                f"the warehouse {self._path} was opened read-only; "
                "open it with read_only=False to write"
            )
        specs = self._table_specs(table)
        return _normalise_timestamps(_to_arrow(table, rows, specs), specs)

    def _live_conn(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            raise WarehouseError(f"the warehouse {self._path} is closed; open it again")
        return self._conn

    def _table_specs(self, table: str) -> dict[str, ColumnSpec]:
        specs = self._columns.get(table)
        if specs is None:
            raise WarehouseError(f"unknown warehouse table {table!r}; tables: {', '.join(TABLES)}")
        return specs


def _write_failed(table: str, batch: pa.Table, err: duckdb.Error) -> WarehouseError:
    return WarehouseError(
        f"writing {batch.num_rows} rows to '{table}' failed and nothing was written: {err}"
    )


def _rollback(conn: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # DuckDB may have ended it already
        conn.execute("ROLLBACK")


def _migrate(conn: duckdb.DuckDBPyConnection, path: Path | str) -> None:
    try:
        migrate(conn)
    except duckdb.Error as err:
        raise WarehouseError(
            f"cannot create the warehouse schema in {path}: {err}; point warehouse.path at "
            "a new file or an existing warehouse"
        ) from err


def _check_readable_version(conn: duckdb.DuckDBPyConnection, path: Path | str) -> None:
    version, latest = current_version(conn), latest_version()
    if version == 0:
        raise WarehouseError(
            f"{path} is a DuckDB file but not a selfplay warehouse (no schema_version table); "
            "point warehouse.path at a warehouse"
        )
    if version != latest:
        newer = version > latest
        raise WarehouseError(
            f"{path} is at schema version {version}, this selfplay reads version {latest}; "
            + ("upgrade selfplay" if newer else "open it once for writing to migrate it")
        )


def _load_columns(
    conn: duckdb.DuckDBPyConnection, path: Path | str
) -> dict[str, dict[str, ColumnSpec]]:
    rows = conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable FROM duckdb_columns() "
        "WHERE schema_name = 'main' AND database_name = current_database() "
        "ORDER BY table_name, column_index"
    ).fetchall()
    columns: dict[str, dict[str, ColumnSpec]] = {}
    for table, name, sql_type, nullable in rows:
        if table not in TABLES:
            continue
        if sql_type not in _ARROW_TYPES:
            raise WarehouseError(f"{table}.{name} has type {sql_type}, unknown to the writer")
        columns.setdefault(table, {})[name] = ColumnSpec(name, sql_type, bool(nullable))
    missing = [table for table in TABLES if table not in columns]
    if missing:
        raise WarehouseError(f"{path} lacks warehouse tables {missing}; the schema is damaged")
    return columns


def _check_columns(table: str, given: Sequence[str], specs: dict[str, ColumnSpec]) -> None:
    unknown = [name for name in given if name not in specs]
    missing = [
        spec.name
        for spec in specs.values()
        if not spec.nullable and spec.name not in given and spec.name != _FILLED_COLUMN
    ]
    duplicated = sorted(name for name, times in Counter(given).items() if times > 1)
    if not (unknown or missing or duplicated):
        return
    problems = []
    if unknown:
        problems.append(f"unknown columns {unknown}")
    if missing:
        problems.append(f"missing required columns {missing}")
    if duplicated:
        problems.append(f"duplicated columns {duplicated}")
    raise WarehouseError(
        f"rows for table '{table}' do not match its schema: {'; '.join(problems)}. "
        f"'{table}' has columns: {', '.join(specs)}"
    )


def _to_arrow(table: str, rows: Rows, specs: dict[str, ColumnSpec]) -> pa.Table:
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if isinstance(rows, pa.Table):
        _check_columns(table, rows.column_names, specs)
        return rows
    if isinstance(rows, dict | str | bytes) or not isinstance(rows, Sequence):
        raise WarehouseError(
            f"write('{table}', ...) takes a list of dicts or a pyarrow.Table, "
            f"not {type(rows).__name__}"
        )
    if len(rows) == 0:
        return pa.table({})
    names: dict[str, None] = {}  # union of keys in first-seen order
    for row in rows:
        names.update(dict.fromkeys(row))
    _check_columns(table, list(names), specs)
    json_columns = [name for name in names if specs[name].sql_type == "JSON"]
    if json_columns:
        rows = [_serialise_json(row, json_columns) for row in rows]
    schema = pa.schema([(name, specs[name].arrow_type) for name in names])
    try:
        return pa.Table.from_pylist(list(rows), schema=schema)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as err:
        raise WarehouseError(
            f"rows for table '{table}' do not fit its column types: {err}"
        ) from err


def _serialise_json(row: dict[str, Any], json_columns: list[str]) -> dict[str, Any]:
    if all(row.get(name) is None or isinstance(row[name], str) for name in json_columns):
        return row
    row = dict(row)
    for name in json_columns:
        value = row.get(name)
        if value is not None and not isinstance(value, str):
            row[name] = json.dumps(value, ensure_ascii=False)
    return row


def _normalise_timestamps(batch: pa.Table, specs: dict[str, ColumnSpec]) -> pa.Table:
    """Make timestamps naive UTC and fill `created_at` when the table has one."""
    for index, name in enumerate(batch.column_names):
        column_type = batch.schema.field(index).type
        if pa.types.is_timestamp(column_type) and column_type.tz is not None:
            # Arrow stores aware timestamps as UTC instants; dropping tz keeps UTC.
            batch = batch.set_column(
                index, name, batch.column(index).cast(pa.timestamp(column_type.unit))
            )
    if _FILLED_COLUMN not in specs:
        return batch
    now = pa.scalar(utc_now(), pa.timestamp("us"))
    if _FILLED_COLUMN not in batch.column_names:
        return batch.append_column(_FILLED_COLUMN, pa.repeat(now, batch.num_rows))
    index = batch.column_names.index(_FILLED_COLUMN)
    created = batch.column(index).cast(pa.timestamp("us"), safe=False)
    return batch.set_column(index, _FILLED_COLUMN, pc.fill_null(created, now))
