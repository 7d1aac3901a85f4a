"""GRPO training of both roles: real TRL steps on the tiny model, sampled by one real vLLM engine.

The tiny model (tests/conftest.py) answers every prompt with "What is 2 + 3?" boxed 5 or 6
(6 in roughly one answer in six), so a reward for "6" splits some groups, and its direction is
measurable: the log-odds of the 5-completion over the 6-completion must fall. Everything else
in the two completions is the same text, so a group's advantages cancel on it and the update
lands on the answer digit: that is why two steps suffice. Rewarding 6 rather than 5 also
leaves the Challenger step, which follows on the same weights, enough 6s to learn from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfplay.config import Config, EngineConfig, SamplingConfig, TrainingConfig
from selfplay.engine import RolloutEngine
from selfplay.kinds import get_kind
from selfplay.kinds.code import validate_proposals
from selfplay.training import (
    ChallengerPrompt,
    DeviceSettings,
    RolesResult,
    SolverExample,
    TrainResult,
    default_solver_reward,
    train_challenger,
    train_roles,
    train_solver,
    training_device,
)
from tests.conftest import TINY_PROPOSALS
from verifiers.equivalence import EquivalenceChecker
from verifiers.sandbox import SandboxPool

MATH = get_kind("math")
GREEDY = SamplingConfig(temperature=0.0, max_tokens=40)


def tiny_config(**training: object) -> Config:
    return Config.model_validate(
        {
            "training": {
                "solver_steps": 2,  # two steps move the answer digit measurably (see docstring)
                "challenger_steps": 1,  # one step shows the batch call; more adds only time
                # 4 prompts x 4 completions: with p(6) ~ 1/6 a group holds both answers about
                # one time in three, so 4 groups a step make a step without signal rare.
                "batch_size": 16,
                "num_generations": 4,
                "max_completion_length": 48,  # the fitted completion is ~27 tokens
                "learning_rate": 3e-4,  # tiny model, two steps: the default 1e-5 barely moves it
                **training,
            },
            # The tiny model's KV cache is a few MB; leave the machine's memory to others.
            "engine": {"gpu_memory_utilization": 0.05},
        }
    )


def solver_examples() -> list[SolverExample]:
    prompts = [
        MATH.solver_messages(MATH.parse_proposal(TINY_PROPOSALS[0])),
        MATH.challenger_messages(None),
    ]
    # Four pass rates across the frontier band, so the ADPO weights differ (0.6 to 1).
    return [
        SolverExample(prompt=prompts[index % 2], label="6", kind="math", pass_rate=pass_rate)
        for index, pass_rate in enumerate((0.3, 0.5, 0.7, 0.9))
    ]


def completion_ids(
    model_dir: Path, messages: list[dict[str, str]], completion: str
) -> tuple[list[int], list[int]]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return prompt_ids, tokenizer(completion + "<|im_end|>", add_special_tokens=False)["input_ids"]


def logprob_transformers(
    model_dir: Path, completion: str, messages: list[dict[str, str]] | None = None
) -> float:
    """log p(completion | messages), the Challenger prompt by default, in fp32 transformers."""
    messages = messages or MATH.challenger_messages(None)
    prompt_ids, target = completion_ids(model_dir, messages, completion)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = torch.tensor([prompt_ids + target])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
    positions = range(len(prompt_ids) - 1, ids.shape[1] - 1)
    return sum(logprobs[p, ids[0, p + 1]].item() for p in positions)


def log_odds_of_five(model_dir: Path, messages: list[dict[str, str]] | None = None) -> float:
    """log p(answer 5) - log p(answer 6) for `messages`, the maths Solver prompt by default."""
    solver_prompt = messages or solver_examples()[0].prompt
    five, six = (logprob_transformers(model_dir, t, solver_prompt) for t in TINY_PROPOSALS)
    return five - six


def greedy_transformers(model_dir: Path) -> str:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(
        MATH.challenger_messages(None), tokenize=False, add_generation_prompt=True
    )
    batch = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    out = model.generate(**batch, do_sample=False, max_new_tokens=GREEDY.max_tokens)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def weights_of(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def max_weight_change(first: Path, second: Path) -> float:
    a, b = weights_of(first), weights_of(second)
    assert a.keys() == b.keys()
    return max((a[name].float() - b[name].float()).abs().max().item() for name in a)


def weight_distance(first: Path, second: Path) -> float:
    a, b = weights_of(first), weights_of(second)
    return sum((a[name].float() - b[name].float()).abs().sum().item() for name in a)


def zero_challenger_reward(completions: list[str], kinds: list[str]) -> list[float]:
    return [0.0] * len(completions)


def zero_solver_reward(completions, labels, kinds, pass_rates, code_tasks) -> list[float]:
    return [0.0] * len(completions)


# --- fixtures: one engine, one shared-weights run -----------------------------------------


@pytest.fixture(scope="module")
def engine(tiny_model: Path):
    engine = RolloutEngine(str(tiny_model), tiny_config().engine, seed=0)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def checker():
    with EquivalenceChecker(workers=1) as checker:
        yield checker


class RecordingChallengerReward:
    """A batch reward: remembers every call; pays 1 for proposing the answer 6."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.kinds: list[list[str]] = []
        self.returned: list[list[float]] = []

    def __call__(self, completions: list[str], kinds: list[str]) -> list[float]:
        self.calls.append(list(completions))
        self.kinds.append(list(kinds))
        self.returned.append([float("{6}" in text) for text in completions])
        return self.returned[-1]


