"""The export flow and the artifacts a flow run publishes, on warehouse rows built by hand.

Prefect's ephemeral server stores the artifacts; the test reads them back through its API.
No model runs here: `tests/flows/test_prefect_server.py` covers artifacts of a real run.
"""

from __future__ import annotations

from pathlib import Path

import datasets
from prefect import flow, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.context import get_run_context

from flows.artifacts import FRONTIER_KEY, SUMMARY_KEY, Progress, publish_iteration
from flows.export import export_flow
from tests.warehouse.pipeline import TaskSpec, iteration_rows, run_row, write_iteration
from warehouse import Warehouse

RUN = "run-artifacts"
SPECS = [
    TaskSpec("What is 12 * 3?", "36", 2),  # frontier (p̂ 0.5)
    TaskSpec("What is 7 squared?", "49", 3),  # frontier (0.75)
    TaskSpec("What is 1 + 1?", "2", 4),  # too easy
    TaskSpec("What is 99 * 99?", "9801", 0),  # too hard
]


def _warehouse(path: Path) -> Path:
    with Warehouse.open(path) as warehouse:
        warehouse.write("runs", [run_row(RUN)])
        write_iteration(warehouse, RUN, 1, iteration_rows(RUN, 1, SPECS))
    return path


def _artifacts(flow_run_id) -> dict[str, list]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    by_type: dict[str, list] = {}
    for artifact in found:
        by_type.setdefault(artifact.type, []).append(artifact)
    return by_type


def test_an_iteration_publishes_summary_frontier_table_plots_and_progress(tmp_path: Path):
    path = _warehouse(tmp_path / "w.duckdb")

    @flow
    def iteration() -> str:
        with Warehouse.open(path) as warehouse:
            progress = Progress("test progress")
            with progress.span(0.5, 1.0) as step:
                step(1, 2)
            publish_iteration(warehouse, RUN, 1, "run iteration 1")
        return str(get_run_context().flow_run.id)

    artifacts = _artifacts(iteration())

    (summary,) = artifacts["markdown"]
    assert summary.key == SUMMARY_KEY
    assert "| proposals | 4 |" in summary.data
    assert "| band frontier | 2 |" in summary.data and "| band too_easy | 1 |" in summary.data
    (table,) = artifacts["table"]
    assert table.key == FRONTIER_KEY
    assert "What is 12 * 3?" in str(table.data) and "What is 1 + 1?" not in str(table.data)
    images = artifacts["image"]
    assert any("difficulty_by_iteration.png" in a.description for a in images)
    assert all(a.data.startswith("data:image/png;base64,") for a in images)
    assert (tmp_path / "reports" / RUN / "difficulty_by_iteration.png").exists()
    (progress,) = artifacts["progress"]
    assert progress.data == 100.0


def test_export_flow_writes_a_timestamped_dataset(tmp_path: Path):
    path = _warehouse(tmp_path / "w.duckdb")
    config = {"warehouse": {"path": str(path)}}

    result = export_flow(
        output_dir=str(tmp_path / "exports" / "frontier-{now}"),
        config=config,
        validation_fraction=0.0,
    )

    out = Path(result["output_dir"])
    assert out.parent == tmp_path / "exports" and out.name.startswith("frontier-20")
    train = datasets.load_from_disk(str(out))["train"]
    assert sorted(train["question"]) == ["What is 12 * 3?", "What is 7 squared?"]
