"""Warehouse rows from stage records: one function per table, plain dicts keyed by content hash.

Keys come from content (run, iteration, slot, sample index, checkpoint), so writing the same
stage output twice inserts nothing the second time.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from corpora import Document
from selfplay.config import Config, SamplingConfig
from selfplay.generate import ProposedTask, SolverSample, TaskLabel, challenger_outcomes
from selfplay.rewards import challenger_rewards
from warehouse.keys import content_key

if TYPE_CHECKING:  # training imports torch; rows are built where it is already loaded
    from selfplay.evaluation import OverlapReport
    from selfplay.training import TrainResult

Row = dict[str, Any]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def run_row(run_id: str, config: Config, command: str, version: str) -> Row:
    return {
        "run_id": run_id,
        "command": command,
        "config_json": config.to_json(),
        "config_hash": config.fingerprint(),
        "seed": config.run.seed,
        "selfplay_version": version,
    }


def document_rows(documents: list[Document]) -> list[Row]:
    unique = {d.doc_id: d for d in documents}
    return [
        {
            "doc_id": d.doc_id,
            "source": d.source,
            "title": d.title,
            "text": d.text,
            "n_chars": len(d.text),
            "chunk_index": d.chunk_index,
            "parent_id": d.parent_id,
            "metadata_json": _json(d.metadata),
        }
        for d in unique.values()
    ]


def task_rows(tasks: list[ProposedTask], model: str, sampling: SamplingConfig) -> list[Row]:
    rows = []
    for task in tasks:
        slot, proposal = task.slot, task.proposal
        rows.append(
            {
                "task_id": task.task_id,
                "run_id": slot.run_id,
                "iteration": slot.iteration,
                "slot": slot.index,
                "doc_id": slot.document.doc_id if slot.document else None,
                "kind": slot.kind,
                "grounded": slot.document is not None,
                "challenger_model": model,
                "prompt_json": _json(task.prompt),
                "raw_completion": task.completion.text,
                "parse_status": "valid" if proposal.valid else "rejected",
                "rejection_reason": proposal.rejection,
                "question": proposal.question,
                "reference_answer": proposal.reference_answer,
                "options_json": _json(list(proposal.options)) if proposal.options else None,
                "payload_json": _json(proposal.payload) if proposal.payload else None,
                "sampling_json": sampling.model_dump_json(),
                "completion_tokens": task.completion.completion_tokens,
                "latency_s": task.completion.latency_s,
            }
        )
    return rows


def trajectory_rows(
    samples: list[SolverSample],
    labels: list[TaskLabel],
    tasks: list[ProposedTask],
    model: str,
    sampling: SamplingConfig,
) -> list[Row]:
    """Every Solver sample, with its verdict against the task's label."""
    by_task = {label.task_id: label for label in labels}
    slots = {t.task_id: t.slot for t in tasks}
    rows = []
    for sample in samples:
        label = by_task.get(sample.task_id)
        in_label = label.majority.sample_in_label[sample.sample_index] if label else None
        verdict = "no_answer" if sample.answer is None else "correct" if in_label else "incorrect"
        slot = slots[sample.task_id]
        rows.append(
            {
                "trajectory_id": sample.trajectory_id,
                "task_id": sample.task_id,
                "run_id": slot.run_id,
                "iteration": slot.iteration,
                "role": "solver",
                "sample_index": sample.sample_index,
                "model": model,
                "checkpoint": model,
                "sampling_json": sampling.model_dump_json(),
                "prompt_json": _json(sample.prompt),
                "completion": sample.completion.text,
                "extracted_answer": sample.answer,
                "in_label_cluster": in_label,
                "verdict": verdict,
                "reward": None,
                "prompt_tokens": sample.completion.prompt_tokens,
                "completion_tokens": sample.completion.completion_tokens,
                "finish_reason": sample.completion.finish_reason,
                "latency_s": sample.completion.latency_s,
            }
        )
    return rows