@pytest.fixture(scope="module")
def shared_run(
    engine: RolloutEngine, checker: EquivalenceChecker, tiny_model: Path, tmp_path_factory
) -> tuple[RolesResult, RecordingChallengerReward]:
    # ADPO on, so the advantage hook runs inside real steps.
    config = tiny_config()
    config.rewards.adpo_weighting = True
    challenger_reward = RecordingChallengerReward()
    result = train_roles(
        solver_model=str(tiny_model),
        challenger_model=str(tiny_model),
        solver_examples=solver_examples(),
        solver_reward_fn=default_solver_reward(checker, config.rewards),
        challenger_prompts=[
            ChallengerPrompt(MATH.challenger_messages(doc), "math")
            for doc in (None, "Sums.", "Add.", "5")
        ],
        challenger_reward_fn=challenger_reward,
        config=config,
        output_dir=tmp_path_factory.mktemp("shared-run"),
        solver_engine=engine,
    )
    return result, challenger_reward


# --- device ---------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="describes a machine without a GPU")
def test_training_device_on_this_machine_is_cpu_fp32():
    settings = training_device(TrainingConfig())
    assert settings == DeviceSettings(use_cpu=True, bf16=False, device="cpu")
    assert settings.dtype == torch.float32
    with pytest.raises(ValueError, match="training.device is 'cuda' but torch sees no GPU"):
        training_device(TrainingConfig(device="cuda"))


# --- Solver -----------------------------------------------------------------------------------


@pytest.mark.vllm
def test_solver_grpo_moves_towards_the_rewarded_answer(shared_run, tiny_model: Path):
    solver: TrainResult = shared_run[0].solver
    assert solver.role == "solver"
    assert [step.step for step in solver.steps] == [1, 2]
    for step in solver.steps:
        assert math.isfinite(step.loss) and step.step_seconds > 0
        assert 0.0 <= step.reward_mean <= 1.0 and step.reward_std >= 0.0
        assert step.kl is None  # beta 0: no reference model
        assert step.entropy is not None and step.entropy >= 0.0
    # The batch reward saw both answers (else GRPO has no signal).
    assert any(0.0 < step.reward_mean < 1.0 for step in solver.steps), solver.steps
    before, after = log_odds_of_five(tiny_model), log_odds_of_five(solver.checkpoint_dir)
    assert after < before - 0.05, f"log-odds of 5 over 6: {before:.3f} -> {after:.3f}"


