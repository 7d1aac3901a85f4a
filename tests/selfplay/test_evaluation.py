"""Held-out evaluation on real parts: reasoning-gym scorers, HumanEval problems, the sandbox
pool, the warehouse's evaluations table and (once per module) vLLM with the tiny model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfplay.config import EngineConfig, EvaluationConfig
from selfplay.engine import RolloutEngine
from selfplay.evaluation import (
    HUMANEVAL,
    EvalItem,
    EvalResult,
    eval_sampling,
    evaluate,
    evaluation_rows,
    grade_humaneval,
    grade_reasoning_gym,
    humaneval_limits,
    humaneval_program,
    load_heldout,
    overlap_with_training,
    summarise,
)
from verifiers.answers import extract_math_answer
from verifiers.sandbox import SandboxPool
from warehouse.keys import content_key
from warehouse.writer import Warehouse

TASKS = ["basic_arithmetic", "chain_sum", "leg_counting"]
# Small but every benchmark present: 3 tasks x 4 items + 3 HumanEval problems.
SMALL = EvaluationConfig(reasoning_gym=TASKS, items_per_task=4, humaneval_problems=3, seed=7)
EVALUATION_COLUMNS = {
    "evaluation_id", "run_id", "iteration", "checkpoint", "benchmark", "item_id", "prompt",
    "answer", "score", "created_at",
}  # fmt: skip


@pytest.fixture(scope="module")
def items() -> list[EvalItem]:
    return load_heldout(SMALL)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxPool]:
    # Short limits so that the infinite-loop case costs about a second.
    with SandboxPool(workers=2, limits=humaneval_limits(wall_s=2.0, cpu_s=1.0)) as pool:
        yield pool


def _by_benchmark(items: list[EvalItem], benchmark: str) -> list[EvalItem]:
    return [item for item in items if item.benchmark == benchmark]


# --- loading ---------------------------------------------------------------------------


def test_heldout_counts_and_order(items: list[EvalItem]):
    counts = {name: len(_by_benchmark(items, name)) for name in [*TASKS, HUMANEVAL]}
    assert counts == {**dict.fromkeys(TASKS, 4), HUMANEVAL: 3}
    assert [item.benchmark for item in items[:4]] == ["basic_arithmetic"] * 4
    assert len({item.item_id for item in items}) == len(items)
    for item in items:
        assert item.prompt[-1]["role"] == "user"
        assert item.text in item.prompt[-1]["content"]
        assert item.reference


def test_heldout_is_deterministic_and_seeded(items: list[EvalItem]):
    again = load_heldout(SMALL)
    assert again == items
    assert [i.item_id for i in again] == [i.item_id for i in items]
    # reasoning-gym seeds item i with seed + i, so seeds 7 and 8 share all but one item.
    other = load_heldout(SMALL.model_copy(update={"seed": 7 + 10_000}))
    gym_ids = {i.item_id for i in items if i.benchmark != HUMANEVAL}
    other_gym_ids = {i.item_id for i in other if i.benchmark != HUMANEVAL}
    assert not gym_ids & other_gym_ids, "a different seed should draw different questions"
    # HumanEval is the first N problems whatever the seed.
    assert _by_benchmark(other, HUMANEVAL) == _by_benchmark(items, HUMANEVAL)


def test_item_ids_are_content_hashes(items: list[EvalItem]):
    for item in items:
        assert item.item_id == content_key("eval_item", item.benchmark, item.text)


def test_humaneval_items_are_the_real_problems(items: list[EvalItem]):
    first = _by_benchmark(items, HUMANEVAL)[0]
    assert first.payload["task_id"] == "HumanEval/0"
    assert first.payload["entry_point"] == "has_close_elements"
    assert "def has_close_elements(numbers: List[float], threshold: float) -> bool:" in first.text
    assert "def check(candidate):" in first.payload["test"]
    assert [i.payload["task_id"] for i in _by_benchmark(items, HUMANEVAL)] == [
        "HumanEval/0",
        "HumanEval/1",
        "HumanEval/2",
    ]


def test_unknown_task_and_too_many_problems_are_refused():
    with pytest.raises(ValueError, match="'no_such_task'"):
        load_heldout(EvaluationConfig(reasoning_gym=["no_such_task"], humaneval_problems=0))
    with pytest.raises(ValueError, match=r"humaneval_problems \(999\) exceeds the 164"):
        load_heldout(EvaluationConfig(reasoning_gym=[], humaneval_problems=999))


# --- reasoning-gym scoring ---------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_reasoning_gym_reference_scores_one_and_wrong_scores_zero(items: list[EvalItem], task: str):
    for item in _by_benchmark(items, task):
        wrong = str(int(item.reference) + 1)
        right_boxed = grade_reasoning_gym(item, f"Working... \\boxed{{{item.reference}}}")
        right_plain = grade_reasoning_gym(item, f"The answer is {item.reference}.")
        bare_number = grade_reasoning_gym(item, f"We add them up and get {item.reference}")
        wrong_result = grade_reasoning_gym(item, f"\\boxed{{{wrong}}}")
        assert (right_boxed.score, right_plain.score, bare_number.score) == (1.0, 1.0, 1.0)
        assert right_plain.answer == item.reference
        assert wrong_result.score == 0.0 and wrong_result.answer == wrong


def test_reasoning_gym_no_answer_scores_zero(items: list[EvalItem]):
    result = grade_reasoning_gym(items[0], "I do not know.")
    assert result.answer is None and result.score == 0.0


def test_thousands_separators_are_scored_by_value():
    big = next(
        item
        for item in load_heldout(
            EvaluationConfig(reasoning_gym=["basic_arithmetic"], humaneval_problems=0)
        )
        if abs(int(item.reference)) >= 1000
    )
    grouped = f"{int(big.reference):,}"
    result = grade_reasoning_gym(big, f"\\boxed{{{grouped}}}")
    assert result.answer == grouped and result.score == 1.0


# --- HumanEval through the sandbox ---------------------------------------------------------


def test_humaneval_program_assembly(items: list[EvalItem]):
    item = _by_benchmark(items, HUMANEVAL)[0]
    body = item.reference  # the canonical body, indented
    restated = f"Here it is:\n```python\n{item.text}{body}```\nDone."
    unindented = body.replace("\n    ", "\n").lstrip()
    assert humaneval_program(item, body) == item.text + body.strip("\n") + "\n"
    whole = humaneval_program(item, restated) or ""
    assert whole.count("def has_close_elements") == 2 and "```" not in whole
    assert "Here it is" not in whole and "Done." not in whole
    reindented = humaneval_program(item, unindented) or ""
    assert "\n    for idx, elem in enumerate(numbers):" in reindented
    assert humaneval_program(item, "   \n") is None


def test_humaneval_canonical_passes_wrong_and_looping_fail(
    items: list[EvalItem], sandbox: SandboxPool
):
    problems = _by_benchmark(items, HUMANEVAL)
    first = problems[0]
    completions = [p.reference for p in problems] + [
        f"```python\n{first.text}{first.reference}```",  # restated function, in a fence
        "    return False\n",  # wrong
        "    while True:\n        pass\n",  # never returns
        "    import os\n    return os.system('true') == 0\n",  # refused by the sandbox
        "This function checks closeness.",  # prose, no code
    ]
    graded_items = problems + [first] * 5
    started = time.perf_counter()
    results = grade_humaneval(sandbox, graded_items, completions)
    elapsed = time.perf_counter() - started
    scores = [result.score for result in results]
    assert scores == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0], [r.answer for r in results]
    assert elapsed < 15, f"the infinite loop was not cut off in time ({elapsed:.1f} s)"
    assert results[0].answer is not None and results[0].answer.startswith(first.text)


# --- overlap with training texts -----------------------------------------------------------


def test_overlap_flags_copied_item_and_passes_unrelated(items: list[EvalItem]):
    gym_item, code_item = items[5], _by_benchmark(items, HUMANEVAL)[1]
    training = [
        f"Challenger task: {gym_item.text} Show your work.",
        "Photosynthesis turns light into chemical energy in the chloroplasts of plant cells, "
        "as the sample corpus explains at length.",
        code_item.text,
    ]
    report = overlap_with_training(training, items)
    assert report.checked == 3 and report.ngram == 13
    assert set(report.overlapping_item_ids) == {gym_item.item_id, code_item.item_id}
    clean = overlap_with_training(training[1:2], items)
    assert clean.clean and clean.overlapping_item_ids == [] and clean.checked == 1


# --- the whole evaluation on vLLM ------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Iterator[RolloutEngine]:
    engine = RolloutEngine(str(tiny_model), EngineConfig(), seed=0)  # the module's one start
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def results(engine: RolloutEngine, items: list[EvalItem], sandbox: SandboxPool) -> list[EvalResult]:
    sampling = eval_sampling(SMALL.model_copy(update={"max_tokens": 48}))  # short: a fast test
    return evaluate(engine, items, sampling, sandbox)


@pytest.mark.vllm
def test_evaluate_with_the_tiny_model(
    engine: RolloutEngine, items: list[EvalItem], results: list[EvalResult]
):
    assert engine.backend == "vllm"
    assert [result.item for result in results] == items
    # The tiny model was fitted on the pipeline's prompts, not these: what it writes here is
    # its business; each score must be what the direct grader gives for that completion.
    for result in results:
        assert result.score in (0.0, 1.0)
        assert result.completion.strip(), "greedy decoding gave an empty completion"
        if result.item.benchmark == HUMANEVAL:
            assert result.score == 0.0  # two layers fitted to tags write no HumanEval solution
            assert result.answer == humaneval_program(result.item, result.completion)
        else:
            assert result.answer == extract_math_answer(result.completion)
            direct = grade_reasoning_gym(result.item, result.completion)
            assert (result.answer, result.score) == (direct.answer, direct.score)
    accuracy = summarise(results)
    assert list(accuracy) == [*TASKS, HUMANEVAL]
    for name, value in accuracy.items():
        scores = [r.score for r in results if r.item.benchmark == name]
        assert value == pytest.approx(sum(scores) / len(scores))


@pytest.mark.vllm
def test_evaluate_refuses_sampled_decoding(
    engine: RolloutEngine, items: list[EvalItem], sandbox: SandboxPool
):
    sampled = eval_sampling(SMALL).model_copy(update={"temperature": 0.8})
    with pytest.raises(ValueError, match=r"temperature \(0.8\) must be 0"):
        evaluate(engine, items, sampled, sandbox)


@pytest.mark.vllm
def test_rows_fit_the_evaluations_table(items: list[EvalItem], results: list[EvalResult]):
    rows = evaluation_rows(results, run_id="run-1", iteration=2, checkpoint="ckpt-2")
    assert {frozenset(row) for row in rows} == {frozenset(EVALUATION_COLUMNS)}
    first = rows[0]
    assert first["evaluation_id"] == content_key("run-1", 2, "ckpt-2", items[0].item_id)
    assert first["prompt"] == items[0].text and first["answer"] == results[0].answer
    base = evaluation_rows(results, run_id=None, iteration=None, checkpoint="base")
    with Warehouse.open(":memory:") as warehouse:
        assert warehouse.write("evaluations", rows) == len(rows)
        assert warehouse.write("evaluations", rows) == 0  # same keys: nothing twice
        assert warehouse.write("evaluations", base) == len(base)
        stored = warehouse.query(
            "SELECT benchmark, avg(score) AS accuracy FROM evaluations "
            "WHERE checkpoint = 'ckpt-2' GROUP BY benchmark"
        ).to_pylist()
    assert {row["benchmark"]: row["accuracy"] for row in stored} == pytest.approx(
        summarise(results)
    )
