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
from selfplay.config import Config, ConfigError, load_config
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


def _prefect_defaults() -> None:
    """Our defaults for Prefect settings the user has not set. Prefect reads its settings
    once, on import, so this runs before the first `flows.*` import of a command."""
    # Our modules' log lines show beside Prefect's own (and stay local outside a flow run).
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "selfplay,corpora,verifiers,warehouse")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # The ephemeral server's first start creates its database; on a busy 2-core machine
    # that took longer than Prefect's 20 s and the command died before any work.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


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
    _prefect_defaults()
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
@config_option
@set_option
@click.option(
    "--iterations", type=click.IntRange(min=1), help="Self-play iterations (run.iterations)."
)
@click.option("--tasks", type=int, help="Challenger proposals per iteration (generate.tasks).")
@click.option("--warehouse", type=click.Path(path_type=Path), help="DuckDB file to write.")
@click.option(
    "--resume",
    "resume_id",
    metavar="RUN_ID",
    help="Continue this run from its last committed stage, with the config it started with "
    "(--iterations may raise the count; other options are refused).",
)
def run(
    config_path: Path | None,
    overrides: tuple[str, ...],
    iterations: int | None,
    tasks: int | None,
    warehouse: Path | None,
    resume_id: str | None,
) -> None:
    """Self-play: K iterations of generate, Solver GRPO, Challenger GRPO and held-out evaluation.

    Example: selfplay run --iterations 3 --warehouse runs/selfplay.duckdb
    """
    extra = [f"run.iterations={iterations}"] if iterations is not None else []
    extra += [f"generate.tasks={tasks}"] if tasks is not None else []
    _prefect_defaults()
    from flows.generate import preflight
    from flows.run import run_flow, stored_config

    try:
        if resume_id is not None:
            if config_path is not None or overrides or tasks is not None:
                raise ConfigError(
                    "--resume continues a run with the config it started with; "
                    "only --iterations and --warehouse may be given"
                )
            path = warehouse or load_config(None, []).warehouse.path
            config = stored_config(path, resume_id)
            config = config.model_copy(
                update={
                    "warehouse": config.warehouse.model_copy(update={"path": path}),
                    "run": config.run.model_copy(update={"iterations": iterations})
                    if iterations is not None
                    else config.run,
                }
            )
        else:
            extra += [f"warehouse.path={warehouse}"] if warehouse is not None else []
            config = load_config(config_path, [*overrides, *extra])
        preflight(config)  # fail on bad input before Prefect's server starts
        summary = run_flow(
            config=config.model_dump(mode="json"), resume=resume_id, command=" ".join(sys.argv)
        )
    except USER_ERRORS as exc:
        _fail(exc)
    _print_run_summary(summary)


def _print_run_summary(summary: dict) -> None:
    # Narrow enough for an 80-column log; `selfplay report` has the per-benchmark breakdown.
    table = Table(
        "iter",
        "tasks",
        "valid",
        "frontier",
        "GRPO S/C",
        "held-out",
        "seconds",
        title="per iteration (held-out: mean accuracy over benchmarks)",
    )
    table.add_row("0", "", "", "", "", _mean(summary["baseline"]), "")
    for it in summary["iterations"]:
        table.add_row(
            str(it["iteration"]) + ("*" if it["resumed"] else ""),
            str(it["proposals"]),
            str(it["valid"]),
            str(it["bands"].get("frontier", 0)),
            f"{it['solver_steps']}/{it['challenger_steps']}",
            _mean(it["heldout"]),
            f"{sum(it['stage_seconds'].values()):.0f}",
        )
    console.print(table)
    # Plain lines, not a caption: ids and paths must not be wrapped or cut.
    click.echo(f"run id: {summary['run_id']}")
    click.echo(f"checkpoints: {summary['run_dir']}")
    click.echo(f"warehouse: {summary['warehouse']}")
    click.echo(f"stages already committed, skipped: {summary['skipped_stages']} (* resumed)")
    click.echo(f"wall time of this process: {summary['wall_seconds']:.0f} s")
    click.echo(f"per benchmark and plots: selfplay report {summary['run_id']}")


