"""The `selfplay` command: parse, build the config, call one flow or library function.

It lives in `flows/` because it launches flows and folders import downward only
(verifiers, corpora, warehouse → selfplay → flows). Domain errors become one readable line
and exit status 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click
import yaml
from rich.console import Console
from rich.table import Table

from corpora import CorpusError
from selfplay.config import ConfigError, load_config
from selfplay.models import ModelError
from warehouse.writer import WarehouseError

USER_ERRORS = (ConfigError, ModelError, CorpusError, WarehouseError)
console = Console()

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="YAML config file."
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.FIELD=VALUE",
    help="Override one config field, e.g. --set sampling.solver.temperature=0.6 (repeatable).",
)


def _fail(exc: Exception) -> NoReturn:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(1)


@click.group()
def main() -> None:
    """Challenger–Solver self-play data generation, stored in DuckDB, run by Prefect."""


@main.command()
@config_option
@set_option
@click.option("--tasks", type=int, help="Challenger proposals (generate.tasks).")
@click.option("--samples", type=int, help="Solver samples per task (generate.samples_per_task).")
@click.option("--warehouse", type=click.Path(path_type=Path), help="DuckDB file to write.")
def generate(
    config_path: Path | None,
    overrides: tuple[str, ...],
    tasks: int | None,
    samples: int | None,
    warehouse: Path | None,
) -> None:
    """Run one data-generation iteration: propose, solve, label, store.

    Example: selfplay generate --tasks 32 --warehouse runs/selfplay.duckdb
    """
    extra = [f"generate.tasks={tasks}"] if tasks is not None else []
    extra += [f"generate.samples_per_task={samples}"] if samples is not None else []
    extra += [f"warehouse.path={warehouse}"] if warehouse is not None else []
    try:
        config = load_config(config_path, [*overrides, *extra])
    except ConfigError as exc:
        _fail(exc)
    # Our modules' log lines show beside Prefect's own.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "selfplay,corpora,verifiers,warehouse")
    from flows.generate import generate_flow, preflight

    try:
        preflight(config)  # fail on bad input before Prefect's server starts
        summary = generate_flow(config=config.model_dump(mode="json"), command=" ".join(sys.argv))
    except USER_ERRORS as exc:
        _fail(exc)
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    table = Table(title=f"generate run {summary['run_id']}", show_header=False)
    table.add_row("warehouse", summary["warehouse"])
    table.add_row("proposals", str(summary["proposals"]))
    table.add_row("valid", str(summary["valid"]))
    rejections = ", ".join(f"{k} {v}" for k, v in summary["rejections"].items())
    table.add_row("rejected", rejections or "none")
    table.add_row("solver samples", str(summary["solver_samples"]))
    for band in ("too_easy", "frontier", "too_hard"):
        table.add_row(f"band {band}", str(summary["bands"].get(band, 0)))
    table.add_row("label = Challenger answer", str(summary["agrees_with_reference"]))
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in summary["stage_seconds"].items())
    table.add_row("stages", stages)
    table.add_row("wall time", f"{summary['wall_seconds']:.0f} s")
    console.print(table)


@main.command()
@click.argument("query")
@config_option
@set_option
@click.option("--warehouse", type=click.Path(path_type=Path), help="DuckDB file to read.")
@click.option("--max-rows", default=50, show_default=True, help="Rows to print at most.")
def sql(
    query: str,
    config_path: Path | None,
    overrides: tuple[str, ...],
    warehouse: Path | None,
    max_rows: int,
) -> None:
    """Run a SQL query against the warehouse and print the result as a table.

    Example: selfplay sql "SELECT band, count(*) FROM difficulty GROUP BY band"
    """
    from warehouse.query import run_sql

    try:
        config = load_config(config_path, list(overrides))
        result = run_sql(warehouse or config.warehouse.path, query)
    except (*USER_ERRORS, ValueError) as exc:
        _fail(exc)
    table = Table(*result.column_names, caption=f"{result.num_rows} rows")
    for row in result.slice(0, max_rows).to_pylist():
        table.add_row(*("NULL" if v is None else str(v) for v in row.values()))
    console.print(table)


@main.group(name="config")
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command()
@config_option
@set_option
def show(config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Print the effective config (defaults, file, then overrides) as YAML.

    Example: selfplay config show --set generate.tasks=8
    """
    try:
        config = load_config(config_path, list(overrides))
    except ConfigError as exc:
        _fail(exc)
    click.echo(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), nl=False)


@main.command(name="prepare-model")
@config_option
@set_option
def prepare_model(config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Resolve the configured models, converting the embedded GGUF to a HF checkpoint once.

    Example: selfplay prepare-model
    """
    from selfplay.models import resolve_model

    try:
        config = load_config(config_path, list(overrides))
        for role in ("challenger", "solver"):
            path = resolve_model(getattr(config.model, role), config.model.cache_dir)
            click.echo(f"{role}: {path}")
    except USER_ERRORS as exc:
        _fail(exc)


if __name__ == "__main__":
    main()
