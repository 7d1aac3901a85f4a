"""Prefect artifacts: what a generate run or a self-play iteration made, shown in the UI.

Summaries are read back from committed rows (`selfplay.report`, through the writer's snapshot
while the flow holds the file), so an artifact never shows what the warehouse does not have.
An artifact that cannot be published is a warning, not a failed run: the rows are already
committed, and the UI is a view of them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from selfplay.report import BANDS, IterationReport, build_report, write_plots
from warehouse.writer import Warehouse

SAMPLE_TASKS = 10

# Keys group an artifact's versions across runs in the UI's Artifacts page.
SUMMARY_KEY = "selfplay-summary"
FRONTIER_KEY = "selfplay-frontier-tasks"
PROGRESS_KEY = "selfplay-progress"

_FRONTIER_SQL = """
SELECT kind, question, label, reference_answer, round(pass_rate, 3) AS pass_rate
FROM labelled_tasks
WHERE run_id = ? AND iteration = ? AND band = 'frontier' AND is_latest
ORDER BY pass_rate, task_id
LIMIT ?
"""


def publish_iteration(warehouse: Warehouse, run_id: str, iteration: int, title: str) -> None:
    """Markdown summary, a table of sample frontier tasks and the report's plots."""
    try:
        _publish(warehouse, run_id, iteration, title)
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        get_run_logger().warning("artifacts of %s not published: %s", title, exc)


def _publish(warehouse: Warehouse, run_id: str, iteration: int, title: str) -> None:
    report = build_report(warehouse.path, run_id)
    row = next((r for r in report.iterations if r.iteration == iteration), None)
    if row is None:
        return
    create_markdown_artifact(
        summary_markdown(title, row), key=SUMMARY_KEY, description=f"{title}: summary"
    )
    tasks = warehouse.query(_FRONTIER_SQL, [run_id, iteration, SAMPLE_TASKS]).to_pylist()
    if tasks:
        create_table_artifact(
            tasks, key=FRONTIER_KEY, description=f"{title}: sample frontier tasks (lowest p̂ first)"
        )
    plots_dir = Path(warehouse.path).parent / "reports" / run_id
    for plot in write_plots(report, plots_dir):
        create_image_artifact(
            _data_url(plot),
            key=f"selfplay-{plot.stem.replace('_', '-')}",
            description=f"{title}: {plot.name} (also at {plot})",
        )


def summary_markdown(title: str, row: IterationReport) -> str:
    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    lines = [
        f"# {title}",
        "",
        "| measure | value |",
        "|---|---|",
        f"| proposals | {row.proposals} |",
        f"| valid | {row.valid} |",
        *(f"| band {band} | {row.bands[band]} |" for band in BANDS),
        f"| label = Challenger answer | {share(row.label_agreement)} "
        f"of {row.label_checked} checked |",
        f"| executor-checked majority correct | {share(row.executor_majority_accuracy)} "
        f"of {row.executor_checked} |",
        "| Challenger reward mean | "
        + ("-" if row.challenger_reward_mean is None else f"{row.challenger_reward_mean:.3f}")
        + " |",
        f"| held-out accuracy (mean) | {share(row.heldout_accuracy)} |",
        *(f"| held-out {name} | {share(score)} |" for name, score in row.heldout.items()),
        *(f"| seconds in {stage} | {s:.0f} |" for stage, s in row.stage_seconds.items()),
    ]
    return "\n".join(lines) + "\n"


def _data_url(png: Path) -> str:
    # The UI shows an image artifact from a URL; the server stores no files, so the PNG
    # travels inside the URL (a plot is tens of KB).
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()


class Progress:
    """One progress artifact for a flow run, moved forward during its long stages."""

    def __init__(self, description: str) -> None:
        self.artifact_id: UUID | None = None
        try:
            created = create_progress_artifact(0.0, key=PROGRESS_KEY, description=description)
            assert isinstance(created, UUID)  # called from sync code: not awaitable
            self.artifact_id = created
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            get_run_logger().warning("progress artifact not created: %s", exc)

    def set(self, fraction: float) -> None:
        if self.artifact_id is None:
            return
        try:
            update_progress_artifact(self.artifact_id, round(100 * min(max(fraction, 0), 1), 1))
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            get_run_logger().warning("progress artifact not updated: %s", exc)

    @contextmanager
    def span(self, start: float, end: float) -> Iterator[Callable[[int, int], None]]:
        """Within [start, end]: yields a function taking (done, total) steps of a stage."""

        def step(done: int, total: int) -> None:
            self.set(start + (end - start) * done / max(total, 1))

        self.set(start)
        yield step
        self.set(end)