def _mean(scores: dict[str, float]) -> str:
    return f"{sum(scores.values()) / len(scores):.1%}" if scores else "-"


@main.command()
@config_option
@set_option
@click.option(
    "--name",
    default="selfplay",
    show_default=True,
    help="Deployment name: they register as generate/NAME, run/NAME, evaluate/NAME, export/NAME.",
)
@click.option(
    "--export-dir",
    default="exports/frontier-{now}",
    show_default=True,
    help="Output folder of the export deployment; {now} becomes the run's UTC time.",
)
def serve(config_path: Path | None, overrides: tuple[str, ...], name: str, export_dir: str) -> None:
    """Register the generate, run, evaluate and export flows as deployments and run them.

    Needs a Prefect server (`prefect server start --host 127.0.0.1`, PREFECT_API_URL set).
    Schedules come from the config's flows.*_schedule fields; runs can also be started in the
    UI or with `prefect deployment run generate/NAME`. Stop with Ctrl-C.

    Example: selfplay serve --set flows.generate_schedule.cron="0 3 * * *"
    """
    _prefect_defaults()
    from flows.serve import api_url
    from flows.serve import serve as serve_deployments

    try:
        config = _absolute_paths(load_config(config_path, list(overrides)))
        click.echo(f"Prefect server: {api_url()} (UI: {api_url().removesuffix('/api')})")
        serve_deployments(config, name, str(Path(export_dir).expanduser().resolve()))
    except USER_ERRORS as exc:
        _fail(exc)


def _absolute_paths(config: Config) -> Config:
    """Flow runs of a deployment may start in another folder: pin the config's paths here."""
    config.warehouse.path = config.warehouse.path.expanduser().resolve()
    config.run.checkpoint_dir = config.run.checkpoint_dir.expanduser().resolve()
    if config.corpus.path is not None:
        config.corpus.path = config.corpus.path.expanduser().resolve()
    return config