def label_rows(
    labels: list[TaskLabel], tasks: list[ProposedTask], checkpoint: str, config: Config
) -> tuple[list[Row], list[Row]]:
    """(labels rows, difficulty rows): the pseudo-label, and p̂ with its band."""
    slots = {t.task_id: t.slot for t in tasks}
    label_out, difficulty_out = [], []
    for label in labels:
        slot, majority = slots[label.task_id], label.majority
        common = {
            "task_id": label.task_id,
            "run_id": slot.run_id,
            "iteration": slot.iteration,
            "solver_checkpoint": checkpoint,
        }
        label_out.append(
            {
                **common,
                "label_id": content_key("label", label.task_id, checkpoint),
                "label_source": label.label_source,
                "label": majority.label,
                "majority_share": majority.majority_share,
                "n_samples": majority.n_samples,
                "n_answered": majority.n_answered,
                "n_clusters": majority.n_clusters,
                "cluster_sizes_json": _json(list(majority.cluster_sizes)),
                "equivalence_timeouts": label.equivalence_timeouts,
                "reference_answer": label.reference_answer,
                "agrees_with_reference": label.agrees_with_reference,
            }
        )
        difficulty_out.append(
            {
                **common,
                "difficulty_id": content_key("difficulty", label.task_id, checkpoint),
                "pass_rate": majority.majority_share,
                "band": str(label.band),
                "band_low": config.labels.frontier_low,
                "band_high": config.labels.frontier_high,
                "n_samples": majority.n_samples,
            }
        )
    return label_out, difficulty_out


def sandbox_event_rows(tasks: list[ProposedTask], labels: list[TaskLabel]) -> list[Row]:
    """Every sandbox event of program validation (tasks) and answer grading (labels)."""
    slots = {t.task_id: t.slot for t in tasks}
    sources: list[tuple[str, str, list]] = [
        (t.task_id, "validate", t.proposal.payload.get("sandbox_events", [])) for t in tasks
    ]
    sources += [(lab.task_id, "grade", list(lab.sandbox_events)) for lab in labels]
    rows = []
    for task_id, stage, events in sources:
        for index, (kind, detail) in enumerate(events):
            rows.append(
                {
                    "event_id": content_key("sandbox_event", task_id, stage, index),
                    "run_id": slots[task_id].run_id,
                    "task_id": task_id,
                    "kind": kind,
                    "detail": detail,
                }
            )
    return rows


def challenger_reward_rows(
    tasks: list[ProposedTask], labels: list[TaskLabel], config: Config
) -> list[Row]:
    """The Challenger's reward for each proposal of the batch, from the Solver's p̂.

    Parts are numbers only (the `challenger_reward_parts` view casts them): the difficulty
    reward under its name, the repetition penalty as a negative part, or the fixed reward.
    """
    outcomes = challenger_outcomes(tasks, labels)
    rows = []
    for task, reward in zip(tasks, challenger_rewards(outcomes, config.rewards), strict=True):
        if reward.kind == "valid":
            parts = {
                config.rewards.challenger: reward.base,
                "repetition_penalty": -reward.repetition,
            }
        else:
            parts = {reward.kind: reward.base}
        rows.append(
            {
                "reward_id": content_key("reward", task.task_id, "challenger"),
                "task_id": task.task_id,
                "run_id": task.slot.run_id,
                "iteration": task.slot.iteration,
                "role": "challenger",
                "reward": reward.total,
                "parts_json": _json(parts),
            }
        )
    return rows


def training_rows(
    run_id: str, iteration: int, result: TrainResult, parent: str
) -> dict[str, list[Row]]:
    """The `checkpoints` row of one trained role (with the weights it started from) and a
    `training_steps` row per optimiser step."""
    checkpoint = {
        "checkpoint_id": content_key("checkpoint", run_id, iteration, result.role),
        "run_id": run_id,
        "iteration": iteration,
        "role": result.role,
        "path": str(result.checkpoint_dir),
        "parent": parent,
        "steps": len(result.steps),
    }
    steps = [
        {
            "training_step_id": content_key(
                "training_step", run_id, iteration, step.role, step.step
            ),
            "run_id": run_id,
            "iteration": iteration,
            "role": step.role,
            "step": step.step,
            "loss": step.loss,
            "reward_mean": step.reward_mean,
            "reward_std": step.reward_std,
            "kl": step.kl,
            "entropy": step.entropy,
            "step_seconds": step.step_seconds,
        }
        for step in result.steps
    ]
    return {"checkpoints": [checkpoint], "training_steps": steps}


def overlap_check_row(run_id: str, iteration: int, report: OverlapReport, items: int) -> Row:
    return {
        "overlap_check_id": content_key("overlap_check", run_id, iteration),
        "run_id": run_id,
        "iteration": iteration,
        "tasks_checked": report.checked,
        "items_checked": items,
        "overlapping_items": len(report.overlapping_item_ids),
        "overlapping_ids_json": _json(list(report.overlapping_item_ids)),
        "ngram": report.ngram,
    }
