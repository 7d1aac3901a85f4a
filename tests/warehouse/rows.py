"""Valid rows for each warehouse table, for tests to write and vary."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from warehouse import content_key

RUN_ID = content_key("run", "test")
TASK_ID = content_key("task", RUN_ID, 0, 0)


def run_row(seed: int = 0) -> dict[str, Any]:
    config = {"seed": seed, "model": "tiny"}
    return {
        "run_id": content_key("run", seed),
        "command": "selfplay run --config tiny.yaml",
        "config_json": json.dumps(config),
        "config_hash": content_key(config),
        "seed": seed,
        "selfplay_version": "0.1.0",
    }


def task_row(slot: int, *, parse_status: str = "valid") -> dict[str, Any]:
    return {
        "task_id": content_key("task", RUN_ID, 0, slot),
        "run_id": RUN_ID,
        "iteration": 0,
        "slot": slot,
        "kind": "math",
        "grounded": False,
        "challenger_model": "SmolLM2-135M-Instruct",
        "prompt_json": [{"role": "user", "content": "Propose a problem."}],
        "raw_completion": f"What is {slot} + 1? \\boxed{{{slot + 1}}}",
        "parse_status": parse_status,
        "question": f"What is {slot} + 1?",
        "reference_answer": str(slot + 1),
        "sampling_json": {"temperature": 0.8, "max_tokens": 256},
        "completion_tokens": 17,
        "latency_s": 0.25,
    }


def trajectories_table(n_rows: int, *, first: int = 0) -> pa.Table:
    """`n_rows` Solver samples of one task as an Arrow table (no created_at)."""
    indices = range(first, first + n_rows)
    constant = {
        "task_id": TASK_ID,
        "run_id": RUN_ID,
        "iteration": 0,
        "role": "solver",
        "model": "SmolLM2-135M-Instruct",
        "checkpoint": "base",
        "sampling_json": '{"temperature": 0.8}',
        "prompt_json": '[{"role": "user", "content": "What is 1 + 1?"}]',
        "completion": "The answer is 2.",
        "extracted_answer": "2",
        "verdict": "correct",
        "reward": 1.0,
        "prompt_tokens": 20,
        "completion_tokens": 6,
        "finish_reason": "stop",
        "latency_s": 0.1,
    }
    columns: dict[str, Any] = {
        "trajectory_id": [content_key("trajectory", TASK_ID, "base", i) for i in indices],
        "sample_index": pa.array(list(indices), pa.int32()),
    }
    for name, value in constant.items():
        columns[name] = pa.repeat(pa.scalar(value), n_rows)
    return pa.table(columns)


def difficulty_row(pass_rate: float) -> dict[str, Any]:
    return {
        "difficulty_id": content_key("difficulty", TASK_ID, "base", pass_rate),
        "task_id": TASK_ID,
        "run_id": RUN_ID,
        "iteration": 0,
        "solver_checkpoint": "base",
        "pass_rate": pass_rate,
        "band": "frontier",
        "band_low": 0.3,
        "band_high": 0.8,
        "n_samples": 8,
    }
