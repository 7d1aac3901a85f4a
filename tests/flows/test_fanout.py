"""The fan-out stages (verification, held-out scoring, corpus preprocessing) give the same
warehouse rows on Prefect's thread pool and on a local Ray cluster started here.

No model: tasks, Solver samples and held-out completions are written by hand, as in
tests/selfplay/test_stages.py; labelling runs on real math-verify workers and the real
sandbox, scoring on reasoning-gym's scorers and HumanEval in the sandbox, and the rows land
in real DuckDB files. The stages run inside a Prefect flow and task whose parameters hold an
open Warehouse (like the real `run` flow's `_Run`), which Ray cannot pickle.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prefect import flow, runtime, task
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from corpora import Document
from flows.fanout import (
    ProcessVerifiers,
    build_task_runner,
    fan_out,
    label_fanned_out,
    load_documents_fanned_out,
    process_verifiers,
    score_fanned_out,
    split_contiguous,
)
from selfplay.config import Config, ConfigError, EvaluationConfig, FlowsConfig
from selfplay.engine import Completion
from selfplay.evaluation import (
    HUMANEVAL,
    EvalItem,
    EvalResult,
    evaluation_rows,
    humaneval_limits,
    load_heldout,
    score,
)
from selfplay.generate import ProposedTask, Slot, SolverSample, TaskLabel, label, load_documents
from selfplay.kinds import get_kind
from selfplay.kinds.code import validate_proposals
from selfplay.rows import (
    challenger_reward_rows,
    document_rows,
    label_rows,
    sandbox_event_rows,
    task_rows,
    trajectory_rows,
)
from verifiers.equivalence import EquivalenceChecker
from verifiers.sandbox import SandboxLimits, SandboxPool
from warehouse.writer import Warehouse

RUN_ID = "run-fanout"
MODEL = "hand-written"
CHUNKS = 3
DOUBLE = "```python\ndef f(x):\n    return x * 2\n```\n"
REVERSE = "```python\ndef f(s):\n    return s[::-1]\n```\n"


def _math(question: str, answer: str) -> str:
    return f"<question>{question}</question>\n<answer>\\boxed{{{answer}}}</answer>"


PROPOSALS: list[tuple[str, str, list[str | None]]] = [  # kind, Challenger, Solver answers
    ("code_o", DOUBLE + "<input>3</input>", ["6", "6", "7", None]),
    ("math", _math("What is 2 + 3?", "5"), ["5", "5.0", "6", "5"]),
    ("math", _math("Half of one?", "\\frac{1}{2}"), ["0.5", "1/2", "2", None]),
    ("mcq", "no options here", []),  # rejected: no samples, no label
    ("code_o", REVERSE + "<input>'abc'</input>", ["'cba'", "cba", "'abc'", "'cba'"]),
    ("math", _math("What is 7 * 6?", "42"), ["42", "42", "42", "41"]),
    # f from its pairs; one answer imports os: a sandbox event to store.
    (
        "code_f",
        DOUBLE + "".join(f"<input>{i}</input>" for i in range(1, 5)),
        ["def f(x):\n    import os\n    return x", "def f(x):\n    return x + x", None],
    ),
]
TABLES = (
    "documents", "tasks", "trajectories", "labels", "difficulty", "sandbox_events", "rewards",
    "evaluations",
)  # fmt: skip


# --- inputs ---------------------------------------------------------------------------------


def _config(task_runner: str, corpus: Path) -> Config:
    return Config.model_validate(
        {
            "flows": {"task_runner": task_runner, "fanout_chunks": CHUNKS},
            "corpus": {"path": str(corpus), "chunk_chars": 400, "min_chars": 100},
            "generate": {"kinds": ["math", "mcq", "code_o", "code_f"]},
            "executor": {"workers": 1},  # one sandbox slot per Ray worker: less to start
        }
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five files: long ones to chunk, a text repeated across files, a bad line, a .csv."""
    root = tmp_path_factory.mktemp("corpus")
    paragraph = "A prime has exactly two divisors. Composite numbers have more than two. "
    (root / "a.md").write_text("# Primes\n\n" + "\n\n".join([paragraph * 3] * 6))
    (root / "b.txt").write_text("Graphs are sets of vertices joined by edges.")
    (root / "c.jsonl").write_text(
        '{"text": "Graphs are sets of vertices joined by edges."}\n{"text": broken\n'
        '{"text": "A matrix is a rectangular array of numbers.", "title": "Matrices"}\n'
    )
    (root / "d.csv").write_text("a,b\n1,2\n")
    (root / "sub").mkdir()
    (root / "sub" / "e.txt").write_text(
        " ".join(f"Sentence number {i} ends here." for i in range(90))
    )
    return root


def _completion(text: str) -> Completion:
    return Completion(
        text, prompt_tokens=10, completion_tokens=5, finish_reason="stop", latency_s=0.1
    )


