"""One data-generation iteration as plain stage functions: propose, parse, solve, label.

Documents are sampled from a corpus; the Challenger proposes one task per slot (grounded in
a document, SPICE, or in nothing, R-Zero); the Solver answers each valid task m times without
the document; the answers are clustered by equivalence and majority-voted into a label with
its share p̂ and difficulty band. Code tasks (code_o / code_i / code_f) are validated by
running them in the sandbox, and their Solver answers are graded by execution: there the
executor verdict is the label and p̂ is the pass rate. Each stage makes one engine call and
returns records that `rows.py` turns into warehouse rows; `flows/generate.py` wires them.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from corpora import Document, chunk_documents, load_corpus, sample_corpus_path, sample_documents
from selfplay.config import Config
from selfplay.engine import Completion, RolloutEngine
from selfplay.kinds import EXECUTED_KINDS, Proposal, get_kind
from selfplay.kinds.base import Messages
from selfplay.kinds.code import validate_proposals, verify_proposal_answers
from selfplay.rewards import ChallengerOutcome
from verifiers.code_tasks import CodeVerdict
from verifiers.equivalence import EquivalenceChecker
from verifiers.majority import Band, MajorityLabel, difficulty_band, majority_vote
from verifiers.sandbox import SandboxPool
from warehouse.keys import content_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slot:
    """What one Challenger prompt asks for: a kind, and the document it is grounded in."""

    run_id: str
    iteration: int
    index: int
    kind: str
    document: Document | None

    @property
    def task_id(self) -> str:
        return content_key("task", self.run_id, self.iteration, self.index)


@dataclass(frozen=True)
class ProposedTask:
    slot: Slot
    prompt: Messages
    completion: Completion
    proposal: Proposal

    @property
    def task_id(self) -> str:
        return self.slot.task_id


@dataclass(frozen=True)
class SolverSample:
    task_id: str
    sample_index: int
    prompt: Messages
    completion: Completion
    answer: str | None

    @property
    def trajectory_id(self) -> str:
        return content_key("trajectory", self.task_id, "solver", self.sample_index)


@dataclass(frozen=True)
class TaskLabel:
    task_id: str
    kind: str
    majority: MajorityLabel
    band: Band
    reference_answer: str | None
    agrees_with_reference: bool | None
    equivalence_timeouts: int
    label_source: str = "majority"  # or "executor"
    # (kind, detail) of every sandbox event raised while grading this task's answers.
    sandbox_events: tuple[tuple[str, str], ...] = ()


def load_documents(config: Config) -> list[Document]:
    """The corpus, chunked; skipped files are logged, an unusable corpus raises CorpusError."""
    path = config.corpus.path or sample_corpus_path()
    loaded = load_corpus(path)
    for skipped in loaded.skipped:
        log.warning("corpus: skipped %s", skipped)
    return chunk_documents(
        loaded.documents, max_chars=config.corpus.chunk_chars, min_chars=config.corpus.min_chars
    )


def plan_slots(
    config: Config, documents: list[Document], run_id: str, iteration: int
) -> list[Slot]:
    """Kinds round-robin; a seeded share of slots grounded in a seeded sample of documents."""
    n = config.generate.tasks
    rng = random.Random(f"{config.run.seed}:{iteration}")
    grounded = [rng.random() < config.generate.grounded_fraction for _ in range(n)]
    picked = iter(
        sample_documents(documents, sum(grounded), seed=rng.randrange(2**31)) if documents else []
    )
    kinds = config.generate.kinds
    return [
        Slot(run_id, iteration, i, kinds[i % len(kinds)], next(picked) if grounded[i] else None)
        for i in range(n)
    ]


def propose(
    engine: RolloutEngine, slots: list[Slot], config: Config, pool: SandboxPool | None = None
) -> list[ProposedTask]:
    """One Challenger call for all slots, then parse each completion (rejections recorded);
    code proposals are then validated in the sandbox, in one batch."""
    limit = config.generate.max_document_chars
    prompts = [
        get_kind(s.kind).challenger_messages(s.document.text[:limit] if s.document else None)
        for s in slots
    ]
    formats = None
    if config.generate.constrained_format:
        formats = [get_kind(s.kind).challenger_format for s in slots]
    completions = engine.chat(prompts, config.sampling.challenger, n=1, formats=formats)
    proposals = [
        get_kind(slot.kind).parse_proposal(samples[0].text)
        for slot, samples in zip(slots, completions, strict=True)
    ]
    if any(p.kind in EXECUTED_KINDS for p in proposals):
        if pool is None:
            raise ValueError("code kinds need a SandboxPool to validate their programs")
        proposals = validate_proposals(pool, proposals)
    return [
        ProposedTask(slot, prompt, samples[0], proposal)
        for slot, prompt, samples, proposal in zip(
            slots, prompts, completions, proposals, strict=True
        )
    ]


def solve(engine: RolloutEngine, tasks: list[ProposedTask], config: Config) -> list[SolverSample]:
    """One Solver call: m samples for every valid task, answers extracted."""
    valid = [t for t in tasks if t.proposal.valid]
    prompts = [get_kind(t.slot.kind).solver_messages(t.proposal) for t in valid]
    m = config.generate.samples_per_task
    completions = engine.chat(prompts, config.sampling.solver, n=m)
    samples = []
    for task, prompt, group in zip(valid, prompts, completions, strict=True):
        kind = get_kind(task.slot.kind)
        for index, completion in enumerate(group):
            answer = kind.extract_answer(completion.text)
            samples.append(SolverSample(task.task_id, index, prompt, completion, answer))
    return samples


def label(
    checker: EquivalenceChecker,
    tasks: list[ProposedTask],
    samples: list[SolverSample],
    config: Config,
    pool: SandboxPool | None = None,
) -> list[TaskLabel]:
    """Majority vote over equivalence clusters, p̂, band, and agreement with the reference;
    for code kinds, executor verdicts instead of a vote."""
    by_task: dict[str, list[SolverSample]] = {}
    for sample in samples:
        by_task.setdefault(sample.task_id, []).append(sample)
    valid = [t for t in tasks if t.task_id in by_task]
    labels: list[TaskLabel] = []
    executed = [t for t in valid if t.slot.kind in EXECUTED_KINDS]
    if executed:
        if pool is None:
            raise ValueError("code kinds need a SandboxPool to grade their answers")
        groups = [[s.answer for s in by_task[t.task_id]] for t in executed]
        verdicts = verify_proposal_answers(pool, [t.proposal for t in executed], groups)
        labels.extend(_executor_labels(executed, groups, verdicts, config))
    for kind in sorted({t.slot.kind for t in valid} - EXECUTED_KINDS):
        of_kind = [t for t in valid if t.slot.kind == kind]
        groups = [[s.answer for s in by_task[t.task_id]] for t in of_kind]
        batch = checker.cluster_batch(groups, kind="mcq" if kind == "mcq" else "math")
        majorities = [majority_vote(g, c) for g, c in zip(groups, batch.cluster_ids, strict=True)]
        labels.extend(_with_reference(checker, of_kind, majorities, batch.timeouts, config))
    order = {t.task_id: i for i, t in enumerate(tasks)}
    return sorted(labels, key=lambda lab: order[lab.task_id])


def challenger_outcomes(
    tasks: list[ProposedTask], labels: list[TaskLabel]
) -> list[ChallengerOutcome]:
    """What the Solver's labels tell of each proposal, in task order: the input of the
    Challenger's reward (`selfplay.rewards.challenger_rewards`)."""
    by_task = {lab.task_id: lab for lab in labels}
    outcomes = []
    for task in tasks:
        found = by_task.get(task.task_id)
        valid = task.proposal.valid and found is not None
        pass_rate = found.majority.majority_share if found is not None else None
        outcomes.append(ChallengerOutcome(task.proposal.question, valid, pass_rate))
    return outcomes


