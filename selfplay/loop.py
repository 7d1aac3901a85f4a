"""The training iterations of `selfplay run`, as plain functions over the warehouse and engines.

Iteration k (1..K) has five stages: propose and solve_and_label (`selfplay.generate`), then
train_solver, train_challenger and evaluate; the held-out evaluation before any training is
stage "evaluate" of iteration 0. `flows/run.py` commits each stage with its `stage_runs` row in
one transaction. Every stage after propose reads its inputs back from the warehouse, not from
memory, so a run resumed after a crash takes exactly the path an uninterrupted one takes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from corpora import Document
from selfplay.config import Config
from selfplay.engine import Completion, RolloutEngine
from selfplay.generate import ProposedTask, Slot, challenger_outcomes, label, solve
from selfplay.kinds import EXECUTED_KINDS, Proposal, get_kind
from selfplay.kinds.code import validate_proposals
from selfplay.rewards import challenger_rewards
from selfplay.training import ChallengerPrompt, SolverExample
from verifiers.equivalence import EquivalenceChecker
from verifiers.sandbox import SandboxPool
from warehouse.writer import Warehouse

STAGES = ("propose", "solve_and_label", "train_solver", "train_challenger", "evaluate")
BASELINE = 0  # the iteration number of the evaluation before any training
ROLES = ("solver", "challenger")


def completed_stages(warehouse: Warehouse, run_id: str) -> set[tuple[int, str]]:
    """(iteration, stage) of every stage of the run that committed."""
    table = warehouse.query(
        "SELECT iteration, stage FROM stage_runs WHERE run_id = ? AND status = 'completed'",
        [run_id],
    )
    return {(row["iteration"], row["stage"]) for row in table.to_pylist()}


def current_weights(warehouse: Warehouse, run_id: str, shared: bool) -> dict[str, str]:
    """role -> the checkpoint each role continues from; roles the run has not trained yet are
    absent (they start from the configured model).

    Shared weights: both roles continue from the newest checkpoint of either role (the
    Challenger trains after the Solver within an iteration, from its checkpoint).
    """
    rows = warehouse.query(
        "SELECT role, path FROM checkpoints WHERE run_id = ? "
        "ORDER BY iteration, CASE role WHEN 'solver' THEN 0 ELSE 1 END",
        [run_id],
    ).to_pylist()
    if shared:
        return dict.fromkeys(ROLES, rows[-1]["path"]) if rows else {}
    return {row["role"]: row["path"] for row in rows}  # the newest of each role wins


def restore_tasks(warehouse: Warehouse, run_id: str, iteration: int) -> list[ProposedTask]:
    """The iteration's proposals as the propose stage made them, rebuilt from their rows."""
    rows = warehouse.query(
        "SELECT t.*, d.text AS doc_text, d.source AS doc_source, d.title AS doc_title, "
        "d.metadata_json AS doc_metadata, d.chunk_index AS doc_chunk, d.parent_id AS doc_parent "
        "FROM tasks AS t LEFT JOIN documents AS d ON d.doc_id = t.doc_id "
        "WHERE t.run_id = ? AND t.iteration = ? ORDER BY t.slot",
        [run_id, iteration],
    ).to_pylist()
    return [_restored_task(row) for row in rows]


def _restored_task(row: dict[str, Any]) -> ProposedTask:
    document = None
    if row["doc_id"] is not None:
        document = Document(
            doc_id=row["doc_id"],
            text=row["doc_text"],
            source=row["doc_source"],
            title=row["doc_title"],
            metadata=json.loads(row["doc_metadata"] or "{}"),
            chunk_index=row["doc_chunk"],
            parent_id=row["doc_parent"],
        )
    slot = Slot(row["run_id"], row["iteration"], row["slot"], row["kind"], document)
    proposal = Proposal(
        kind=row["kind"],
        question=row["question"],
        reference_answer=row["reference_answer"],
        options=tuple(json.loads(row["options_json"])) if row["options_json"] else None,
        payload=json.loads(row["payload_json"]) if row["payload_json"] else {},
        rejection=row["rejection_reason"],
    )
    completion = Completion(
        text=row["raw_completion"],
        prompt_tokens=0,  # not stored; nothing downstream of propose reads it
        completion_tokens=row["completion_tokens"],
        finish_reason=None,
        latency_s=row["latency_s"],
    )
    return ProposedTask(slot, json.loads(row["prompt_json"]), completion, proposal)


