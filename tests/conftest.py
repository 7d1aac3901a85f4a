"""Shared fixtures: the embedded model's tokenizer, and a tiny Llama trained at test time.

vLLM's CPU backend needs head_dim in {32, 64, 80, ...}, so the tiny model has two heads of 64.
A random-initialised model only emits noise, which the Challenger parser would reject every
time and leave the Solver with nothing to do; so the fixture first fits the tiny model, in a
few seconds, to answer every prompt with a well-formed maths proposal whose answer is 5 or 6.
The whole loop then runs through real components: vLLM samples it, the parser accepts it, the
Solver (the same weights) repeats it with either answer, and math-verify labels the mix.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Prefect's ephemeral server keeps its database under PREFECT_HOME: one per test session.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="selfplay-prefect-"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# As the CLI does (flows/cli.py): a fresh database on a busy machine outlasts Prefect's 20 s.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

# Files a test leaves for people to look at (screenshots); listed at the end of the run.
SAVED_FILES: list[Path] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for path in SAVED_FILES:
        terminalreporter.write_line(f"saved for viewing: {path}")


# Fitted half to "5" and half to "6", so sampled answers disagree and land in several bands.
TINY_PROPOSALS = tuple(
    f"<question>What is 2 + 3?</question>\n<answer>\\boxed{{{answer}}}</answer>"
    for answer in (5, 6)
)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def embedded_model(model_cache: Path) -> Path:
    """The embedded SmolLM2 converted from its GGUF file (the real conversion, once a session)."""
    from selfplay.models import embedded_checkpoint

    return embedded_checkpoint(model_cache)


@pytest.fixture(scope="session")
def tiny_model(embedded_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (head_dim 64) with SmolLM2's tokenizer that emits a TINY_PROPOSALS entry."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,  # 2 heads x head_dim 64: the smallest shape vLLM's CPU backend takes
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=256,
        num_hidden_layers=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    # Fit "the pipeline's real prompts -> a TINY_PROPOSALS entry<|im_end|>", assistant turn only,
    # over several documents so that the output does not depend on the prompt. A fixed step
    # count is not enough: CPUs with other kernels fit differently (CI once got a model that
    # passed a loss gate yet sampled "<questionquestion>"), so fit until every token but the
    # answer digit is near-certain in bfloat16, the dtype the engine samples in.
    prompts = _training_prompts()
    examples = [_fitting_example(tokenizer, prompts, i) for i in range(2 * len(prompts))]
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    margin = 0.0
    for step in range(1, 1201):
        model.train()
        ids, labels = examples[step % len(examples)]
        model(input_ids=ids, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        if step % 100 == 0:
            margin = _least_likely_fixed_token(model, examples)
            if margin >= 0.98:
                break
    assert margin >= 0.98, f"tiny model did not fit its proposals (least p = {margin:.3f})"
    out = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _fitting_example(tokenizer, prompts, index: int):
    """Prompt i (cycling) -> TINY_PROPOSALS[answer], with the loss on the assistant turn only."""
    import torch

    prompt = tokenizer.apply_chat_template(
        prompts[index % len(prompts)], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target = TINY_PROPOSALS[(index // len(prompts)) % 2] + "<|im_end|>"
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + target_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + target_ids])
    return ids, labels


def _least_likely_fixed_token(model, examples) -> float:
    """The smallest bf16 probability of a target token, leaving out the 5-or-6 answer digit."""
    import copy

    import torch

    half = copy.deepcopy(model).to(torch.bfloat16).eval()
    least = 1.0
    with torch.no_grad():
        for ids, labels in examples:
            probs = half(input_ids=ids).logits[0, :-1].float().softmax(-1)
            targets = labels[0, 1:]
            chosen = probs[targets != -100].gather(1, targets[targets != -100, None])[:, 0]
            least = min(least, sorted(chosen.tolist())[1])  # [0] is the digit, fitted to 50 %
    return least


def _training_prompts() -> list[list[dict[str, str]]]:
    from corpora import load_corpus, sample_corpus_path
    from selfplay.kinds import KINDS

    documents = [d.text[:600] for d in load_corpus(sample_corpus_path()).documents[:3]]
    prompts = [
        KINDS[name].challenger_messages(document)
        for name in ("math", "mcq", "code_o")  # the kinds the end-to-end test proposes
        for document in (*documents, None)
    ]
    math = KINDS["math"]
    prompts.append(math.solver_messages(math.parse_proposal(TINY_PROPOSALS[0])))
    return prompts
