"""Benchmark: Solver-stage throughput of the pipeline against raw vLLM on the same engine.

One vLLM engine (the embedded default, SmolLM2-135M-Instruct, with the default engine and
Solver sampling config) serves both sides, in one process:

- ours: the Solver stage as the flow runs it, `selfplay.generate.solve` (Solver prompts built
  from the proposals, one `RolloutEngine.chat` call with m samples each, answers extracted),
  then `selfplay.rows.trajectory_rows` and `Warehouse.write("trajectories", ...)` into a
  temporary DuckDB file;
- raw: `LLM.generate` of the same engine on the same prompts, already chat-templated and
  tokenised outside the clock, with the same `SamplingParams` (n, temperature, top_p,
  max_tokens): the engine with nothing around it.

The figure is generated tokens per second. The two take turns (raw, ours, raw, ours, ...),
so drift in the machine's load and the engine's state weighs on both, and each starts from
an empty prefix cache; each side's rate is its total tokens over its total time. The prompts
are N seeded Challenger-like questions
(`tests/selfplay/data/make_questions.py`), half `math` and half `mcq` as the default kinds
alternate. Target: ours >= 0.9 x raw.

    python -m bench.rollout                      # 32 tasks x 8 samples, 2 rounds
    python -m bench.rollout --tasks 8 --samples 4 --max-tokens 64 --rounds 1

`measure_rollout(...)` returns the figures as a `RolloutBench`; `results(quick)` as table
records for `python -m bench`. vLLM starts its workers with spawn: run it as a module or
under an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import BenchResult, Record, Step, no_step
from selfplay.config import Config
from selfplay.engine import Completion, RolloutEngine, _VllmBackend
from selfplay.generate import ProposedTask, Slot, solve
from selfplay.kinds import get_kind
from selfplay.kinds.base import Proposal
from selfplay.models import resolve_model
from selfplay.rows import trajectory_rows
from tests.selfplay.data.make_questions import generate_questions
from warehouse.writer import Warehouse

TARGET = 0.9


def solver_tasks(count: int, run_id: str, seed: int = 1) -> list[ProposedTask]:
    """`count` valid proposals, math and mcq alternating, as the Challenger would leave them."""
    rng = random.Random(seed)
    questions = [str(row["question"]) for row in generate_questions(count, seed)]
    tasks = []
    for index, question in enumerate(questions):
        if index % 2 == 0:
            proposal = Proposal("math", question=question, reference_answer="0")
        else:
            value = rng.randrange(2, 500)
            options = tuple(str(value + delta) for delta in rng.sample((-10, -1, 0, 1, 7), 4))
            proposal = Proposal("mcq", question=question, reference_answer="A", options=options)
        slot = Slot(run_id, 0, index, proposal.kind, None)
        placeholder = Completion("", 0, 0, "stop", 0.0)  # the Challenger's side is not timed
        tasks.append(ProposedTask(slot, [], placeholder, proposal))
    return tasks


@dataclass
class RolloutBench:
    tasks: int
    samples: int
    max_tokens: int
    raw_tokens: list[int] = field(default_factory=list)
    raw_s: list[float] = field(default_factory=list)
    ours_tokens: list[int] = field(default_factory=list)
    ours_s: list[float] = field(default_factory=list)
    ours_write_s: list[float] = field(default_factory=list)  # rows + warehouse write, in ours_s
    prompt_tokens: tuple[int, int] = (0, 0)  # (raw, ours): equal when the prompts are the same
    answered: float = 0.0  # share of our samples with an extracted answer

    @property
    def raw_rate(self) -> float:
        return sum(self.raw_tokens) / sum(self.raw_s)

    @property
    def ours_rate(self) -> float:
        return sum(self.ours_tokens) / sum(self.ours_s)

    @property
    def ratio(self) -> float:
        return self.ours_rate / self.raw_rate

    def report(self) -> str:
        lines = [
            f"{self.tasks} tasks x {self.samples} samples, max_tokens {self.max_tokens}; "
            f"prompt tokens per round: raw {self.prompt_tokens[0]:,}, "
            f"ours {self.prompt_tokens[1]:,}",
        ]
        for index, (tokens, seconds) in enumerate(zip(self.raw_tokens, self.raw_s, strict=True)):
            ours_tokens, ours_s = self.ours_tokens[index], self.ours_s[index]
            lines.append(
                f"round {index + 1}: raw {tokens:,} tokens in {seconds:.1f} s "
                f"({tokens / seconds:.0f} tok/s); ours {ours_tokens:,} tokens in {ours_s:.1f} s "
                f"({ours_tokens / ours_s:.0f} tok/s, of which rows + warehouse write "
                f"{self.ours_write_s[index]:.2f} s)"
            )
        verdict = "meets" if self.ratio >= TARGET else "MISSES"
        lines += [
            f"raw vLLM LLM.generate: {self.raw_rate:7.1f} generated tokens/s",
            f"ours (solve + rows + write): {self.ours_rate:7.1f} generated tokens/s",
            f"ours / raw: {self.ratio:.3f} (target >= {TARGET}: {verdict}); "
            f"{self.answered:.0%} of our samples have an extracted answer",
        ]
        return "\n".join(lines)


def measure_rollout(
    tasks: int = 32,
    samples: int = 8,
    rounds: int = 2,
    max_tokens: int | None = None,
    step: Step = no_step,
) -> RolloutBench:
    """Alternate raw and ours `rounds` times each on one engine; see the module docstring."""
    config = Config()
    config.engine.backend = "vllm"
    config.generate.samples_per_task = samples
    if max_tokens is not None:
        config.sampling.solver.max_tokens = max_tokens
    model = resolve_model(config.model.solver, config.model.cache_dir)
    bench = RolloutBench(tasks, samples, config.sampling.solver.max_tokens)
    step("starting the vLLM engine")
    engine = RolloutEngine(model, config.engine, config.run.seed)
    try:
        backend = engine._impl  # the engine's own LLM: one engine, both measurements
        assert isinstance(backend, _VllmBackend), "the raw baseline needs the vLLM backend"
        raw = _RawGenerate(backend.llm, solver_tasks(tasks, "bench-rollout-raw"), config)
        bench.prompt_tokens = (raw.prompt_tokens, 0)
        with (
            tempfile.TemporaryDirectory(prefix="bench-rollout-") as scratch,
            Warehouse.open(Path(scratch) / "rollout.duckdb") as warehouse,
        ):
            for index in range(rounds):
                step(f"round {index + 1}/{rounds}: raw LLM.generate")
                # Each side starts from an empty prefix cache: neither reuses the other's
                # prompt prefill.
                backend.llm.reset_prefix_cache()
                tokens, seconds = raw.run()
                bench.raw_tokens.append(tokens)
                bench.raw_s.append(seconds)
                step(f"round {index + 1}/{rounds}: ours (solve + rows + write)")
                # New task ids each round, so that every write inserts all its rows.
                proposed = solver_tasks(tasks, f"bench-rollout-{index}")
                backend.llm.reset_prefix_cache()
                _time_ours(engine, proposed, config, model, warehouse, bench)
    finally:
        engine.close()
    return bench


class _RawGenerate:
    """`LLM.generate` on pre-tokenised Solver prompts with the Solver's sampling params."""

    def __init__(self, llm: Any, tasks: list[ProposedTask], config: Config) -> None:
        from vllm import SamplingParams

        sampling = config.sampling.solver
        self.llm = llm
        self.params = SamplingParams(
            n=config.generate.samples_per_task,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
        )
        self.prompts = _raw_prompts(llm, tasks)
        self.prompt_tokens = sum(len(p["prompt_token_ids"]) for p in self.prompts)
        llm.generate(self.prompts[:2], SamplingParams(max_tokens=8), use_tqdm=False)  # warm-up

    def run(self) -> tuple[int, float]:
        """(generated tokens, seconds) of one call."""
        started = time.perf_counter()
        outputs = self.llm.generate(self.prompts, self.params)
        seconds = time.perf_counter() - started
        return sum(len(c.token_ids) for o in outputs for c in o.outputs), seconds