@main.command()
@config_option
@set_option
@click.option(
    "--model",
    help="Weights to evaluate: a checkpoint directory, the embedded model, or a hub id "
    "[default: model.solver].",
)
@click.option("--warehouse", type=click.Path(path_type=Path), help="DuckDB file to write.")
def evaluate(
    config_path: Path | None,
    overrides: tuple[str, ...],
    model: str | None,
    warehouse: Path | None,
) -> None:
    """Held-out evaluation of one model (reasoning-gym scorers, HumanEval in the sandbox).

    Rows land in `evaluations` under a run of their own, as in `selfplay run`'s iteration 0.

    Example: selfplay evaluate --model runs/<run_id>/iteration-003/solver
    """
    extra = [f"warehouse.path={warehouse}"] if warehouse is not None else []
    _prefect_defaults()
    from flows.evaluate import evaluate_flow

    try:
        config = load_config(config_path, [*overrides, *extra])
        result = evaluate_flow(
            config=config.model_dump(mode="json"), model=model, command=" ".join(sys.argv)
        )
    except USER_ERRORS as exc:
        _fail(exc)
    table = Table("benchmark", "accuracy", title=f"held-out evaluation of {result['model']}")
    for benchmark, score in result["scores"].items():
        table.add_row(benchmark, f"{score:.1%}")
    console.print(table)
    click.echo(f"run id: {result['run_id']}")
    click.echo(f"warehouse: {result['warehouse']}")


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

    Works during a run too: it then reads the run's latest snapshot and says how old it is.

    Example: selfplay sql "SELECT band, count(*) FROM difficulty GROUP BY band"
    """
    from warehouse.query import read_sql
    from warehouse.writer import utc_now

    try:
        config = load_config(config_path, list(overrides))
        result = read_sql(warehouse or config.warehouse.path, query)
    except (*USER_ERRORS, ValueError) as exc:
        _fail(exc)
    caption = f"{result.table.num_rows} rows"
    if result.source.kind == "snapshot":
        caption += "; " + result.source.describe(utc_now())
    table = Table(*result.table.column_names, caption=caption)
    for row in result.table.slice(0, max_rows).to_pylist():
        table.add_row(*("NULL" if v is None else str(v) for v in row.values()))
    console.print(table)


@main.command()
@click.argument("output_dir", type=click.Path(path_type=Path))
@config_option
@set_option
@click.option("--warehouse", type=click.Path(path_type=Path), help="DuckDB file to read.")
@click.option("--run", "run_ids", multiple=True, help="Only tasks of this run id (repeatable).")
@click.option(
    "--iteration",
    "iterations",
    type=int,
    multiple=True,
    help="Only tasks proposed in this iteration (repeatable).",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    help="Only tasks of this kind: math, mcq, code_o, code_i, code_f (repeatable).",
)
@click.option(
    "--band",
    "bands",
    multiple=True,
    default=("frontier",),
    show_default=True,
    type=click.Choice(["too_easy", "frontier", "too_hard"]),
    help="Only tasks in this difficulty band (repeatable).",
)
@click.option(
    "--min-confidence",
    type=click.FloatRange(0, 1),
    help="Only labels with at least this majority share (p̂ of the label).",
)
@click.option(
    "--label-source",
    "label_sources",
    multiple=True,
    type=click.Choice(["majority", "executor"]),
    help="Only labels from this source (repeatable).",
)
@click.option("--where", help="Extra SQL condition over the columns of the labelled_tasks view.")
@click.option(
    "--validation-fraction",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Share of tasks in the validation split (a stable hash of task_id).",
)
@click.option("--split-salt", default="", help="Change it to draw another stable split.")
@click.option("--no-dedup", is_flag=True, help="Keep exact and near duplicates.")
@click.option(
    "--near-threshold",
    default=0.8,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="Estimated Jaccard similarity from which two tasks are near duplicates.",
)
@click.option(
    "--eval-file",
    "eval_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Evaluation texts to decontaminate against: JSONL (prompt/question/text) "
    "or one text per line (repeatable).",
)
@click.option(
    "--no-decontaminate", is_flag=True, help="Skip the 13-gram check against evaluation texts."
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in OUTPUT_DIR.")
@click.option(
    "--push-to-hub",
    "repo_id",
    metavar="REPO_ID",
    help="Also upload README.md and the Parquet files to this Hub dataset repo "
    "(token from `hf auth login` or HF_TOKEN).",
)
@click.option("--public", is_flag=True, help="Create the Hub repo public (default: private).")
def export(
    output_dir: Path,
    config_path: Path | None,
    overrides: tuple[str, ...],
    warehouse: Path | None,
    run_ids: tuple[str, ...],
    iterations: tuple[int, ...],
    kinds: tuple[str, ...],
    bands: tuple[str, ...],
    min_confidence: float | None,
    label_sources: tuple[str, ...],
    where: str | None,
    validation_fraction: float,
    split_salt: str,
    no_dedup: bool,
    near_threshold: float,
    eval_files: tuple[Path, ...],
    no_decontaminate: bool,
    overwrite: bool,
    repo_id: str | None,
    public: bool,
) -> None:
    """Export labelled tasks as a Hugging Face dataset: save_to_disk, Parquet and a card.

    Deduplicates, decontaminates and splits train/validation by a stable hash of the task
    key. Works during a run too (it then reads the run's latest snapshot).

    Example: selfplay export runs/frontier --band frontier --min-confidence 0.5
    """
    from warehouse.dedup import NearDuplicateConfig
    from warehouse.export import ExportFilters, ExportOptions, export_curriculum

    try:
        config = load_config(config_path, list(overrides))
        filters = ExportFilters(
            run_ids=run_ids,
            iterations=iterations,
            kinds=kinds,
            bands=bands,
            min_confidence=min_confidence,
            label_sources=label_sources,
            where=where,
        )
        options = ExportOptions(
            validation_fraction=validation_fraction,
            split_salt=split_salt,
            exact_dedup=not no_dedup,
            near_dedup=None if no_dedup else NearDuplicateConfig(threshold=near_threshold),
            decontaminate=not no_decontaminate,
            evaluation_files=eval_files,
            overwrite=overwrite,
            push_to_hub=repo_id,
            private=not public,
        )
        result = export_curriculum(warehouse or config.warehouse.path, output_dir, filters, options)
    except (*USER_ERRORS, ValueError) as exc:
        _fail(exc)
    click.echo(result.summary())


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


@main.command()
@click.argument("run_id")
@config_option
@set_option
@click.option("--warehouse", type=click.Path(path_type=Path), help="DuckDB file to read.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the PNG plots [default: reports/RUN_ID beside the warehouse file].",
)
def report(
    run_id: str,
    config_path: Path | None,
    overrides: tuple[str, ...],
    warehouse: Path | None,
    out_dir: Path | None,
) -> None:
    """Print a run's per-iteration table and write its plots (difficulty, held-out accuracy).

    RUN_ID may be any unique prefix of the id. Works during a run too: it then reads the
    run's latest snapshot and says how old it is.

    Example: selfplay report 3fa2 --warehouse runs/selfplay.duckdb
    """
    from selfplay.report import ReportError, build_report, write_plots

    try:
        config = load_config(config_path, list(overrides))
        path = warehouse or config.warehouse.path
        run_report = build_report(path, run_id)
        out = out_dir or Path(path).parent / "reports" / run_report.run_id
        plots = write_plots(run_report, out)
    except (*USER_ERRORS, ReportError, OSError) as exc:
        _fail(exc)
    _print_report(run_report)
    for plot in plots:
        click.echo(f"plot: {plot}")
    if not plots:
        click.echo("no plots: the run has no difficulty, evaluation or stage rows yet")


def _print_report(run_report: object) -> None:
    from rich import box
    from rich.table import Column

    from selfplay.report import BANDS, RunReport
    from warehouse.writer import utc_now

    assert isinstance(run_report, RunReport)

    def share(value: float | None, checked: int | None = None) -> str:
        if value is None:
            return "-"
        return f"{value:.0%}" + (f" ({checked})" if checked is not None else "")

    caption = (
        "label=ref: majority labels equal to the Challenger's own answer (the only check for "
        "math/mcq; not ground truth), (labels checked). exec maj: code tasks whose most common "
        "Solver answer the executor passed, (tasks). held-out: after the iteration, mean over "
        "benchmarks (0: the starting model). time: seconds in stages."
    )
    if run_report.source.kind != "live":
        caption += "\n" + run_report.source.describe(utc_now())
    # Short header words, a light box, and only the two "share (n)" columns may wrap: the
    # table fits 80 columns without cutting a number.
    fixed = ["iter", "pro-\nposals", "valid", "too\neasy", "fron-\ntier", "too\nhard"]
    table = Table(
        *(Column(header, no_wrap=True) for header in fixed),
        "label\n=ref",
        "exec\nmaj",
        *(Column(h, no_wrap=True) for h in ("Challenger\nreward", "held-\nout", "time\n(s)")),
        title=f"run {run_report.run_id}, started {run_report.created_at:%Y-%m-%d %H:%M} UTC",
        caption=caption,
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        show_edge=False,
        pad_edge=False,
    )
    for row in run_report.iterations:
        counts = [row.proposals, row.valid, *(row.bands[band] for band in BANDS)]
        table.add_row(
            str(row.iteration),
            *(str(n) if row.has_tasks else "-" for n in counts),
            share(row.label_agreement, row.label_checked),
            share(row.executor_majority_accuracy, row.executor_checked),
            "-" if row.challenger_reward_mean is None else f"{row.challenger_reward_mean:.3f}",
            share(row.heldout_accuracy),
            "-" if row.seconds is None else f"{row.seconds:.0f}",
        )
    console.print(table)
    if run_report.benchmarks:
        heldout = Table(
            "iter", *run_report.benchmarks, title="held-out accuracy", box=box.SIMPLE_HEAD
        )
        for row in run_report.iterations:
            if row.heldout:
                cells = (share(row.heldout.get(name)) for name in run_report.benchmarks)
                heldout.add_row(str(row.iteration), *cells)
        console.print(heldout)


if __name__ == "__main__":
    main()
