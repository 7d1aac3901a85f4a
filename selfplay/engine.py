"""The rollout engine: one offline vLLM `LLM` per model per run, one call per stage.

Every prompt of a stage goes to the engine in a single `chat` call with `n` samples per
prompt, so vLLM batches them all. The sampler is seeded once, at engine start: a fixed
per-request seed would repeat the same draws across prompts. Where vLLM cannot be imported
the engine falls back to transformers' `generate`, slowly, and says so in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from selfplay.config import EngineConfig, SamplingConfig
from selfplay.kinds.base import Messages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    """One sampled completion of one prompt."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    # Seconds from the request entering the engine to its last token (shared by its n samples).
    latency_s: float


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # a broken install raises more than ImportError
        log.debug("vLLM import failed: %s", exc)
        return False
    return True


class RolloutEngine:
    """A started model: `chat(conversations, sampling, n)` returns n completions per prompt."""

    def __init__(self, model: str, config: EngineConfig, seed: int) -> None:
        self.model = model
        backend = config.backend
        if backend == "auto":
            backend = "vllm" if vllm_available() else "transformers"
            if backend == "transformers":
                log.warning(
                    "vLLM cannot be imported here; falling back to transformers generation, "
                    "which is far slower. Install the `cpu` or `gpu` extra to use vLLM."
                )
        self.backend = backend
        started = time.perf_counter()
        if backend == "vllm":
            self._impl: _VllmBackend | _TransformersBackend = _VllmBackend(model, config, seed)
        else:
            self._impl = _TransformersBackend(model, config, seed)
        log.info(
            "%s engine for %s started in %.1f s", backend, model, time.perf_counter() - started
        )

    def chat(
        self,
        conversations: Sequence[Messages],
        sampling: SamplingConfig,
        n: int = 1,
        formats: Sequence[str | None] | None = None,
    ) -> list[list[Completion]]:
        """n completions per conversation, in one engine call.

        `formats` optionally gives, per conversation, a regular expression the completion
        must match (vLLM structured outputs); None leaves that conversation free.
        """
        if not conversations:
            return []
        if formats is not None and len(formats) != len(conversations):
            raise ValueError(
                f"formats ({len(formats)}) must give one entry per conversation "
                f"({len(conversations)})"
            )
        return self._impl.chat(list(conversations), sampling, n, formats)

    def close(self) -> None:
        self._impl.close()


class _VllmBackend:
    def __init__(self, model: str, config: EngineConfig, seed: int) -> None:
        from vllm import LLM

        self.llm: Any = LLM(
            model=model,
            dtype=config.dtype,
            max_model_len=config.max_model_len,
            gpu_memory_utilization=config.gpu_memory_utilization,
            enforce_eager=config.enforce_eager,
            tensor_parallel_size=config.tensor_parallel_size,
            seed=seed,
        )

    def chat(
        self,
        conversations: list[Messages],
        sampling: SamplingConfig,
        n: int,
        formats: Sequence[str | None] | None,
    ) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        def params(regex: str | None) -> SamplingParams:
            return SamplingParams(
                n=n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                structured_outputs=StructuredOutputsParams(regex=regex) if regex else None,
            )

        per_prompt = [params(regex) for regex in formats] if formats else params(None)
        started = time.perf_counter()
        outputs = self.llm.chat(conversations, per_prompt, use_tqdm=True)
        wall = time.perf_counter() - started
        results = []
        for output in outputs:
            latency = _request_latency(output, default=wall)
            prompt_tokens = len(output.prompt_token_ids or [])
            results.append(
                [
                    Completion(
                        text=sample.text,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=len(sample.token_ids),
                        finish_reason=sample.finish_reason,
                        latency_s=latency,
                    )
                    for sample in output.outputs
                ]
            )
        return results

    def close(self) -> None:
        # Stop the engine-core process now rather than at interpreter exit.
        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None) or getattr(
            getattr(engine, "engine_core", None), "shutdown", None
        )
        if callable(shutdown):
            shutdown()
        del self.llm


def _request_latency(output: Any, default: float) -> float:
    metrics = getattr(output, "metrics", None)
    queued = getattr(metrics, "queued_ts", 0.0)
    last = getattr(metrics, "last_token_ts", 0.0)
    return last - queued if queued and last > queued else default


class _TransformersBackend:
    """Plain transformers sampling, only for machines where vLLM cannot be imported."""

    def __init__(self, model: str, config: EngineConfig, seed: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(seed)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
        self.model: Any = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
        self.model.eval()

    def chat(
        self,
        conversations: list[Messages],
        sampling: SamplingConfig,
        n: int,
        formats: Sequence[str | None] | None,
    ) -> list[list[Completion]]:
        import torch

        if formats and any(formats):
            log.warning("the transformers fallback cannot constrain formats; sampling freely")
        prompts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        started = time.perf_counter()
        with torch.no_grad():
            generated = self.model.generate(
                **batch,
                do_sample=sampling.temperature > 0,
                temperature=sampling.temperature or None,
                top_p=sampling.top_p,
                max_new_tokens=sampling.max_tokens,
                num_return_sequences=n,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        wall = time.perf_counter() - started
        width = batch["input_ids"].shape[1]
        results: list[list[Completion]] = []
        for index, row in enumerate(generated):
            new_tokens = [t for t in row[width:].tolist() if t != self.tokenizer.pad_token_id]
            finished = len(new_tokens) < sampling.max_tokens
            completion = Completion(
                text=str(self.tokenizer.decode(new_tokens, skip_special_tokens=True)),
                prompt_tokens=int(batch["attention_mask"][index // n].sum()),
                completion_tokens=len(new_tokens),
                finish_reason="stop" if finished else "length",
                latency_s=wall,
            )
            if index % n == 0:
                results.append([])
            results[-1].append(completion)
        return results

    def close(self) -> None:
        del self.model