def _raw_prompts(llm: Any, tasks: list[ProposedTask]) -> list[Any]:
    """The Solver prompts as `LLM.chat` tokenises them: chat template, no added specials."""
    from vllm.inputs import TokensPrompt

    tokenizer = llm.get_tokenizer()
    prompts = []
    for task in tasks:
        messages = get_kind(task.slot.kind).solver_messages(task.proposal)
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        prompts.append(TokensPrompt(prompt_token_ids=ids))
    return prompts


def _time_ours(
    engine: RolloutEngine,
    proposed: list[ProposedTask],
    config: Config,
    model: str,
    warehouse: Warehouse,
    bench: RolloutBench,
) -> None:
    started = time.perf_counter()
    samples = solve(engine, proposed, config)
    write_started = time.perf_counter()
    rows = trajectory_rows(samples, [], proposed, model, config.sampling.solver)
    inserted = warehouse.write("trajectories", rows)
    finished = time.perf_counter()
    assert inserted == len(samples), f"wrote {inserted} of {len(samples)} trajectories"
    bench.ours_s.append(finished - started)
    bench.ours_write_s.append(finished - write_started)
    bench.ours_tokens.append(sum(s.completion.completion_tokens for s in samples))
    per_prompt = {s.task_id: s.completion.prompt_tokens for s in samples}
    bench.prompt_tokens = (bench.prompt_tokens[0], sum(per_prompt.values()))
    bench.answered = sum(s.answer is not None for s in samples) / max(1, len(samples))


def results(quick: bool = False, step: Step = no_step) -> BenchResult:
    """Table records for `python -m bench` (quick: 4 tasks x 2 samples, 32 tokens, 1 round)."""
    if quick:
        bench = measure_rollout(tasks=4, samples=2, rounds=1, max_tokens=32, step=step)
    else:
        bench = measure_rollout(step=step)
    record = Record(
        f"Solver-stage throughput (prompts, answer extraction, trajectory rows, warehouse write) "
        f"vs raw vLLM `LLM.generate` on the same engine, prompts and sampling; embedded "
        f"SmolLM2-135M, {bench.tasks} tasks x {bench.samples} samples, "
        f"{len(bench.raw_s)} alternating rounds (target ≥ {TARGET})",
        f"{bench.ours_rate:.0f} tok/s",
        f"{bench.raw_rate:.0f} tok/s",
        bench.ratio,
    )
    return BenchResult([record], "```\n" + bench.report() + "\n```")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=32, help="Solver prompts (tasks)")
    parser.add_argument("--samples", type=int, default=8, help="samples per task (m)")
    parser.add_argument("--rounds", type=int, default=2, help="raw/ours alternations")
    parser.add_argument("--max-tokens", type=int, default=None, help="override Solver max_tokens")
    args = parser.parse_args(argv)
    print(measure_rollout(args.tasks, args.samples, args.rounds, args.max_tokens).report())


if __name__ == "__main__":
    main()
