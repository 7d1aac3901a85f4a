"""Rows shaped like one `generate` iteration, for view, export and migration tests.

`iteration_rows` turns a few `TaskSpec`s into the rows the flow writes for them
(documents, tasks, Solver trajectories, labels, difficulty); `write_iteration`
writes them stage by stage, each stage closed by its `stage_runs` row, as the
flow does. Only schema-v1 tables are touched here, so the same builder makes
the v1 fixture file; v2 rows (rewards, evaluations) have their own builders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from warehouse import Warehouse, content_key

Row = dict[str, Any]
CHECKPOINT = "solver-base"
BAND_LOW, BAND_HIGH = 0.3, 0.8
BASE_TIME = datetime(2025, 1, 1, 12, 0)


@dataclass(frozen=True)
class TaskSpec:
    """One Challenger proposal and how the Solver fared on it."""

    question: str
    label: str | None
    correct: int  # Solver samples that gave the label (of `samples`)
    kind: str = "math"
    doc_id: str | None = None
    valid: bool = True
    label_source: str = "majority"
    reference_answer: str | None = None  # None: the Challenger agreed with the label
    samples: int = 4

    @property
    def pass_rate(self) -> float:
        return self.correct / self.samples


def band(pass_rate: float) -> str:
    if pass_rate > BAND_HIGH:
        return "too_easy"
    return "frontier" if pass_rate >= BAND_LOW else "too_hard"


def run_row(run_id: str, seed: int = 0) -> Row:
    config = {"seed": seed, "model": "tiny"}
    return {
        "run_id": run_id,
        "created_at": BASE_TIME,
        "command": "selfplay generate --tasks 8",
        "config_json": json.dumps(config),
        "config_hash": content_key(config),
        "seed": seed,
        "selfplay_version": "0.1.0",
    }


def document_row(doc_id: str, text: str) -> Row:
    return {
        "doc_id": doc_id,
        "source": "sample-corpus",
        "title": f"Document {doc_id}",
        "text": text,
        "n_chars": len(text),
        "chunk_index": 0,
        "metadata_json": "{}",
    }


def solver_prompt(question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Answer with \\boxed{}."},
        {"role": "user", "content": question},
    ]


def task_id_for(run_id: str, iteration: int, slot: int) -> str:
    return content_key("task", run_id, iteration, slot)


def iteration_rows(run_id: str, iteration: int, specs: list[TaskSpec]) -> dict[str, list[Row]]:
    """The rows one generate iteration writes for `specs`, keyed by table."""
    created = BASE_TIME + timedelta(hours=iteration)
    rows: dict[str, list[Row]] = {"tasks": [], "trajectories": [], "labels": [], "difficulty": []}
    for slot, spec in enumerate(specs):
        task_id = task_id_for(run_id, iteration, slot)
        rows["tasks"].append(_task_row(run_id, iteration, slot, spec, created))
        if not spec.valid:
            continue
        rows["trajectories"] += _trajectory_rows(run_id, iteration, task_id, spec, created)
        rows["labels"].append(_label_row(run_id, iteration, task_id, spec, created))
        rows["difficulty"].append(_difficulty_row(run_id, iteration, task_id, spec, created))
    return rows


def write_iteration(
    warehouse: Warehouse, run_id: str, iteration: int, rows: dict[str, list[Row]]
) -> None:
    """Write `rows` as the flow does: propose stage, then solve-and-label stage."""
    stages = {"propose": ["tasks"], "solve_and_label": ["trajectories", "labels", "difficulty"]}
    for stage, tables in stages.items():
        written = sum(warehouse.write(table, rows[table]) for table in tables)
        warehouse.write(
            "stage_runs",
            [
                {
                    "stage_run_id": content_key("stage", run_id, iteration, stage),
                    "run_id": run_id,
                    "iteration": iteration,
                    "stage": stage,
                    "started_at": BASE_TIME,
                    "finished_at": BASE_TIME,
                    "rows_written": written,
                    "status": "completed",
                }
            ],
        )


def sandbox_event_row(run_id: str, task_id: str | None, kind: str, index: int) -> Row:
    return {
        "event_id": content_key("event", run_id, task_id, kind, index),
        "run_id": run_id,
        "task_id": task_id,
        "kind": kind,
        "detail": f"{kind} attempt {index}",
        "created_at": BASE_TIME,
    }


def reward_row(run_id: str, task_id: str, iteration: int, parts: dict[str, float]) -> Row:
    """A Challenger reward (schema v2): the total is the sum of its parts."""
    return {
        "reward_id": content_key("reward", task_id, "challenger"),
        "task_id": task_id,
        "run_id": run_id,
        "iteration": iteration,
        "role": "challenger",
        "reward": sum(parts.values()),
        "parts_json": parts,
    }


def evaluation_row(benchmark: str, item_id: str, prompt: str, answer: str) -> Row:
    """An evaluation item (schema v2) scored on one checkpoint."""
    return {
        "evaluation_id": content_key("evaluation", benchmark, item_id, CHECKPOINT),
        "run_id": None,
        "iteration": None,
        "checkpoint": CHECKPOINT,
        "benchmark": benchmark,
        "item_id": item_id,
        "prompt": prompt,
        "answer": answer,
        "score": 0.0,
    }


def _task_row(run_id: str, iteration: int, slot: int, spec: TaskSpec, created: datetime) -> Row:
    reference = spec.reference_answer if spec.reference_answer is not None else spec.label
    return {
        "task_id": task_id_for(run_id, iteration, slot),
        "run_id": run_id,
        "iteration": iteration,
        "slot": slot,
        "doc_id": spec.doc_id,
        "kind": spec.kind,
        "grounded": spec.doc_id is not None,
        "challenger_model": "tiny-challenger",
        "prompt_json": [{"role": "user", "content": "Propose a task."}],
        "raw_completion": f"{spec.question} \\boxed{{{reference}}}",
        "parse_status": "valid" if spec.valid else "rejected",
        "rejection_reason": None if spec.valid else "no_boxed_answer",
        "question": spec.question if spec.valid else None,
        "reference_answer": reference if spec.valid else None,
        "sampling_json": {"temperature": 0.8},
        "completion_tokens": 20,
        "latency_s": 0.5,
        "created_at": created,
    }


def _trajectory_rows(
    run_id: str, iteration: int, task_id: str, spec: TaskSpec, created: datetime
) -> list[Row]:
    rows = []
    for index in range(spec.samples):
        in_label = index < spec.correct
        answer = spec.label if in_label else f"wrong-{index}"
        rows.append(
            {
                "trajectory_id": content_key("trajectory", task_id, CHECKPOINT, index),
                "task_id": task_id,
                "run_id": run_id,
                "iteration": iteration,
                "role": "solver",
                "sample_index": index,
                "model": "tiny-solver",
                "checkpoint": CHECKPOINT,
                "sampling_json": {"temperature": 0.8},
                "prompt_json": solver_prompt(spec.question),
                "completion": f"The answer is \\boxed{{{answer}}}.",
                "extracted_answer": answer,
                "in_label_cluster": in_label,
                "verdict": "correct" if in_label else "incorrect",
                "prompt_tokens": 30,
                "completion_tokens": 10,
                "finish_reason": "stop",
                "latency_s": 0.2,
                "created_at": created,
            }
        )
    return rows


def _label_row(run_id: str, iteration: int, task_id: str, spec: TaskSpec, created: datetime) -> Row:
    reference = spec.reference_answer if spec.reference_answer is not None else spec.label
    return {
        "label_id": content_key("label", task_id, CHECKPOINT),
        "task_id": task_id,
        "run_id": run_id,
        "iteration": iteration,
        "solver_checkpoint": CHECKPOINT,
        "label_source": spec.label_source,
        "label": spec.label,
        "majority_share": spec.pass_rate,
        "n_samples": spec.samples,
        "n_answered": spec.samples,
        "n_clusters": spec.samples - spec.correct + (1 if spec.correct else 0),
        "cluster_sizes_json": [spec.correct] + [1] * (spec.samples - spec.correct),
        "equivalence_timeouts": 0,
        "reference_answer": reference,
        "agrees_with_reference": reference == spec.label,
        "created_at": created,
    }


def _difficulty_row(
    run_id: str, iteration: int, task_id: str, spec: TaskSpec, created: datetime
) -> Row:
    return {
        "difficulty_id": content_key("difficulty", task_id, CHECKPOINT),
        "task_id": task_id,
        "run_id": run_id,
        "iteration": iteration,
        "solver_checkpoint": CHECKPOINT,
        "pass_rate": spec.pass_rate,
        "band": band(spec.pass_rate),
        "band_low": BAND_LOW,
        "band_high": BAND_HIGH,
        "n_samples": spec.samples,
        "created_at": created,
    }
