"""A stand-in for the generate flow's process: the one writer of a warehouse, driven over stdin.

    python -m tests.warehouse.run_writer PATH

Prints "ready PID" once the warehouse is open, then per command on stdin:
`stage` writes the next stage and prints "done N" (N stages written so far),
`burst K` writes K stages back to back (a "done" line each), `quit` closes
the warehouse and prints "closed". Stages alternate propose / solve-and-label
like the flow's, and each writes its rows in two batches before its
`stage_runs` row, so a reader that saw a stage half-written would notice:
per finished propose stage there are exactly TASKS tasks, per finished solve
stage TASKS * SAMPLES trajectories and TASKS labels.
"""

from __future__ import annotations

import os
import sys

from tests.warehouse.pipeline import TaskSpec, iteration_rows, run_row
from warehouse import Warehouse, content_key

TASKS, SAMPLES = 20, 4
RUN_ID = content_key("run", "concurrency")


def _specs(iteration: int) -> list[TaskSpec]:
    return [
        TaskSpec(
            f"Iteration {iteration}: what is {slot} + {iteration}?",
            str(slot + iteration),
            slot % (SAMPLES + 1),
            samples=SAMPLES,
        )
        for slot in range(TASKS)
    ]


def _write_stage(warehouse: Warehouse, index: int) -> None:
    iteration, solving = divmod(index, 2)
    rows = iteration_rows(RUN_ID, iteration, _specs(iteration))
    tables = ["trajectories", "labels", "difficulty"] if solving else ["tasks"]
    written = 0
    for table in tables:
        half = len(rows[table]) // 2
        written += warehouse.write(table, rows[table][:half])
        written += warehouse.write(table, rows[table][half:])
    stage = "solve_and_label" if solving else "propose"
    warehouse.write(
        "stage_runs",
        [
            {
                "stage_run_id": content_key("stage", RUN_ID, iteration, stage),
                "run_id": RUN_ID,
                "iteration": iteration,
                "stage": stage,
                "started_at": rows["tasks"][0]["created_at"],
                "finished_at": rows["tasks"][0]["created_at"],
                "rows_written": written,
                "status": "completed",
            }
        ],
    )


def main(path: str) -> None:
    warehouse = Warehouse.open(path)
    warehouse.write("runs", [run_row(RUN_ID)])
    print(f"ready {os.getpid()}", flush=True)
    stages = 0
    for line in sys.stdin:
        command, *args = line.split()
        if command == "quit":
            break
        for _ in range(int(args[0]) if command == "burst" else 1):
            _write_stage(warehouse, stages)
            stages += 1
            print(f"done {stages}", flush=True)
    warehouse.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
