"""Warehouse.write: idempotent inserts, column checks, one transaction per batch."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from warehouse import Warehouse, WarehouseError, WarehouseLockedError, content_key

from .rows import difficulty_row, run_row, task_row, trajectories_table


def test_write_returns_inserted_count_and_repeat_inserts_nothing(warehouse: Warehouse) -> None:
    rows = [task_row(slot) for slot in range(5)]
    assert warehouse.write("tasks", rows) == 5
    assert warehouse.write("tasks", rows) == 0
    assert warehouse.count("tasks") == 5


def test_mixed_batch_inserts_only_new_rows(warehouse: Warehouse) -> None:
    warehouse.write("tasks", [task_row(slot) for slot in range(3)])
    changed_old = task_row(1) | {"question": "a re-run may word it differently"}
    assert warehouse.write("tasks", [changed_old, task_row(3), task_row(4)]) == 2
    assert warehouse.count("tasks") == 5
    kept = warehouse.query("SELECT question FROM tasks WHERE slot = 1").column("question")
    assert kept.to_pylist() == ["What is 1 + 1?"]  # the first write wins


def test_repeated_key_inside_one_batch_is_written_once(warehouse: Warehouse) -> None:
    assert warehouse.write("tasks", [task_row(0), task_row(0), task_row(1)]) == 2


def test_arrow_table_is_accepted(warehouse: Warehouse) -> None:
    assert warehouse.write("trajectories", trajectories_table(10)) == 10
    assert warehouse.write("trajectories", trajectories_table(10, first=5)) == 5
    assert warehouse.count("trajectories", "sample_index >= ?", [10]) == 5


def test_large_trajectories_batch_writes_in_one_call(warehouse: Warehouse) -> None:
    batch = trajectories_table(100_000)
    assert warehouse.write("trajectories", batch) == 100_000
    assert warehouse.count("trajectories") == 100_000
    assert warehouse.count("trajectories", "created_at IS NULL") == 0


def test_created_at_is_filled_when_absent_or_null(warehouse: Warehouse) -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    explicit = datetime(2024, 1, 1, 12, 0)
    warehouse.write(
        "runs",
        [run_row(0), run_row(1) | {"created_at": None}, run_row(2) | {"created_at": explicit}],
    )
    stored = warehouse.query("SELECT seed, created_at FROM runs").to_pylist()
    created = {row["seed"]: row["created_at"] for row in stored}
    assert created[0] >= before and created[1] >= before
    assert created[2] == explicit


def test_aware_timestamps_are_stored_as_utc(warehouse: Warehouse) -> None:
    local = datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    table = pa.Table.from_pylist([run_row(0)]).append_column(
        "created_at", pa.array([local], pa.timestamp("us", tz="Europe/Paris"))
    )
    warehouse.write("runs", table)
    stored = warehouse.query("SELECT created_at FROM runs").column("created_at")[0].as_py()
    assert stored == datetime(2024, 1, 1, 10, 0)


def test_json_values_are_serialised_and_queryable(warehouse: Warehouse) -> None:
    warehouse.write("tasks", [task_row(0)])
    prompt = warehouse.query("SELECT prompt_json FROM tasks").column("prompt_json")[0].as_py()
    assert json.loads(prompt) == [{"role": "user", "content": "Propose a problem."}]
    temperature = warehouse.query("SELECT sampling_json->>'temperature' AS t FROM tasks")
    assert temperature.column("t").to_pylist() == ["0.8"]


def test_malformed_json_string_is_rejected(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="nothing was written.*(?i:json)"):
        warehouse.write("tasks", [task_row(0) | {"sampling_json": "{temperature: 0.8"}])
    assert warehouse.count("tasks") == 0


def test_nullable_columns_may_be_omitted(warehouse: Warehouse) -> None:
    row = task_row(0, parse_status="rejected")
    for optional in ("question", "reference_answer"):
        del row[optional]
    row["rejection_reason"] = "no \\boxed{} answer"
    assert warehouse.write("tasks", [row]) == 1
    assert warehouse.count("tasks", "question IS NULL AND parse_status = 'rejected'") == 1


def test_unknown_and_missing_columns_are_listed(warehouse: Warehouse) -> None:
    row = task_row(0) | {"questoin": "typo"}
    del row["kind"]
    with pytest.raises(WarehouseError) as caught:
        warehouse.write("tasks", [row])
    message = str(caught.value)
    assert "unknown columns ['questoin']" in message
    assert "missing required columns ['kind']" in message
    assert "'tasks' has columns: task_id, run_id" in message


def test_unknown_column_in_arrow_table_is_refused(warehouse: Warehouse) -> None:
    table = trajectories_table(2).append_column("extra", pa.array([1, 2]))
    with pytest.raises(WarehouseError, match=r"unknown columns \['extra'\]"):
        warehouse.write("trajectories", table)


def test_key_present_only_in_a_later_row_is_still_checked(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match=r"unknown columns \['bogus'\]"):
        warehouse.write("tasks", [task_row(0), task_row(1) | {"bogus": 1}])


def test_unknown_table_is_refused(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="unknown warehouse table 'task'.*tasks"):
        warehouse.write("task", [task_row(0)])
    with pytest.raises(WarehouseError, match="unknown warehouse table"):
        warehouse.count("tasks; DROP TABLE tasks")


def test_wrong_value_type_is_a_clear_error(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="do not fit its column types"):
        warehouse.write("tasks", [task_row(0) | {"slot": "first"}])


def test_failing_row_leaves_no_part_of_the_batch(warehouse: Warehouse) -> None:
    rows = [difficulty_row(0.5), difficulty_row(0.6), difficulty_row(1.5)]  # 1.5 breaks CHECK
    with pytest.raises(WarehouseError, match="3 rows to 'difficulty' failed.*nothing was written"):
        warehouse.write("difficulty", rows)
    assert warehouse.count("difficulty") == 0
    assert warehouse.write("difficulty", rows[:2]) == 2  # the connection is still usable


def test_enumerated_values_are_checked(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="parse_status"):
        warehouse.write("tasks", [task_row(0, parse_status="maybe")])


def test_empty_batch_writes_nothing(warehouse: Warehouse) -> None:
    assert warehouse.write("tasks", []) == 0
    assert warehouse.write("trajectories", trajectories_table(0)) == 0
    assert warehouse.count("tasks") + warehouse.count("trajectories") == 0


def test_a_dict_instead_of_rows_is_refused(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="list of dicts or a pyarrow.Table, not dict"):
        warehouse.write("tasks", task_row(0))  # type: ignore[arg-type]


def test_read_only_open_reads_but_refuses_writes(warehouse_path: Path) -> None:
    with Warehouse.open(warehouse_path) as writer:
        writer.write("tasks", [task_row(0)])
    with Warehouse.open(warehouse_path, read_only=True) as reader:
        assert reader.count("tasks") == 1
        with pytest.raises(WarehouseError, match="opened read-only"):
            reader.write("tasks", [task_row(1)])


def test_second_writer_in_the_same_process_is_refused(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseLockedError, match="already open for writing") as caught:
        Warehouse.open(warehouse.path)
    assert caught.value.pid == os.getpid()
    warehouse.close()
    with Warehouse.open(warehouse.path) as reopened:  # closing released the claim
        assert reopened.count("tasks") == 0


def test_closed_warehouse_says_so(warehouse: Warehouse) -> None:
    warehouse.close()
    with pytest.raises(WarehouseError, match="is closed"):
        warehouse.count("tasks")


def test_rows_survive_reopening(warehouse_path: Path) -> None:
    event = {"event_id": content_key("event", 1), "kind": "network", "detail": "socket()"}
    with Warehouse.open(warehouse_path) as warehouse:
        warehouse.write("sandbox_events", [event])
    with Warehouse.open(warehouse_path) as warehouse:
        assert warehouse.write("sandbox_events", [event]) == 0
        assert warehouse.count("sandbox_events", "kind = 'network'") == 1


def test_write_all_commits_every_table_or_none(warehouse: Warehouse) -> None:
    tasks = [task_row(slot) for slot in range(3)]
    bad = [difficulty_row(0.5), difficulty_row(1.5)]  # 1.5 breaks a CHECK
    with pytest.raises(WarehouseError, match="'difficulty' failed"):
        warehouse.write_all({"tasks": tasks, "difficulty": bad})
    assert warehouse.count("tasks") == 0 and warehouse.count("difficulty") == 0
    written = warehouse.write_all({"tasks": tasks, "difficulty": bad[:1], "labels": []})
    assert written == {"tasks": 3, "difficulty": 1, "labels": 0}
    # A repeated stage commit adds nothing.
    assert warehouse.write_all({"tasks": tasks, "difficulty": bad[:1]}) == {
        "tasks": 0,
        "difficulty": 0,
    }
