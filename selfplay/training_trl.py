"""TRL plumbing of `selfplay.training`: the trainer subclass, rollouts from our engine, syncing.

Kept apart from the public entry points because it leans on TRL 1.16 details that may move:
the `rollout_func` contract (prompt ids, completion ids, log-probabilities; each prompt
repeated G times in a row by TRL's sampler) and `_generate_and_score_completions`, where the
group-normalised advantages exist before the loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from selfplay.config import SamplingConfig, TrainingConfig
from selfplay.engine import RolloutEngine
from selfplay.kinds.base import Messages


class SelfplayGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with an optional per-completion advantage weight (ADPO, Agent0).

    The weight multiplies the advantage after TRL's per-group normalisation; re-check the
    override when TRL moves.
    """

    def __init__(
        self, *args: Any, advantage_weight: Callable[[dict], float] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.advantage_weight = advantage_weight

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.advantage_weight is not None:
            # `inputs` and the returned advantages are both this process's rows, in order.
            weights = [self.advantage_weight(row) for row in inputs]
            advantages = output["advantages"]
            output["advantages"] = advantages * torch.tensor(
                weights, dtype=advantages.dtype, device=advantages.device
            )
        return output


class StepRecorder(TrainerCallback):
    """Times each step, hands the new policy to the engine, and keeps the logged metrics.

    The engine takes the weights after every optimiser step but the last (whose weights it
    gets from the final checkpoint), so every rollout samples the current policy.
    """

    def __init__(
        self,
        engine: RolloutEngine,
        sync_dir: Path,
        engine_dtype: str,
        on_step: Callable[[int, int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.sync_dir = sync_dir
        self.engine_dtype = engine_dtype
        self.on_step = on_step  # (steps done, steps in all), e.g. to move a progress bar
        self.started = 0.0
        self.seconds: dict[int, float] = {}
        self.metrics: dict[int, dict[str, float]] = {}

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step < state.max_steps:
            save_for_engine(kwargs["model"], self.sync_dir, self.engine_dtype)
            self.engine.reload_weights(str(self.sync_dir))
        self.seconds[state.global_step] = time.perf_counter() - self.started
        if self.on_step is not None:
            self.on_step(state.global_step, state.max_steps)

    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        logs = kwargs.get("logs") or {}
        if "loss" in logs:  # a step's row, not the end-of-training summary
            self.metrics[state.global_step] = dict(logs)

    def rows(self) -> list[tuple[int, dict[str, float], float]]:
        """(step, logged metrics, wall seconds) per optimiser step, in order."""
        return [
            (step, self.metrics[step], self.seconds.get(step, float("nan")))
            for step in sorted(self.metrics)
        ]


def save_for_engine(model: PreTrainedModel, directory: Path, dtype: str) -> None:
    """The policy's weights cast to the engine's dtype: half the bytes of fp32, no cast noise."""
    target = getattr(torch, dtype)
    weights: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # a tied alias (lm_head of tied embeddings)
            continue
        seen.add(tensor.data_ptr())
        weights[name] = tensor.detach().to("cpu", target).contiguous()
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(directory)
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})


def engine_rollout(
    engine: RolloutEngine,
    tokenizer: PreTrainedTokenizerBase,
    sampling: SamplingConfig,
    num_generations: int,
) -> Callable[[list[Messages], Any], dict[str, list]]:
    """A TRL `rollout_func`: one engine call with n = G samples per distinct prompt.

    The engine returns text, so completions are re-tokenised (the stop token it strips is put
    back); TRL recomputes the policy's log-probabilities, so none are passed.
    """

    def rollout(prompts: list[Messages], trainer: Any) -> dict[str, list]:
        groups = prompts[::num_generations]
        if len(prompts) != len(groups) * num_generations or any(
            prompt != groups[index // num_generations] for index, prompt in enumerate(prompts)
        ):
            raise RuntimeError(
                f"expected each prompt repeated num_generations ({num_generations}) times in a "
                "row, as TRL's RepeatSampler does; the TRL version may have changed"
            )
        samples = engine.chat(groups, sampling, n=num_generations)
        prompt_ids: list[list[int]] = []
        completion_ids: list[list[int]] = []
        for prompt, group in zip(groups, samples, strict=True):
            text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            for sample in group:
                tokens = tokenizer(sample.text, add_special_tokens=False)["input_ids"]
                tokens = tokens[: sampling.max_tokens]
                if sample.finish_reason == "stop":
                    tokens = [*tokens, tokenizer.eos_token_id]
                prompt_ids.append(ids)
                completion_ids.append(tokens)
        logprobs = [[None] * len(tokens) for tokens in completion_ids]
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}

    return rollout


def grpo_config(
    training: TrainingConfig,
    sampling: SamplingConfig,
    steps: int,
    use_cpu: bool,
    bf16: bool,
    seed: int,
    scratch: Path,
) -> GRPOConfig:
    return GRPOConfig(
        output_dir=str(scratch / "trainer"),
        use_cpu=use_cpu,
        bf16=bf16,
        max_steps=steps,
        learning_rate=training.learning_rate,
        lr_scheduler_type="constant",  # a short slice of a long run: no per-call decay
        per_device_train_batch_size=training.batch_size,  # completions per optimiser step
        num_generations=training.num_generations,
        max_completion_length=training.max_completion_length,
        beta=training.beta,
        temperature=sampling.temperature,  # TRL divides logits by it: match the sampler
        top_p=sampling.top_p,
        # Recompute activations in the backward pass: Challenger prompts carry a document, and
        # storing every layer's activations for a batch of them took SmolLM2-135M past 10 GB
        # (the process was OOM-killed here); recomputing costs about a third more step time.
        gradient_checkpointing=True,
        logging_steps=1,  # one TrainStep row per optimiser step
        save_strategy="no",  # the caller's checkpoint is written once, at the end
        report_to="none",
        disable_tqdm=True,
        seed=seed,
    )