def _with_reference(
    checker: EquivalenceChecker,
    tasks: list[ProposedTask],
    majorities: list[MajorityLabel],
    timeouts: list[int],
    config: Config,
) -> list[TaskLabel]:
    kind = tasks[0].slot.kind if tasks else ""
    comparable = [
        i
        for i, (t, m) in enumerate(zip(tasks, majorities, strict=True))
        if m.label is not None and t.proposal.reference_answer is not None
    ]
    pairs = [
        (majorities[i].label or "", tasks[i].proposal.reference_answer or "") for i in comparable
    ]
    verdicts = checker.equivalent(pairs, kind="mcq" if kind == "mcq" else "math")
    agreement: dict[int, bool | None] = dict(zip(comparable, verdicts, strict=True))
    low, high = config.labels.frontier_low, config.labels.frontier_high
    return [
        TaskLabel(
            task_id=t.task_id,
            kind=t.slot.kind,
            majority=m,
            band=difficulty_band(m.majority_share, low, high),
            reference_answer=t.proposal.reference_answer,
            agrees_with_reference=agreement.get(i),
            equivalence_timeouts=timeouts[i],
        )
        for i, (t, m) in enumerate(zip(tasks, majorities, strict=True))
    ]


def _executor_labels(
    tasks: list[ProposedTask],
    groups: list[list[str | None]],
    verdicts: list[list[CodeVerdict]],
    config: Config,
) -> list[TaskLabel]:
    """The executor is the ground truth: label = the reference, p̂ = the pass rate."""
    low, high = config.labels.frontier_low, config.labels.frontier_high
    labels = []
    for task, answers, task_verdicts in zip(tasks, groups, verdicts, strict=True):
        correct = tuple(v.correct for v in task_verdicts)
        pass_rate = sum(correct) / len(correct)
        result = MajorityLabel(
            label=task.proposal.reference_answer,
            majority_share=pass_rate,
            n_samples=len(answers),
            n_answered=sum(a is not None for a in answers),
            n_clusters=0,  # no answer clustering: each answer is run, not compared
            cluster_sizes=(),
            sample_in_label=correct,
        )
        events = tuple((e.kind, e.detail) for v in task_verdicts for e in v.events)
        labels.append(
            TaskLabel(
                task_id=task.task_id,
                kind=task.slot.kind,
                majority=result,
                band=difficulty_band(pass_rate, low, high),
                reference_answer=task.proposal.reference_answer,
                agrees_with_reference=None,  # the reference is the label
                equivalence_timeouts=0,
                label_source="executor",
                sandbox_events=events,
            )
        )
    return labels
