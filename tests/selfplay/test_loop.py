"""What the training iterations read back from a real DuckDB warehouse: restored proposals,
frontier examples, the weights each role continues from, Challenger reward rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from corpora import Document
from corpora.documents import content_id
from selfplay.config import Config
from selfplay.engine import Completion
from selfplay.generate import ProposedTask, Slot, SolverSample, TaskLabel, label
from selfplay.kinds import get_kind
from selfplay.kinds.code import validate_proposals
from selfplay.loop import (
    challenger_prompts,
    completed_stages,
    current_weights,
    restore_tasks,
    solver_examples,
    trained_task_texts,
)
from selfplay.rows import (
    challenger_reward_rows,
    document_rows,
    label_rows,
    task_rows,
    training_rows,
)
from selfplay.training import TrainResult, TrainStep, default_solver_reward
from verifiers.equivalence import EquivalenceChecker
from verifiers.majority import MajorityLabel, difficulty_band
from verifiers.sandbox import SandboxLimits, SandboxPool
from warehouse.writer import Warehouse

RUN = "run-1"
CONFIG = Config()


def _document() -> Document:
    text = "Sums of two small numbers."
    return Document(doc_id=content_id(text), text=text, source="test", title="sums")


def _tasks() -> list[ProposedTask]:
    math, mcq = get_kind("math"), get_kind("mcq")
    completions = [
        "<question>What is 2 + 3?</question>\n<answer>\\boxed{5}</answer>",
        "<question>What is 4 + 4?</question>\n<answer>\\boxed{8}</answer>",
        "no tags at all",
        "<question>Which is even?</question>\n<options>A) 1\nB) 2\nC) 3\nD) 5</options>\n"
        "<answer>B</answer>",
    ]
    kinds = [math, math, math, mcq]
    document = _document()
    tasks = []
    for index, (kind, text) in enumerate(zip(kinds, completions, strict=True)):
        grounded = document if index % 2 == 0 else None
        slot = Slot(RUN, 1, index, kind.name, grounded)
        prompt = kind.challenger_messages(grounded.text if grounded else None)
        completion = Completion(text, 50, 20, "stop", 0.5)
        tasks.append(ProposedTask(slot, prompt, completion, kind.parse_proposal(text)))
    return tasks


def _label(task: ProposedTask, share: float) -> TaskLabel:
    majority = MajorityLabel(
        label=task.proposal.reference_answer,
        majority_share=share,
        n_samples=4,
        n_answered=4,
        n_clusters=2,
        cluster_sizes=(int(share * 4), 4 - int(share * 4)),
        sample_in_label=tuple(i < share * 4 for i in range(4)),
    )
    band = difficulty_band(share, CONFIG.labels.frontier_low, CONFIG.labels.frontier_high)
    return TaskLabel(task.task_id, task.slot.kind, majority, band, None, None, 0)


@pytest.fixture
def warehouse(tmp_path: Path):
    tasks = _tasks()
    valid = [t for t in tasks if t.proposal.valid]
    labels = [_label(valid[0], 0.5), _label(valid[1], 1.0), _label(valid[2], 0.75)]
    labels_out, difficulty_out = label_rows(labels, tasks, "ckpt-0", CONFIG)
    with Warehouse.open(tmp_path / "w.duckdb") as warehouse:
        warehouse.write_all(
            {
                "documents": document_rows([t.slot.document for t in tasks if t.slot.document]),
                "tasks": task_rows(tasks, "ckpt-0", CONFIG.sampling.challenger),
                "labels": labels_out,
                "difficulty": difficulty_out,
                "rewards": challenger_reward_rows(tasks, labels, CONFIG),
            }
        )
        yield warehouse


def test_restored_tasks_equal_what_propose_made(warehouse: Warehouse):
    made = _tasks()
    restored = restore_tasks(warehouse, RUN, 1)
    assert [t.slot for t in restored] == [t.slot for t in made]
    assert [t.proposal for t in restored] == [t.proposal for t in made]
    assert [t.prompt for t in restored] == [t.prompt for t in made]
    assert [t.completion.text for t in restored] == [t.completion.text for t in made]
    assert restore_tasks(warehouse, RUN, 2) == []


def test_solver_examples_are_the_frontier_tasks_with_labels(warehouse: Warehouse):
    examples = solver_examples(warehouse, RUN, 1)
    # p̂ 0.5 (math) and 0.75 (mcq) are in the band; p̂ 1.0 is too easy; slot 2 was rejected.
    assert [(e.kind, e.label, e.pass_rate) for e in examples] == [
        ("math", "5", 0.5),
        ("mcq", "B", 0.75),
    ]
    assert examples[0].prompt == get_kind("math").solver_messages(_tasks()[0].proposal)
    # Fewer than one optimiser step's prompts: repeated in order.
    assert [e.label for e in solver_examples(warehouse, RUN, 1, at_least=5)] == [
        "5",
        "B",
        "5",
        "B",
        "5",
    ]


# (kind, Challenger completion, the Solver's four answers): the executor passes two of the
# code_o answers (p̂ 0.5, frontier) and all four code_i ones (p̂ 1.0, too easy).
CODE_TASKS = (
    ("code_o", "```python\ndef f(n):\n    return n * 3 + 1\n```\n<input>4</input>",
     ("13", "13", "12", "14")),
    ("code_i", "```python\ndef f(s):\n    return s[::-1]\n```\n<input>'ab'</input>",
     ("'ab'",) * 4),
)  # fmt: skip


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(workers=2, limits=SandboxLimits(wall_s=2.0, cpu_s=1.0)) as sandbox:
        yield sandbox


def test_solver_examples_include_code_tasks_graded_by_the_executor(
    pool: SandboxPool, tmp_path: Path
):
    """From the propose stage's validation through executor labels and stored rows to the
    Solver reward: a frontier code task trains the Solver, with its task for the executor."""
    parsed = [get_kind(kind).parse_proposal(text) for kind, text, _ in CODE_TASKS]
    tasks = [
        ProposedTask(
            Slot(RUN, 1, index, proposal.kind, None),
            get_kind(proposal.kind).challenger_messages(None),
            Completion(text, 50, 20, "stop", 0.5),
            proposal,
        )
        for index, ((_, text, _), proposal) in enumerate(
            zip(CODE_TASKS, validate_proposals(pool, parsed), strict=True)
        )
    ]
    samples = [
        SolverSample(task.task_id, index, [], Completion("", 0, 0, "stop", 0.1), answer)
        for task, (_, _, answers) in zip(tasks, CODE_TASKS, strict=True)
        for index, answer in enumerate(answers)
    ]
    with EquivalenceChecker(workers=1) as checker:
        labels = label(checker, tasks, samples, CONFIG, pool)
        assert [(lab.label_source, lab.majority.majority_share) for lab in labels] == [
            ("executor", 0.5),
            ("executor", 1.0),
        ]
        labels_out, difficulty_out = label_rows(labels, tasks, "ckpt-0", CONFIG)
        with Warehouse.open(tmp_path / "w.duckdb") as warehouse:
            warehouse.write_all(
                {
                    "tasks": task_rows(tasks, "ckpt-0", CONFIG.sampling.challenger),
                    "labels": labels_out,
                    "difficulty": difficulty_out,
                }
            )
            examples = solver_examples(warehouse, RUN, 1)
        assert [(e.kind, e.label, e.pass_rate) for e in examples] == [("code_o", "13", 0.5)]
        [example] = examples
        assert example.prompt == get_kind("code_o").solver_messages(tasks[0].proposal)
        assert json.loads(example.code_task)["pairs"] == [["4", "13"]]
        reward = default_solver_reward(checker, CONFIG.rewards, pool)
        completions = ["<answer>13</answer>", "<answer>12</answer>"]
        values = reward(
            completions, [example.label] * 2, [example.kind] * 2, [0.5] * 2, [example.code_task] * 2
        )
        assert values == [1.0, 0.0]


def test_challenger_prompts_and_trained_texts(warehouse: Warehouse):
    prompts = challenger_prompts(warehouse, RUN, 1)
    assert [p.kind for p in prompts] == ["math", "math", "math", "mcq"]
    assert prompts[0].prompt == _tasks()[0].prompt
    assert sorted(trained_task_texts(warehouse, RUN, 1)) == [
        "What is 2 + 3?",
        "What is 4 + 4?",
        "Which is even?",
    ]
    assert trained_task_texts(warehouse, RUN, 0) == []


def test_challenger_reward_rows_score_every_proposal(warehouse: Warehouse):
    rows = warehouse.query(
        "SELECT t.slot, r.reward, r.parts_json FROM rewards AS r JOIN tasks AS t USING (task_id) "
        "ORDER BY t.slot"
    ).to_pylist()
    assert [row["slot"] for row in rows] == [0, 1, 2, 3]
    assert rows[2]["reward"] == CONFIG.rewards.invalid_reward  # the unparseable one
    # Uncertainty (R-Zero): 1 - 2|p̂ - 1/2| is 1 at p̂ 0.5 and 0 at p̂ 1, minus |C|/B = 1/3.
    assert rows[0]["reward"] == pytest.approx(1 - 1 / 3)
    assert rows[1]["reward"] == pytest.approx(0 - 1 / 3)
    # The view casts every part to DOUBLE: the parts must all be numbers.
    parts = warehouse.query("SELECT part, value FROM challenger_reward_parts").to_pylist()
    assert {p["part"] for p in parts} == {"uncertainty", "repetition_penalty", "invalid"}


def _trained(warehouse: Warehouse, iteration: int, role: str, parent: str) -> str:
    path = Path(f"/ckpt/{iteration}/{role}")
    step = TrainStep(role, 1, 0.1, 0.5, 0.2, None, 1.0, 3.0)
    result = TrainResult(role, path, [step])
    warehouse.write_all(training_rows(RUN, iteration, result, parent))
    return str(path)


def test_current_weights_follow_the_lineage(warehouse: Warehouse):
    assert current_weights(warehouse, RUN, shared=True) == {}
    solver = _trained(warehouse, 1, "solver", "base")
    assert current_weights(warehouse, RUN, shared=True) == {"solver": solver, "challenger": solver}
    challenger = _trained(warehouse, 1, "challenger", solver)
    shared = current_weights(warehouse, RUN, shared=True)
    assert shared == {"solver": challenger, "challenger": challenger}
    assert current_weights(warehouse, RUN, shared=False) == {
        "solver": solver,
        "challenger": challenger,
    }
    assert warehouse.count("training_steps") == 2


def test_completed_stages_are_read_per_run(warehouse: Warehouse):
    assert completed_stages(warehouse, RUN) == set()
    for run_id, stage in ((RUN, "propose"), ("other-run", "evaluate")):
        warehouse.write(
            "stage_runs",
            [
                {
                    "stage_run_id": content_id(run_id + stage),
                    "run_id": run_id,
                    "iteration": 1,
                    "stage": stage,
                    "started_at": datetime(2026, 11, 22, 0, 0),
                    "finished_at": datetime(2026, 11, 22, 0, 1),
                    "rows_written": 4,
                    "status": "completed",
                }
            ],
        )
    assert completed_stages(warehouse, RUN) == {(1, "propose")}
