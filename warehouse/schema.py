"""Warehouse schema: versioned DDL and the in-place migrator.

Each schema version is one function in `MIGRATIONS` that upgrades a database
from the previous version; `migrate(conn)` applies the missing ones in order,
each in its own transaction together with its `schema_version` row, so a file
is always at exactly one recorded version. Version 1 creates the generate
tables; version 2 adds `rewards` and `evaluations`; version 3 adds what the
training loop writes: `checkpoints`, `training_steps` and `overlap_checks`. A
later version adds `MIGRATIONS[4]` and never edits the DDL of earlier versions,
which describe files already on disk. After migrating, `migrate` (re)creates the SQL
views of `warehouse.views`: they hold no rows, so they follow the code.

Conventions for every table:
- the first column is a content-hash key (see `warehouse.keys`), PRIMARY KEY;
- timestamps are naive UTC `TIMESTAMP`s;
- `*_json` columns use DuckDB's JSON type, which stores VARCHAR, accepts Arrow
  strings, and rejects malformed JSON at insert time;
- columns that may be NULL say so; everything else is NOT NULL, so a writer
  that forgets a field gets an error instead of a silent hole.

No FOREIGN KEY constraints: DuckDB checks them row by row on insert, forbids
`INSERT OR IGNORE` patterns that re-send parents, and forces a global write
order across stages; lineage is a join on the indexed id columns instead.
Indexes: DuckDB joins by hashing and does not need indexes for them; the ART
indexes below serve the selective look-ups the pipeline does ("every sample
of this task", "everything of this run") and cost little on bulk inserts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

import duckdb

from warehouse.errors import WarehouseError
from warehouse.views import create_views

# The tables a writer may insert into (schema_version is kept by migrate only).
TABLES: tuple[str, ...] = (
    "runs",
    "stage_runs",
    "documents",
    "tasks",
    "trajectories",
    "labels",
    "difficulty",
    "sandbox_events",
    "rewards",
    "evaluations",
    "checkpoints",
    "training_steps",
    "overlap_checks",
)

_V1_DDL = """
CREATE TABLE schema_version (
    version     INTEGER PRIMARY KEY,
    applied_at  TIMESTAMP NOT NULL
);

CREATE TABLE runs (
    run_id            VARCHAR PRIMARY KEY,
    created_at        TIMESTAMP NOT NULL,
    command           VARCHAR NOT NULL,
    config_json       JSON NOT NULL,
    config_hash       VARCHAR NOT NULL,
    seed              BIGINT NOT NULL,
    selfplay_version  VARCHAR NOT NULL
);

-- One row per completed (or failed) stage of an iteration; resume reads it.
CREATE TABLE stage_runs (
    stage_run_id  VARCHAR PRIMARY KEY,
    run_id        VARCHAR NOT NULL,
    iteration     INTEGER NOT NULL,
    stage         VARCHAR NOT NULL,
    started_at    TIMESTAMP NOT NULL,
    finished_at   TIMESTAMP NOT NULL,
    rows_written  BIGINT NOT NULL,
    status        VARCHAR NOT NULL
);

CREATE TABLE documents (
    doc_id         VARCHAR PRIMARY KEY,
    source         VARCHAR NOT NULL,
    title          VARCHAR,            -- NULL: some sources have no titles
    text           VARCHAR NOT NULL,
    n_chars        INTEGER NOT NULL,
    chunk_index    INTEGER NOT NULL,
    parent_id      VARCHAR,            -- NULL: an unchunked source document
    metadata_json  JSON NOT NULL
);

CREATE TABLE tasks (
    task_id            VARCHAR PRIMARY KEY,
    run_id             VARCHAR NOT NULL,
    iteration          INTEGER NOT NULL,
    slot               INTEGER NOT NULL,
    doc_id             VARCHAR,        -- NULL: ungrounded (R-Zero) proposals
    kind               VARCHAR NOT NULL,
    grounded           BOOLEAN NOT NULL,
    challenger_model   VARCHAR NOT NULL,
    prompt_json        JSON NOT NULL,  -- chat messages sent to the Challenger
    raw_completion     VARCHAR NOT NULL,
    parse_status       VARCHAR NOT NULL CHECK (parse_status IN ('valid', 'rejected')),
    rejection_reason   VARCHAR,
    question           VARCHAR,
    reference_answer   VARCHAR,
    options_json       JSON,
    payload_json       JSON,
    sampling_json      JSON NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    latency_s          DOUBLE NOT NULL,
    created_at         TIMESTAMP NOT NULL
);

