"""Curriculum export: labelled tasks -> a Hugging Face `DatasetDict` on disk (and the Hub).

What `selfplay export` calls. One export is:

1. select: the newest label of every valid task (`labelled_tasks`), filtered
   by named filters (run, iterations, kinds, band, minimum confidence, label
   source) and/or a SQL `WHERE` clause, read from the live file or, while a run
   holds it, from the run's snapshot (`Warehouse.open_reader`);
2. clean: exact duplicates, then near duplicates (`warehouse.dedup`), then
   tasks overlapping an evaluation text (`warehouse.decontam`) are dropped; of
   each duplicate group the task with the most trustworthy label survives
   (executor before majority, then higher majority share, earlier iteration);
3. split: a task is in `validation` when a hash of its `task_id` falls below
   the fraction, so a task never changes split between re-exports;
4. write: `save_to_disk` into the output folder, Parquet under `data/`, and a
   dataset card `README.md`, all into a scratch folder renamed into place at
   the end (an interrupted export leaves nothing half-written);
5. optionally push README.md and the Parquet files to the Hub.

Rows follow TRL's conversational prompt-only format: `prompt` is the Solver's
chat messages, and the label is in `answer` and `solution`; every other column
reaches TRL reward functions as a keyword argument.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.card import CardFacts, render_card
from warehouse.decontam import NGRAM_WORDS, contaminated, read_evaluation_texts
from warehouse.dedup import NearDuplicateConfig, dedup_texts
from warehouse.errors import WarehouseError
from warehouse.ngrams import tokenize
from warehouse.snapshot import ReadSource
from warehouse.writer import Warehouse, utc_now

BANDS = ("too_easy", "frontier", "too_hard")
LABEL_SOURCES = ("majority", "executor")
SPLITS = ("train", "validation")
HUB_FILES = ("README.md", "data/*.parquet")
_MATCH_TEXT = "_match_text"  # question + options: what dedup and decontamination compare

# The Solver's messages as list<struct<role, content>>; other message keys are dropped.
_SELECT = """
SELECT
    json_transform(solver_prompt_json, '[{"role": "VARCHAR", "content": "VARCHAR"}]')
        AS prompt,
    label AS answer,
    label AS solution,
    task_id, kind, question, reference_answer, pass_rate, band, label_source,
    majority_share, run_id, iteration, doc_id, solver_checkpoint,
    concat_ws(' ', question, options_json::VARCHAR) AS _match_text
FROM labelled_tasks
WHERE is_latest AND label IS NOT NULL AND solver_prompt_json IS NOT NULL
  AND ({where})
