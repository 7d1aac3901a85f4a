"""The rollout engine on a real vLLM engine serving the tiny test model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from selfplay.config import EngineConfig, SamplingConfig
from selfplay.engine import RolloutEngine
from selfplay.kinds import get_kind

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def engine(tiny_model: Path):
    engine = RolloutEngine(str(tiny_model), EngineConfig(), seed=0)
    yield engine
    engine.close()


def test_n_completions_per_prompt_in_one_call(engine: RolloutEngine):
    kind = get_kind("math")
    prompts = [kind.challenger_messages(None), kind.challenger_messages("Primes are numbers.")]
    groups = engine.chat(prompts, SamplingConfig(temperature=0.8, max_tokens=40), n=3)
    assert engine.backend == "vllm"
    assert [len(group) for group in groups] == [3, 3]
    for group in groups:
        for completion in group:
            assert completion.prompt_tokens > 50  # the few-shot prompt
            assert 0 < completion.completion_tokens <= 40
            assert completion.finish_reason in {"stop", "length"}
            assert completion.latency_s > 0
            assert completion.text.startswith("<question>What is 2 + 3?")


def test_formats_constrain_the_completion(engine: RolloutEngine):
    # The tiny model was fitted to write the maths format; the mcq format forces options.
    mcq = get_kind("mcq")
    prompts = [mcq.challenger_messages(None)] * 2
    groups = engine.chat(
        prompts,
        SamplingConfig(temperature=1.0, max_tokens=700),
        n=2,
        formats=[mcq.challenger_format] * 2,
    )
    finished = [c for group in groups for c in group if c.finish_reason == "stop"]
    assert finished, "no constrained completion finished within 700 tokens"
    for completion in finished:
        assert re.fullmatch(mcq.challenger_format, completion.text), completion.text
        assert "<options>" in completion.text


def test_formats_must_match_the_prompts(engine: RolloutEngine):
    with pytest.raises(ValueError, match=r"formats \(1\) must give one entry per conversation"):
        engine.chat([[{"role": "user", "content": "hi"}]] * 2, SamplingConfig(), formats=[None])


def test_empty_stage_makes_no_call(engine: RolloutEngine):
    assert engine.chat([], SamplingConfig(), n=4) == []