@pytest.fixture(scope="module")
def generation_pool() -> Any:
    # As `start_engines` opens it for config.executor.
    executor = Config().executor
    limits = SandboxLimits(
        wall_s=executor.timeout_s, cpu_s=executor.timeout_s, memory_mb=executor.memory_mb
    )
    with SandboxPool(workers=1, limits=limits) as pool:
        yield pool


@pytest.fixture(scope="module")
def eval_pool() -> Any:
    with SandboxPool(workers=1, limits=humaneval_limits()) as pool:
        yield pool


@pytest.fixture(scope="module")
def checker() -> Any:
    with EquivalenceChecker(workers=1) as checker:
        yield checker


@pytest.fixture(scope="module")
def proposed(generation_pool: SandboxPool) -> tuple[list[ProposedTask], list[SolverSample]]:
    tasks, samples = [], []
    for index, (kind, text, answers) in enumerate(PROPOSALS):
        (proposal,) = validate_proposals(generation_pool, [get_kind(kind).parse_proposal(text)])
        slot = Slot(RUN_ID, 1, index, kind, None)
        prompt = [{"role": "user", "content": "propose"}]
        tasks.append(ProposedTask(slot, prompt, _completion(text), proposal))
        for sample_index, answer in enumerate(answers):
            samples.append(
                SolverSample(
                    slot.task_id, sample_index, [{"role": "user", "content": "solve"}],
                    _completion(f"The answer is {answer}"), answer,
                )
            )  # fmt: skip
    assert [t.proposal.valid for t in tasks] == [True, True, True, False, True, True, True]
    return tasks, samples


@pytest.fixture(scope="module")
def heldout() -> tuple[list[EvalItem], list[str]]:
    """Fixed completions: right and wrong reasoning-gym answers, a passing and a failing
    HumanEval program."""
    items = load_heldout(
        EvaluationConfig(reasoning_gym=["basic_arithmetic"], items_per_task=4, humaneval_problems=2)
    )
    completions = []
    for index, item in enumerate(items):
        if item.benchmark == HUMANEVAL:
            body = item.reference if index % 2 == 0 else "    return None\n"
            completions.append(f"```python\n{body}```")
        else:
            answer = item.reference if index % 2 == 0 else f"{item.reference}1"
            completions.append(f"So the result is \\boxed{{{answer}}}.")
    return items, completions


# --- the stages inside a flow, as the flows run them -------------------------------------------


@dataclass
class Verifiers:
    """The stage's own checker and pools, as `start_engines` and `evaluate_stage` open them."""

    checker: EquivalenceChecker
    generation_pool: SandboxPool
    eval_pool: SandboxPool


@dataclass
class StageOutputs:
    flow_run_id: str
    documents: list[Document]
    labels: list[TaskLabel]
    results: list[EvalResult]


@task(name="label-stage", cache_policy=NONE)
def _label_stage(
    warehouse: Warehouse,
    verifiers: Verifiers,
    tasks: list[ProposedTask],
    samples: list[SolverSample],
    config: Config,
) -> list[TaskLabel]:
    """`flows.generate.label_stage` without an engine: labels and their rows."""
    labels = label_fanned_out(verifiers.checker, tasks, samples, config, verifiers.generation_pool)
    labels_out, difficulty_out = label_rows(labels, tasks, MODEL, config)
    warehouse.write_all(
        {
            "trajectories": trajectory_rows(samples, labels, tasks, MODEL, config.sampling.solver),
            "labels": labels_out,
            "difficulty": difficulty_out,
            "sandbox_events": sandbox_event_rows(tasks, labels),
            "rewards": challenger_reward_rows(tasks, labels, config),
        }
    )
    return labels


@task(name="evaluate-stage", cache_policy=NONE)
def _evaluate_stage(
    warehouse: Warehouse,
    verifiers: Verifiers,
    items: list[EvalItem],
    completions: list[str],
    config: Config,
) -> list[EvalResult]:
    """`flows.run.evaluate_stage` after its one engine call."""
    results = score_fanned_out(config, items, completions, verifiers.eval_pool)
    warehouse.write("evaluations", evaluation_rows(results, RUN_ID, 1, MODEL))
    return results


@flow(name="fanout-stages", validate_parameters=False)
def _stages_flow(
    warehouse: Warehouse,
    verifiers: Verifiers,
    config: Config,
    proposed: tuple[list[ProposedTask], list[SolverSample]],
    heldout: tuple[list[EvalItem], list[str]],
) -> StageOutputs:
    documents = load_documents_fanned_out(config)
    tasks, samples = proposed
    warehouse.write_all(
        {
            "documents": document_rows(documents),
            "tasks": task_rows(tasks, MODEL, config.sampling.challenger),
        }
    )
    labels = _label_stage(warehouse, verifiers, tasks, samples, config)
    results = _evaluate_stage(warehouse, verifiers, *heldout, config)
    return StageOutputs(str(runtime.flow_run.id), documents, labels, results)


def _run_stages(
    path: Path, config: Config, verifiers: Verifiers, proposed, heldout
) -> StageOutputs:
    with Warehouse.open(path) as warehouse:
        return _stages_flow(warehouse, verifiers, config, proposed, heldout)