@pytest.mark.vllm
def test_solver_checkpoint_loads_and_differs_from_the_start(shared_run, tiny_model: Path):
    checkpoint = shared_run[0].solver.checkpoint_dir
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert AutoTokenizer.from_pretrained(checkpoint).eos_token == "<|im_end|>"
    assert model.config.num_hidden_layers == 2
    assert max_weight_change(tiny_model, checkpoint) > 1e-4


@pytest.mark.vllm
def test_solver_reward_of_zero_leaves_the_weights_alone(
    engine: RolloutEngine, tiny_model: Path, tmp_path: Path
):
    config = tiny_config(solver_steps=1)  # one step shows it as well as two
    result = train_solver(
        str(tiny_model), solver_examples(), zero_solver_reward, config, tmp_path, engine=engine
    )
    assert [(s.reward_mean, s.reward_std) for s in result.steps] == [(0.0, 0.0)]
    # Equal rewards give zero advantages: GRPO has nothing to learn from this batch.
    assert max_weight_change(tiny_model, result.checkpoint_dir) == 0.0
    assert engine.model == str(tmp_path)  # the engine ends on the new checkpoint


# A code_o task whose output is the text the tiny model answers with when it writes 6.
BOXED_CODE_O = '```python\ndef f(n):\n    return "\\\\boxed{" + str(n) + "}"\n```\n<input>6</input>'


@pytest.mark.vllm
def test_solver_grpo_on_a_code_task_is_rewarded_by_the_executor(
    engine: RolloutEngine, checker: EquivalenceChecker, tiny_model: Path, tmp_path: Path
):
    """The task reaches the reward through TRL's dataset columns, and the sandbox grades the
    answers: the tiny model's "\\boxed{6}" is f(6), its "\\boxed{5}" is not."""
    code_o = get_kind("code_o")
    with SandboxPool(workers=1) as pool:
        [proposal] = validate_proposals(pool, [code_o.parse_proposal(BOXED_CODE_O)])
        assert proposal.payload["pairs"] == [["6", "'\\\\boxed{6}'"]], proposal
        example = SolverExample(
            prompt=code_o.solver_messages(proposal),
            label=proposal.reference_answer or "",
            kind="code_o",
            pass_rate=0.5,
            code_task=json.dumps(proposal.payload),
        )
        config = tiny_config()
        reward = default_solver_reward(checker, config.rewards, pool)
        # One task repeated: 4 GRPO groups a step, as in the maths test above.
        result = train_solver(
            str(tiny_model), [example] * 4, reward, config, tmp_path, engine=engine
        )
    assert [step.step for step in result.steps] == [1, 2]
    assert any(0.0 < step.reward_mean < 1.0 for step in result.steps), result.steps
    before = log_odds_of_five(tiny_model, example.prompt)
    after = log_odds_of_five(result.checkpoint_dir, example.prompt)
    assert after < before - 0.05, f"log-odds of 5 over 6: {before:.3f} -> {after:.3f}"


# --- Challenger -------------------------------------------------------------------------------


@pytest.mark.vllm
def test_challenger_reward_gets_the_whole_batch_at_once(shared_run):
    result, reward = shared_run
    challenger = result.challenger
    assert len(reward.calls) == 1, "one step, one batch call"
    batch = reward.calls[0]
    assert len(batch) == 16  # batch_size completions: 4 prompts x 4 generations
    assert reward.kinds == [["math"] * 16]
    assert all(text.startswith("<question>What is 2 + 3?") for text in batch), batch
    [step] = challenger.steps
    returned = reward.returned[0]
    assert step.reward_mean == pytest.approx(sum(returned) / len(returned), abs=1e-6)


@pytest.mark.vllm
def test_shared_weights_train_the_challenger_from_the_solver(shared_run, tiny_model: Path):
    result = shared_run[0]
    solver, challenger = result.solver.checkpoint_dir, result.challenger.checkpoint_dir
    assert challenger.name == "challenger" and solver.name == "solver"
    # One Challenger step away from the Solver's checkpoint, further from the start.
    step = weight_distance(solver, challenger)
    assert 0 < step < weight_distance(tiny_model, challenger)


