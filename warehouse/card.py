"""The dataset card (README.md) of a curriculum export.

Front matter the Hugging Face Hub reads (`configs` pointing at the Parquet
files, tags), then for a person: where the rows came from (warehouse, snapshot
or live, runs with their config hash and seed), how they were selected
(filters and the exact SQL), what was removed (exact and near duplicates,
contamination), what is left (per split, kind, band, label source,
iteration), and the difficulty statistics of what is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

COLUMN_HELP: dict[str, str] = {
    "prompt": "the Solver prompt as chat messages (role, content), exactly as the Solver saw it",
    "answer": "the label: the executor verdict where one exists, else the Solver majority",
    "solution": "the same label, under the name TRL's accuracy_reward reads",
    "task_id": "warehouse key of the task (content hash); the split is a hash of it",
    "kind": "task kind: math, mcq, code_o, code_i, code_f",
    "question": "the Challenger's question",
    "reference_answer": "the Challenger's own answer (may disagree with the label)",
    "pass_rate": "p̂: share of Solver samples that matched the label",
    "band": "difficulty band of p̂: too_easy, frontier or too_hard",
    "label_source": "majority (pseudo-label by vote) or executor (checked by running code)",
    "majority_share": "share of Solver samples in the largest answer cluster (confidence)",
    "run_id": "the run that proposed the task",
    "iteration": "the self-play iteration that proposed the task",
    "doc_id": "grounding document (NULL for ungrounded proposals)",
    "solver_checkpoint": "the Solver checkpoint whose samples gave the label",
}


@dataclass(frozen=True)
class CardFacts:
    """Everything the card states, gathered by the export."""

    title: str
    warehouse: str
    source_line: str
    schema_version: int
    exported_at: datetime
    selfplay_version: str
    filters: dict[str, Any]
    sql: str
    params: list[Any]
    removed: dict[str, int]
    splits: dict[str, pa.Table]
    runs: list[dict[str, Any]]
    methods: list[str] = field(default_factory=list)


def render_card(facts: CardFacts) -> str:
    """The README.md text for an export described by `facts`."""
    kept = pa.concat_tables(list(facts.splits.values()))
    sections = [
        _front_matter(facts),
        f"# {facts.title}\n",
        "A difficulty-graded curriculum exported from a selfplay warehouse: Challenger "
        "tasks with Solver-derived labels, in TRL's conversational prompt format.\n",
        _provenance(facts),
        _selection(facts),
        _counts(facts, kept),
        _difficulty(kept),
        _columns(kept),
        _usage(),
    ]
    return "\n".join(sections)


def _front_matter(facts: CardFacts) -> str:
    files = "\n".join(
        f"  - split: {name}\n    path: data/{name}-*.parquet"
        for name, table in facts.splits.items()
        if table.num_rows  # empty splits get no Parquet file
    )
    return (
        "---\n"
        f"pretty_name: {facts.title}\n"
        "tags:\n- selfplay\n- synthetic\n- reasoning\n- curriculum\n"
        "task_categories:\n- text-generation\n"
        "configs:\n- config_name: default\n  data_files:\n"
        f"{files}\n"
        "---\n"
    )


def _provenance(facts: CardFacts) -> str:
    lines = [
        "## Provenance\n",
        f"- warehouse: `{facts.warehouse}` (schema version {facts.schema_version})",
        f"- {facts.source_line}",
        f"- exported: {facts.exported_at:%Y-%m-%d %H:%M:%S} UTC by selfplay "
        f"{facts.selfplay_version}",
        "",
        "| run_id | created_at | seed | config_hash | selfplay | tasks kept | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in facts.runs:
        lines.append(
            f"| `{run['run_id']}` | {run['created_at']:%Y-%m-%d %H:%M} | {run['seed']} | "
            f"`{run['config_hash']}` | {run['selfplay_version']} | {run['tasks_kept']} | "
            f"`{run['command']}` |"
        )
    return "\n".join(lines) + "\n"


def _selection(facts: CardFacts) -> str:
    filters = "\n".join(f"- {name}: {value}" for name, value in facts.filters.items())
    methods = "\n".join(f"- {method}" for method in facts.methods)
    return (
        "## Selection\n\n"
        f"{filters}\n\nThe rows were read with:\n\n```sql\n{facts.sql.strip()}\n```\n\n"
        f"with parameters {facts.params!r}.\n\n"
        f"Then, in this order:\n\n{methods}\n"
    )


def _counts(facts: CardFacts, kept: pa.Table) -> str:
    removed = " | ".join(str(value) for value in facts.removed.values())
    lines = [
        "## Counts\n",
        "| " + " | ".join(facts.removed) + " | " + " | ".join(facts.splits) + " |",
        "|" + "---|" * (len(facts.removed) + len(facts.splits)),
        f"| {removed} | " + " | ".join(str(t.num_rows) for t in facts.splits.values()) + " |",
        "",
    ]
    for column in ("kind", "band", "label_source", "iteration"):
        lines.append(f"By {column}: " + _value_counts(kept, column))
    return "\n".join(lines) + "\n"


def _difficulty(kept: pa.Table) -> str:
    lines = ["## Difficulty\n", "| statistic | pass_rate (p̂) | majority_share |", "|---|---|---|"]
    for name, value in _stats(kept, "pass_rate").items():
        lines.append(f"| {name} | {value} | {_stats(kept, 'majority_share')[name]} |")
    histogram = _histogram(kept.column("pass_rate"))
    lines += ["", "p̂ histogram (bucket lower edge: rows): " + histogram]
    return "\n".join(lines) + "\n"


def _columns(kept: pa.Table) -> str:
    lines = ["## Columns\n", "| column | type | meaning |", "|---|---|---|"]
    for column in kept.schema:
        lines.append(f"| `{column.name}` | {column.type} | {COLUMN_HELP.get(column.name, '')} |")
    return "\n".join(lines) + "\n"


def _usage() -> str:
    return (
        "## Use\n\n"
        "```python\n"
        "from datasets import load_from_disk  # or load_dataset('parquet', data_dir='data')\n"
        "curriculum = load_from_disk('<this folder>')\n"
        "# TRL: GRPOTrainer(model, reward_funcs=..., train_dataset=curriculum['train'])\n"
        "# extra columns (answer, solution, pass_rate, ...) reach reward functions as kwargs\n"
        "```\n"
    )


def _value_counts(table: pa.Table, column: str) -> str:
    if table.num_rows == 0:
        return "none"
    counts = pc.value_counts(table.column(column)).to_pylist()
    ordered = sorted(counts, key=lambda item: (item["values"] is None, str(item["values"])))
    return ", ".join(f"{item['values']}: {item['counts']}" for item in ordered)


def _stats(table: pa.Table, column: str) -> dict[str, str]:
    values = table.column(column)
    if table.num_rows == 0:
        return dict.fromkeys(("mean", "min", "p25", "median", "p75", "max"), "-")
    quantiles = pc.quantile(values, q=[0.25, 0.5, 0.75]).to_pylist()
    numbers = {
        "mean": pc.mean(values).as_py(),
        "min": pc.min(values).as_py(),
        "p25": quantiles[0],
        "median": quantiles[1],
        "p75": quantiles[2],
        "max": pc.max(values).as_py(),
    }
    return {name: f"{value:.3f}" for name, value in numbers.items()}


def _histogram(values: pa.ChunkedArray, buckets: int = 10) -> str:
    if len(values) == 0:
        return "none"
    # p̂ = 1.0 belongs in the top bucket, not an eleventh one.
    edges = pc.min_element_wise(pc.floor(pc.multiply(values, buckets)), buckets - 1)
    counts = {item["values"]: item["counts"] for item in pc.value_counts(edges).to_pylist()}
    return ", ".join(
        f"{edge / buckets:.1f}: {counts.get(float(edge), 0)}" for edge in range(buckets)
    )
