"""The `export` Prefect flow: a curriculum out of the warehouse as a Hugging Face dataset.

The flow form of `selfplay export`, for schedules: `{now}` in `output_dir` becomes the UTC
time of the run (e.g. `exports/frontier-{now}`), so each scheduled export gets its own folder.
It reads the warehouse (the writer's snapshot while a run holds the file) and never writes
it, so it does not wait for the warehouse slot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from selfplay.config import Config
from warehouse.dedup import NearDuplicateConfig
from warehouse.export import ExportFilters, ExportOptions, export_curriculum


@flow(name="export")
def export_flow(
    output_dir: str,
    config: dict[str, Any] | None = None,
    bands: list[str] | None = None,
    min_confidence: float | None = None,
    run_ids: list[str] | None = None,
    where: str | None = None,
    validation_fraction: float = 0.05,
    near_threshold: float = 0.8,
    overwrite: bool = False,
) -> dict:
    """Export labelled tasks (default: the frontier band) with deduplication, decontamination
    and a stable train/validation split; see `selfplay export --help` for each option."""
    cfg = Config.model_validate(config or {})
    out = Path(output_dir.replace("{now}", datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")))
    filters = ExportFilters(
        run_ids=tuple(run_ids or ()),
        bands=tuple(bands or ("frontier",)),
        min_confidence=min_confidence,
        where=where,
    )
    options = ExportOptions(
        validation_fraction=validation_fraction,
        near_dedup=NearDuplicateConfig(threshold=near_threshold),
        overwrite=overwrite,
    )
    result = export_curriculum(cfg.warehouse.path, out, filters, options)
    summary = result.summary()
    get_run_logger().info(summary)
    create_markdown_artifact(
        f"# Export to {result.output_dir}\n\n```\n{summary}\n```\n",
        key="selfplay-export",
        description=f"export to {result.output_dir}",
    )
    return {"output_dir": str(result.output_dir), "counts": result.counts}