ORDER BY label_source = 'executor' DESC, majority_share DESC, iteration, task_id
"""


@dataclass(frozen=True)
class ExportFilters:
    """Which tasks to export; empty tuples mean "any". All filters combine with AND."""

    run_ids: tuple[str, ...] = ()
    iterations: tuple[int, ...] = ()
    kinds: tuple[str, ...] = ()
    # The Solver trains on the frontier band (R-Zero, Agent0), so that is the default.
    bands: tuple[str, ...] = ("frontier",)
    min_confidence: float | None = None  # minimum majority_share (p̂ of the label)
    label_sources: tuple[str, ...] = ()
    where: str | None = None  # extra SQL over the columns of the labelled_tasks view

    def __post_init__(self) -> None:
        unknown = sorted(set(self.bands) - set(BANDS))
        if unknown:
            raise WarehouseError(f"unknown band(s) {unknown}; choose from {', '.join(BANDS)}")
        unknown = sorted(set(self.label_sources) - set(LABEL_SOURCES))
        if unknown:
            raise WarehouseError(
                f"unknown label source(s) {unknown}; choose from {', '.join(LABEL_SOURCES)}"
            )
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise WarehouseError(
                f"min_confidence ({self.min_confidence}) must be between 0 and 1"
            )

    def to_sql(self) -> tuple[str, list[Any]]:
        """The WHERE condition for `labelled_tasks` and its parameters."""
        named: list[tuple[str, Any]] = [
            ("list_contains(?, run_id)", list(self.run_ids)),
            ("list_contains(?, iteration)", list(self.iterations)),
            ("list_contains(?, kind)", list(self.kinds)),
            ("list_contains(?, band)", list(self.bands)),
            ("list_contains(?, label_source)", list(self.label_sources)),
        ]
        conditions, params = [], []
        for condition, values in named:
            if values:
                conditions.append(condition)
                params.append(values)
        if self.min_confidence is not None:
            conditions.append("majority_share >= ?")
            params.append(self.min_confidence)
        if self.where:
            conditions.append(f"({self.where})")
        return " AND ".join(conditions) or "TRUE", params

    def describe(self) -> dict[str, str]:
        """Filters as the card lists them."""
        described = {
            name: ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)
            for name, value in asdict(self).items()
            if value not in ((), None, "")
        }
        return described or {"filters": "none"}


@dataclass(frozen=True)
class ExportOptions:
    """How to clean, split, write and publish an export."""

    validation_fraction: float = 0.05
    split_salt: str = ""  # change it to draw a different (still stable) split
    exact_dedup: bool = True
    near_dedup: NearDuplicateConfig | None = field(default_factory=NearDuplicateConfig)
    decontaminate: bool = True  # against evaluation texts and the evaluations table
    evaluation_files: tuple[Path, ...] = ()  # JSONL (prompt/question/text) or one text a line
    ngram: int = NGRAM_WORDS
    overwrite: bool = False  # replace an earlier export in the same folder
    title: str = "selfplay curriculum"
    push_to_hub: str | None = None  # Hub dataset repo id, e.g. "me/selfplay-frontier"
    private: bool = True
    hub_token: str | None = None  # default: the token of `hf auth login` / HF_TOKEN

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise WarehouseError(
                f"validation_fraction ({self.validation_fraction}) must be in [0, 1)"
            )


@dataclass(frozen=True)
class ExportResult:
    """Where an export went, what it read, and how many rows each step kept."""

    output_dir: Path
    source: ReadSource
    counts: dict[str, int]
    card_path: Path
    parquet_paths: dict[str, Path]
    pushed_to: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step

    def summary(self) -> str:
        """A few lines for the CLI."""
        counts = ", ".join(f"{name} {value}" for name, value in self.counts.items())
        lines = [f"exported to {self.output_dir}: {counts}", self.source.describe(utc_now())]
        if self.pushed_to:
            lines.append(f"pushed to the Hub dataset {self.pushed_to}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Selection:
    table: pa.Table
    evaluation_prompts: list[str]
    runs: list[dict[str, Any]]
    source: ReadSource
    schema_version: int
    sql: str
    params: list[Any]


def export_curriculum(
    warehouse_path: Path | str,
    output_dir: Path | str,
    filters: ExportFilters | None = None,
    options: ExportOptions | None = None,
    *,
    evaluation_texts: Iterable[str] = (),
) -> ExportResult:
    """Export the selected tasks of the warehouse at `warehouse_path` to `output_dir`.

    Raises `WarehouseError` when nothing matches, the WHERE clause is invalid,
    the folder holds something that is not an earlier export, or the push fails
    (the export on disk is complete by then).
    """
    filters, options = filters or ExportFilters(), options or ExportOptions()
    output_dir = Path(output_dir)
    _check_output(output_dir, options.overwrite)
    seconds: dict[str, float] = {}
    with _timed(seconds, "select"):
        texts = [text for path in options.evaluation_files for text in read_evaluation_texts(path)]
        selection = _select(warehouse_path, filters, options)
        evaluations = [*evaluation_texts, *texts, *selection.evaluation_prompts]
    with _timed(seconds, "clean"):
        cleaned, removed = _clean(selection.table, evaluations, options)
    with _timed(seconds, "split"):
        splits = _split(cleaned, options)
    with _timed(seconds, "write"):
        card = _card(str(warehouse_path), filters, options, selection, removed, splits,
                     len(evaluations))
        parquet_paths = _write(splits, card, output_dir, options.overwrite)
    counts = {**removed, **{name: table.num_rows for name, table in splits.items()}}
    pushed = None
    if options.push_to_hub:
        with _timed(seconds, "push"):
            pushed = push_export(
                output_dir, options.push_to_hub, private=options.private, token=options.hub_token
            )
    return ExportResult(output_dir, selection.source, counts, output_dir / "README.md",
                        parquet_paths, pushed, seconds)


def split_of(task_id: str, validation_fraction: float, salt: str = "") -> str:
    """'validation' or 'train' for `task_id`: a pure function of the id, fraction and salt."""
    digest = hashlib.blake2b(f"{salt}\x00{task_id}".encode(), digest_size=8).digest()
    position = int.from_bytes(digest, "big") / 2**64
    return "validation" if position < validation_fraction else "train"


def hub_files(output_dir: Path) -> list[Path]:
    """The files `push_export` uploads: the card and the Parquet files (not the Arrow copy)."""
    files = [output_dir / "README.md", *sorted((output_dir / "data").glob("*.parquet"))]
    return [path for path in files if path.is_file()]


def push_export(
    output_dir: Path | str, repo_id: str, *, private: bool = True, token: str | None = None
) -> str:
    """Upload README.md and data/*.parquet of an export to the Hub dataset `repo_id`."""
    from huggingface_hub import HfApi

    output_dir = Path(output_dir)
    if not hub_files(output_dir):
        raise WarehouseError(f"{output_dir} holds no export to push; run the export first")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=str(output_dir),
            allow_patterns=list(HUB_FILES),
            commit_message="selfplay export",
        )
    except (OSError, ValueError) as err:  # HTTP, offline and repo-id errors of huggingface_hub
        raise WarehouseError(
            f"pushing {output_dir} to the Hub dataset {repo_id} failed: {err}; the export on "
            f"disk is complete: push it later with `hf upload {repo_id} {output_dir} "
            "--repo-type dataset --include README.md --include 'data/*'`"
        ) from err
    return repo_id


def _select(
    warehouse_path: Path | str, filters: ExportFilters, options: ExportOptions
) -> _Selection:
    where, params = filters.to_sql()
    sql = _SELECT.replace("{where}", where)  # not format(): the JSON template has braces
    # One reader, so every query sees the same file (live, or one snapshot).
    with Warehouse.open_reader(warehouse_path) as reader:
        try:
            table = reader.query(sql, params)
        except WarehouseError as err:
            raise WarehouseError(
                f"selecting tasks failed; check the filters and the WHERE clause "
                f"({filters.where!r}): {err}"
            ) from err
        if table.num_rows == 0:
            raise WarehouseError(
                f"no labelled task matches the filters ({filters.describe()}) in "
                f"{warehouse_path}; loosen them (e.g. --band too_easy --band too_hard)"
            )
        evaluation_prompts = (
            reader.query("SELECT DISTINCT prompt FROM evaluations").column("prompt").to_pylist()
            if options.decontaminate
            else []
        )
        runs = reader.query(
            "SELECT run_id, created_at, seed, config_hash, selfplay_version, command FROM runs "
            "WHERE list_contains(?, run_id) ORDER BY created_at",
            [pc.unique(table.column("run_id")).to_pylist()],
        ).to_pylist()
        version = int(reader.query("SELECT max(version) AS v FROM schema_version")["v"][0].as_py())
        source = reader.source
    return _Selection(table, evaluation_prompts, runs, source, version, sql, params)


def _clean(
    table: pa.Table, evaluations: list[str], options: ExportOptions
) -> tuple[pa.Table, dict[str, int]]:
    """Drop duplicates and contaminated rows; return the rest and what each step removed."""
    texts = tokenize(table.column(_MATCH_TEXT))  # once, for dedup and decontamination
    exact, near = dedup_texts(texts, options.near_dedup, exact=options.exact_dedup)
    leaks = np.zeros(table.num_rows, dtype=bool)
    if options.decontaminate and evaluations:
        leaks = contaminated(texts, evaluations, options.ngram) & ~exact & ~near
    keep = ~(exact | near | leaks)
    removed = {
        "selected": table.num_rows,
        "exact_duplicates": int(exact.sum()),
        "near_duplicates": int(near.sum()),
        "contaminated": int(leaks.sum()),
    }
    cleaned = table.filter(pa.array(keep)).drop_columns([_MATCH_TEXT])
    order = pc.sort_indices(
        cleaned, [("run_id", "ascending"), ("iteration", "ascending"), ("task_id", "ascending")]
    )
    return cleaned.take(order), removed


def _split(table: pa.Table, options: ExportOptions) -> dict[str, pa.Table]:
    fraction, salt = options.validation_fraction, options.split_salt
    in_validation = np.fromiter(
        (split_of(key, fraction, salt) == "validation" for key in table["task_id"].to_pylist()),
        dtype=bool,
        count=table.num_rows,
    )
    return {
        "train": table.filter(pa.array(~in_validation)),
        "validation": table.filter(pa.array(in_validation)),
    }


def _write(
    splits: dict[str, pa.Table], card: str, output_dir: Path, overwrite: bool
) -> dict[str, Path]:
    # Parquet only for splits with rows: `load_dataset` refuses an empty file's split.
    parquet = {
        name: Path("data") / f"{name}-00000-of-00001.parquet"
        for name, table in splits.items()
        if table.num_rows
    }
    scratch = output_dir.with_name(f".{output_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        curriculum = datasets.DatasetDict(
            {name: datasets.Dataset(table) for name, table in splits.items()}
        )
        # An empty split (e.g. no validation task yet) gets 0 shards by default and
        # then fails to load (datasets PR #8385); one explicit shard round-trips.
        empty = {name: 1 for name, dataset in curriculum.items() if len(dataset) == 0}
        curriculum.save_to_disk(str(scratch), num_shards=empty or None)
        (scratch / "data").mkdir()
        for name, path in parquet.items():
            curriculum[name].to_parquet(str(scratch / path))
        (scratch / "README.md").write_text(card, encoding="utf-8")
        if overwrite and output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(scratch, output_dir)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return {name: output_dir / path for name, path in parquet.items()}


def _check_output(output_dir: Path, overwrite: bool) -> None:
    if not output_dir.exists() or (output_dir.is_dir() and not any(output_dir.iterdir())):
        return
    is_export = (output_dir / "dataset_dict.json").is_file()
    if overwrite and is_export:
        return
    fix = "pass overwrite (--overwrite) to replace it" if is_export else "choose another folder"
    what = "an earlier export" if is_export else "files that are not an export"
    raise WarehouseError(f"{output_dir} already holds {what}; {fix}")


@contextlib.contextmanager
def _timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[step] = round(time.perf_counter() - started, 3)


def _card(
    warehouse: str,
    filters: ExportFilters,
    options: ExportOptions,
    selection: _Selection,
    removed: dict[str, int],
    splits: dict[str, pa.Table],
    n_evaluations: int,
) -> str:
    kept = pa.concat_tables(list(splits.values()))
    return render_card(
        CardFacts(
            title=options.title,
            warehouse=warehouse,
            source_line=selection.source.describe(utc_now()),
            schema_version=selection.schema_version,
            exported_at=utc_now(),
            selfplay_version=_selfplay_version(),
            filters=filters.describe(),
            sql=selection.sql,
            params=selection.params,
            removed=removed,
            splits=splits,
            runs=_runs_kept(selection.runs, kept),
            methods=_methods(options, n_evaluations),
        )
    )


def _runs_kept(runs: list[dict[str, Any]], kept: pa.Table) -> list[dict[str, Any]]:
    per_run = {
        item["values"]: item["counts"] for item in pc.value_counts(kept["run_id"]).to_pylist()
    }
    return [run | {"tasks_kept": per_run.get(run["run_id"], 0)} for run in runs]


def _methods(options: ExportOptions, n_evaluations: int) -> list[str]:
    near = options.near_dedup
    return [
        "exact duplicates: same normalised word sequence of question + options"
        + ("" if options.exact_dedup else " (off)"),
        (
            f"near duplicates: MinHash-LSH over {near.shingle_words}-word shingles, "
            f"{near.bands} bands x {near.rows_per_band} rows, estimated Jaccard >= "
            f"{near.threshold}"
            if near is not None
            else "near duplicates: off"
        ),
        (
            f"decontamination: {options.ngram}-word n-gram overlap (GPT-3 rule) against "
            f"{n_evaluations} evaluation texts"
            if options.decontaminate
            else "decontamination: off"
        ),
        f"split: blake2b(salt, task_id) < {options.validation_fraction} -> validation",
    ]


def _selfplay_version() -> str:
    try:
        return metadata.version("selfplay")
    except metadata.PackageNotFoundError:
        return "unknown"