def solver_examples(
    warehouse: Warehouse, run_id: str, iteration: int, at_least: int = 1
) -> list[SolverExample]:
    """The iteration's frontier tasks with their labels and p̂, as Solver GRPO examples,
    repeated in order up to `at_least` when there are some but fewer (one optimiser step's
    prompts: each repeat is its own GRPO group, so a repeat only reweights its task).

    Code kinds carry their validated task (`SolverExample.code_task`): the Solver reward
    runs their answers through the executor, as labelling did.
    """
    rows = warehouse.query(
        "SELECT t.task_id, l.label, d.pass_rate FROM tasks AS t "
        "JOIN difficulty AS d ON d.task_id = t.task_id "
        "JOIN labels AS l ON l.task_id = t.task_id AND l.solver_checkpoint = d.solver_checkpoint "
        "WHERE t.run_id = ? AND t.iteration = ? AND d.band = 'frontier' AND l.label IS NOT NULL "
        "ORDER BY t.slot",
        [run_id, iteration],
    ).to_pylist()
    tasks = {task.task_id: task for task in restore_tasks(warehouse, run_id, iteration)}
    examples = []
    for row in rows:
        task = tasks[row["task_id"]]
        executed = task.slot.kind in EXECUTED_KINDS
        examples.append(
            SolverExample(
                prompt=get_kind(task.slot.kind).solver_messages(task.proposal),
                label=row["label"],
                kind=task.slot.kind,
                pass_rate=float(row["pass_rate"]),
                code_task=json.dumps(task.proposal.payload, sort_keys=True) if executed else "",
            )
        )
    return _repeated(examples, at_least)


def challenger_prompts(
    warehouse: Warehouse, run_id: str, iteration: int, at_least: int = 1
) -> list[ChallengerPrompt]:
    """The prompts the Challenger saw in the iteration, in slot order (its GRPO prompts),
    repeated up to `at_least` as in `solver_examples`."""
    prompts = [
        ChallengerPrompt(task.prompt, task.slot.kind)
        for task in restore_tasks(warehouse, run_id, iteration)
    ]
    return _repeated(prompts, at_least)


def _repeated(items: list, at_least: int) -> list:
    if not items or len(items) >= at_least:
        return items
    return [items[i % len(items)] for i in range(at_least)]


def trained_task_texts(warehouse: Warehouse, run_id: str, up_to: int) -> list[str]:
    """Every valid question of the run's iterations up to `up_to`: what training may have seen
    (a superset of the frontier tasks, so the overlap check errs on the strict side)."""
    table = warehouse.query(
        "SELECT question FROM tasks WHERE run_id = ? AND iteration <= ? AND parse_status = 'valid'",
        [run_id, up_to],
    )
    return [text for text in table.column("question").to_pylist() if text]


class SolverJudgedReward:
    """The Challenger's GRPO reward: parse each proposal, sample the Solver m times on the
    valid ones (one engine call), label them as data generation does, and score p̂ with the
    configured difficulty reward minus the repetition penalty (`selfplay.rewards`).

    `last` keeps the rewards of the latest batch, for logging.
    """

    def __init__(
        self,
        solver: RolloutEngine,
        checker: EquivalenceChecker,
        config: Config,
        pool: SandboxPool | None = None,
    ) -> None:
        self.solver, self.checker, self.config, self.pool = solver, checker, config, pool
        self.batches = 0
        self.last: list[float] = []

    def __call__(self, completions: list[str], kinds: list[str]) -> list[float]:
        self.batches += 1
        proposals = [get_kind(k).parse_proposal(c) for c, k in zip(completions, kinds, strict=True)]
        if self.pool is not None and any(p.kind in EXECUTED_KINDS for p in proposals):
            proposals = validate_proposals(self.pool, proposals)
        # Scratch slots: these proposals are scored, not stored as tasks.
        tasks = [
            ProposedTask(
                Slot("challenger-grpo", self.batches, index, proposal.kind, None),
                [],
                Completion(text, 0, 0, None, 0.0),
                proposal,
            )
            for index, (text, proposal) in enumerate(zip(completions, proposals, strict=True))
        ]
        samples = solve(self.solver, tasks, self.config)
        labels = label(self.checker, tasks, samples, self.config, self.pool)
        outcomes = challenger_outcomes(tasks, labels)
        self.last = [r.total for r in challenger_rewards(outcomes, self.config.rewards)]
        return self.last


def checkpoint_dir(run_dir: Path, iteration: int) -> Path:
    """Where iteration `iteration` saves its checkpoints (one folder per role below it)."""
    return run_dir / f"iteration-{iteration:03d}"