def _stored_rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of the compared tables, in a fixed order, without the write timestamps."""
    rows = {}
    with duckdb.connect(str(path), read_only=True) as conn:
        for table in TABLES:
            columns = [name for (name, *_) in conn.execute(f"DESCRIBE {table}").fetchall()]
            kept = ", ".join(name for name in columns if name != "created_at")
            rows[table] = conn.execute(f"SELECT {kept} FROM {table} ORDER BY ALL").fetchall()
    return rows


def _piece_runs(flow_run_id: str) -> Counter[tuple[str, str]]:
    """(piece task, final state) of the flow run's piece task runs, as the Prefect API has them."""
    runs_of = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=runs_of)
    # Task run names are the task's name and a short suffix: "label-piece-7bb".
    return Counter((run.name.rsplit("-", 1)[0], str(run.state_name)) for run in runs)


@task(name="probe-piece", cache_policy=NONE)
def _probe_piece(items: list[int]) -> list[ProcessVerifiers]:
    return [process_verifiers() for _ in items]


# --- tests -----------------------------------------------------------------------------------


def test_split_is_contiguous_balanced_and_never_empty():
    assert split_contiguous(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split_contiguous(["a", "b"], 4) == [["a"], ["b"]]
    assert split_contiguous([], 4) == []
    assert split_contiguous(list(range(4)), 1) == [[0, 1, 2, 3]]


def test_ray_runner_without_prefect_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "prefect_ray", None)  # what an absent package looks like
    with pytest.raises(ConfigError, match=r"install the `ray` extra .*task_runner=threads"):
        build_task_runner(FlowsConfig(task_runner="ray"))


def test_a_remote_cluster_cannot_use_this_machines_api():
    pytest.importorskip("prefect_ray")
    remote = FlowsConfig(task_runner="ray", ray_address="ray://head.example:10001")
    with pytest.raises(ConfigError, match="cannot reach the Prefect API at http://127.0.0.1"):
        fan_out(remote, _probe_piece, [1])


def test_ray_gives_the_same_rows_as_the_thread_pool(
    tmp_path: Path, corpus: Path, checker, generation_pool, eval_pool, proposed, heldout
):
    ray = pytest.importorskip("ray")
    pytest.importorskip("prefect_ray")
    verifiers = Verifiers(checker, generation_pool, eval_pool)
    threads_config = _config("threads", corpus)
    threads = _run_stages(tmp_path / "threads.duckdb", threads_config, verifiers, proposed, heldout)

    # The thread pool changes nothing: the same as the stage functions called directly.
    tasks, samples = proposed
    assert threads.documents == load_documents(threads_config)
    assert threads.labels == label(checker, tasks, samples, threads_config, generation_pool)
    items, completions = heldout
    assert threads.results == score(items, completions, eval_pool)

    # A small local cluster on loopback (the test's own: the stages join it).
    ray.init(
        num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False,
        _node_ip_address="127.0.0.1",
    )  # fmt: skip
    try:
        ray_config = _config("ray", corpus)
        on_ray = _run_stages(tmp_path / "ray.duckdb", ray_config, verifiers, proposed, heldout)
        probes = fan_out(ray_config.flows, _probe_piece, list(range(2 * CHUNKS)))
    finally:
        ray.shutdown()

    assert on_ray.documents == threads.documents
    assert on_ray.labels == threads.labels
    assert on_ray.results == threads.results
    stored_threads = _stored_rows(tmp_path / "threads.duckdb")
    stored_ray = _stored_rows(tmp_path / "ray.duckdb")
    for table in TABLES:
        assert stored_threads[table], f"{table}: no rows to compare"
        assert stored_ray[table] == stored_threads[table], table

    # What the inputs were built to exercise, so that equal rows mean something.
    assert len(threads.documents) > 5 and any(d.chunk_index > 0 for d in threads.documents)
    assert {lab.label_source for lab in threads.labels} == {"executor", "majority"}
    assert ("banned_import", "os (line 2)") in threads.labels[-1].sandbox_events
    assert {r.score for r in threads.results if r.item.benchmark == HUMANEVAL} == {0.0, 1.0}

    # Each stage ran as CHUNKS piece task runs under its flow run; from Ray workers too,
    # which reported them to this process's Prefect API.
    expected = {
        (piece, "Completed"): CHUNKS
        for piece in ("read-corpus-piece", "chunk-corpus-piece", "label-piece", "score-piece")
    }
    for outputs in (threads, on_ray):
        runs = _piece_runs(outputs.flow_run_id)
        assert {key: count for key, count in runs.items() if key in expected} == expected

    # The pieces ran in Ray worker processes, each starting its verifiers once and keeping
    # them (one checker; one pool per sandbox limits): none was started in this process.
    assert process_verifiers() == ProcessVerifiers(os.getpid(), 0, 0)
    assert all(probe.pid != os.getpid() for probe in probes)
    assert all(probe.checkers <= 1 and probe.pools <= 2 for probe in probes)
    assert any(probe.checkers == 1 for probe in probes), probes