CREATE TABLE trajectories (
    trajectory_id     VARCHAR PRIMARY KEY,
    task_id           VARCHAR NOT NULL,
    run_id            VARCHAR NOT NULL,
    iteration         INTEGER NOT NULL,
    role              VARCHAR NOT NULL CHECK (role IN ('solver', 'challenger')),
    sample_index      INTEGER NOT NULL,
    model             VARCHAR NOT NULL,
    checkpoint        VARCHAR NOT NULL,
    sampling_json     JSON NOT NULL,
    prompt_json       JSON NOT NULL,
    completion        VARCHAR NOT NULL,
    extracted_answer  VARCHAR,
    in_label_cluster  BOOLEAN,
    -- NULL: Challenger samples have no answer to judge.
    verdict           VARCHAR CHECK (verdict IN ('correct', 'incorrect', 'no_answer')),
    reward            DOUBLE,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason     VARCHAR NOT NULL,
    latency_s         DOUBLE NOT NULL,
    created_at        TIMESTAMP NOT NULL
);

CREATE TABLE labels (
    label_id               VARCHAR PRIMARY KEY,
    task_id                VARCHAR NOT NULL,
    run_id                 VARCHAR NOT NULL,
    iteration              INTEGER NOT NULL,
    solver_checkpoint      VARCHAR NOT NULL,
    label_source           VARCHAR NOT NULL CHECK (label_source IN ('majority', 'executor')),
    label                  VARCHAR,    -- NULL: no Solver sample gave an answer
    majority_share         DOUBLE NOT NULL CHECK (majority_share BETWEEN 0 AND 1),
    n_samples              INTEGER NOT NULL,
    n_answered             INTEGER NOT NULL,
    n_clusters             INTEGER NOT NULL,
    cluster_sizes_json     JSON NOT NULL,
    equivalence_timeouts   INTEGER NOT NULL,
    reference_answer       VARCHAR,
    agrees_with_reference  BOOLEAN,
    created_at             TIMESTAMP NOT NULL
);

CREATE TABLE difficulty (
    difficulty_id      VARCHAR PRIMARY KEY,
    task_id            VARCHAR NOT NULL,
    run_id             VARCHAR NOT NULL,
    iteration          INTEGER NOT NULL,
    solver_checkpoint  VARCHAR NOT NULL,
    pass_rate          DOUBLE NOT NULL CHECK (pass_rate BETWEEN 0 AND 1),
    band               VARCHAR NOT NULL CHECK (band IN ('too_easy', 'frontier', 'too_hard')),
    band_low           DOUBLE NOT NULL,
    band_high          DOUBLE NOT NULL,
    n_samples          INTEGER NOT NULL,
    created_at         TIMESTAMP NOT NULL,
    CHECK (band_low <= band_high)
);

-- The executor records escape attempts (network, file system, fork, ...).
CREATE TABLE sandbox_events (
    event_id    VARCHAR PRIMARY KEY,
    run_id      VARCHAR,
    task_id     VARCHAR,
    kind        VARCHAR NOT NULL,
    detail      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL
);

CREATE INDEX stage_runs_run_id ON stage_runs (run_id);
CREATE INDEX tasks_run_id ON tasks (run_id);
CREATE INDEX tasks_doc_id ON tasks (doc_id);
CREATE INDEX trajectories_task_id ON trajectories (task_id);
CREATE INDEX trajectories_run_id ON trajectories (run_id);
CREATE INDEX labels_task_id ON labels (task_id);
CREATE INDEX difficulty_task_id ON difficulty (task_id);
"""


# Version 2: what the reward and evaluation stages write (the views need them).
_V2_DDL = """
-- One reward per (task, role): the total and the parts it was summed from.
CREATE TABLE rewards (
    reward_id   VARCHAR PRIMARY KEY,
    task_id     VARCHAR NOT NULL,
    run_id      VARCHAR NOT NULL,
    iteration   INTEGER NOT NULL,
    role        VARCHAR NOT NULL CHECK (role IN ('challenger', 'solver')),
    reward      DOUBLE NOT NULL,
    parts_json  JSON NOT NULL,     -- e.g. {"uncertainty": 0.9, "repetition_penalty": -0.25}
    created_at  TIMESTAMP NOT NULL
);

-- One scored item of a held-out benchmark on one checkpoint; exports are
-- decontaminated against these prompts.
CREATE TABLE evaluations (
    evaluation_id  VARCHAR PRIMARY KEY,
    run_id         VARCHAR,        -- NULL: the base model, evaluated before any run
    iteration      INTEGER,        -- NULL: likewise
    checkpoint     VARCHAR NOT NULL,
    benchmark      VARCHAR NOT NULL,
    item_id        VARCHAR NOT NULL,
    prompt         VARCHAR NOT NULL,
    answer         VARCHAR,        -- NULL: the model gave no answer
    score          DOUBLE NOT NULL,
    created_at     TIMESTAMP NOT NULL
);