def test_too_few_prompts_for_one_step_is_refused(tmp_path: Path):
    prompts = [ChallengerPrompt(MATH.challenger_messages(None), "math")]  # a step needs 4
    with pytest.raises(ValueError, match=r"at least batch_size / num_generations \(16 / 4 = 4\)"):
        train_challenger("unused", prompts, zero_challenger_reward, tiny_config(), tmp_path)


def test_shared_weights_need_one_model(tmp_path: Path):
    with pytest.raises(ValueError, match="training.weights is 'shared' but the roles have"):
        train_roles(
            "a", "b", [], zero_solver_reward, [], zero_challenger_reward, tiny_config(), tmp_path
        )


# --- reload_weights ----------------------------------------------------------------------------


def fit_to(source: Path, target_text: str, out: Path) -> Path:
    """Train the tiny model, briefly, to answer the Challenger prompt with `target_text`."""
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    prompt = tokenizer.apply_chat_template(
        MATH.challenger_messages(None), tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(target_text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + target_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + target_ids])
    for _ in range(30):  # the loss falls below 0.05 within ~25 steps
        model(input_ids=ids, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


SEVEN = "<question>What is 3 + 4?</question>\n<answer>\\boxed{7}</answer>"


def logprob_vllm(engine: RolloutEngine, model_dir: Path, completion: str) -> float:
    """log p(completion | Challenger prompt) in the running engine.

    `RolloutEngine` returns no log-probabilities, so this reads vLLM's prompt log-probs directly.
    """
    from vllm import SamplingParams

    prompt_ids, target = completion_ids(model_dir, MATH.challenger_messages(None), completion)
    params = SamplingParams(max_tokens=1, prompt_logprobs=0)
    [output] = engine._impl.llm.generate(
        [{"prompt_token_ids": prompt_ids + target}], params, use_tqdm=False
    )
    positions = range(len(prompt_ids), len(prompt_ids) + len(target))
    return sum(output.prompt_logprobs[p][t].logprob for p, t in zip(positions, target, strict=True))


@pytest.mark.vllm
def test_reload_weights_swaps_the_running_vllm_engine(
    engine: RolloutEngine, tiny_model: Path, tmp_path: Path
):
    seven = fit_to(tiny_model, SEVEN, tmp_path / "seven")
    assert greedy_transformers(seven) == SEVEN
    prompt = [MATH.challenger_messages(None)]
    # The engine's bf16 log p(SEVEN) matches transformers' fp32 one to ~0.01 per checkpoint;
    # a partial reload (a stale tied lm_head on vLLM's CPU backend, without the workaround in
    # reload_weights) was off by ~8 nats on this very test, though its greedy text can agree.
    for checkpoint in (tiny_model, seven, tiny_model):
        engine.reload_weights(str(checkpoint))
        assert engine.model == str(checkpoint)
        expected = logprob_transformers(checkpoint, SEVEN)
        assert logprob_vllm(engine, checkpoint, SEVEN) == pytest.approx(expected, abs=0.5)
        assert engine.chat(prompt, GREEDY)[0][0].text == greedy_transformers(checkpoint)
    assert logprob_transformers(tiny_model, SEVEN) < logprob_transformers(seven, SEVEN) - 10


def test_reload_weights_on_the_transformers_fallback(tiny_model: Path, tmp_path: Path):
    engine = RolloutEngine(
        str(tiny_model), EngineConfig(backend="transformers", dtype="float32"), seed=0
    )
    prompt = [MATH.challenger_messages(None)]
    assert engine.chat(prompt, GREEDY)[0][0].text.startswith("<question>What is 2 + 3?")
    engine.reload_weights(str(fit_to(tiny_model, SEVEN, tmp_path / "seven")))
    assert engine.chat(prompt, GREEDY)[0][0].text == SEVEN
    engine.close()


@pytest.mark.vllm
def test_reload_weights_refuses_a_directory_without_a_checkpoint(
    engine: RolloutEngine, tmp_path: Path
):
    with pytest.raises(ValueError, match="is not a Hugging Face checkpoint"):
        engine.reload_weights(str(tmp_path))