CREATE INDEX rewards_task_id ON rewards (task_id);
CREATE INDEX evaluations_checkpoint ON evaluations (checkpoint);
"""


# Version 3: what `selfplay run` writes as it trains both roles over iterations.
_V3_DDL = """
-- One trained checkpoint per (run, iteration, role), with the weights it started from.
CREATE TABLE checkpoints (
    checkpoint_id    VARCHAR PRIMARY KEY,
    run_id           VARCHAR NOT NULL,
    iteration        INTEGER NOT NULL,
    role             VARCHAR NOT NULL CHECK (role IN ('challenger', 'solver')),
    path             VARCHAR NOT NULL,
    parent           VARCHAR NOT NULL,  -- the checkpoint path or model id it was trained from
    steps            INTEGER NOT NULL,  -- GRPO optimiser steps; 0: nothing to train on
    created_at       TIMESTAMP NOT NULL
);

-- One GRPO optimiser step, as TRL logged it.
CREATE TABLE training_steps (
    training_step_id  VARCHAR PRIMARY KEY,
    run_id            VARCHAR NOT NULL,
    iteration         INTEGER NOT NULL,
    role              VARCHAR NOT NULL CHECK (role IN ('challenger', 'solver')),
    step              INTEGER NOT NULL,
    loss              DOUBLE NOT NULL,
    reward_mean       DOUBLE NOT NULL,
    reward_std        DOUBLE NOT NULL,
    kl                DOUBLE,          -- NULL: no KL term (training.beta = 0)
    entropy           DOUBLE,
    step_seconds      DOUBLE NOT NULL,
    created_at        TIMESTAMP NOT NULL
);

-- Decontamination of one evaluation against the tasks trained on so far (13-gram rule).
CREATE TABLE overlap_checks (
    overlap_check_id      VARCHAR PRIMARY KEY,
    run_id                VARCHAR NOT NULL,
    iteration             INTEGER NOT NULL,
    tasks_checked         BIGINT NOT NULL,
    items_checked         BIGINT NOT NULL,
    overlapping_items     BIGINT NOT NULL,
    overlapping_ids_json  JSON NOT NULL,
    ngram                 INTEGER NOT NULL,
    created_at            TIMESTAMP NOT NULL
);

CREATE INDEX checkpoints_run_id ON checkpoints (run_id);
CREATE INDEX training_steps_run_id ON training_steps (run_id);
"""


def _migrate_to_v1(conn: duckdb.DuckDBPyConnection) -> None:
    """Create every table of schema version 1 in an empty database."""
    conn.execute(_V1_DDL)


def _migrate_to_v2(conn: duckdb.DuckDBPyConnection) -> None:
    """Add the reward and evaluation tables; v1 tables and their rows stay as they are."""
    conn.execute(_V2_DDL)


def _migrate_to_v3(conn: duckdb.DuckDBPyConnection) -> None:
    """Add the training tables; earlier tables and their rows stay as they are."""
    conn.execute(_V3_DDL)


# version -> function that upgrades a database from version - 1 to version.
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {
    1: _migrate_to_v1,
    2: _migrate_to_v2,
    3: _migrate_to_v3,
}


def latest_version() -> int:
    """The schema version this code writes."""
    return max(MIGRATIONS)


def current_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The version recorded in the database; 0 when it has no schema yet."""
    # fetchall, not fetchone: DuckDB 2.0 keeps a half-read result open and then
    # refuses relation calls (conn.sql) on the connection.
    [(has_table,)] = conn.execute(
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE schema_name = 'main' AND table_name = 'schema_version'"
    ).fetchall()
    if has_table == 0:
        return 0
    [(version,)] = conn.execute("SELECT max(version) FROM schema_version").fetchall()
    return int(version) if version is not None else 0


def migrate(conn: duckdb.DuckDBPyConnection, target: int | None = None) -> int:
    """Create or upgrade the schema in place to `target` (default: latest); return it.

    Idempotent: on a database already at the target version it changes no table.
    Views are (re)created only at the latest version, whose tables they read.
    """
    version = current_version(conn)
    latest = latest_version()
    target = latest if target is None else target
    if version > latest:
        raise WarehouseError(
            f"the warehouse is at schema version {version} but this selfplay only knows "
            f"up to {latest}; upgrade selfplay or point warehouse.path at another file"
        )
    if not 1 <= target <= latest:
        raise ValueError(f"target schema version {target} is not in 1..{latest}")
    for step in range(version + 1, target + 1):
        _in_transaction(conn, functools.partial(_apply, version=step))
    if target == latest:
        _in_transaction(conn, create_views)
    return max(version, target)


def _apply(conn: duckdb.DuckDBPyConnection, version: int) -> None:
    MIGRATIONS[version](conn)
    applied_at = datetime.now(UTC).replace(tzinfo=None)
    conn.execute("INSERT INTO schema_version VALUES (?, ?)", [version, applied_at])


def _in_transaction(
    conn: duckdb.DuckDBPyConnection, apply: Callable[[duckdb.DuckDBPyConnection], None]
) -> None:
    conn.execute("BEGIN TRANSACTION")
    try:
        apply(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
