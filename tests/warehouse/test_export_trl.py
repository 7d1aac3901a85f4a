"""An export feeds TRL unchanged: `load_from_disk` plus one GRPOTrainer step on a tiny model.

No hub is reachable here, so the tokenizer is a byte-level BPE trained on the
exported text and the model a random 2-layer Llama, both built in seconds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import pytest

from warehouse import Warehouse, content_key
from warehouse.export import ExportFilters, ExportOptions, export_curriculum

from .pipeline import TaskSpec, iteration_rows, run_row, write_iteration

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

trl = pytest.importorskip("trl")
torch = pytest.importorskip("torch")

RUN = content_key("run", "trl")


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    specs = [TaskSpec(f"What is {a} + {b}?", str(a + b), 2) for a, b in [(2, 3), (4, 4), (1, 6)]]
    with Warehouse.open(path) as warehouse:
        warehouse.write("runs", [run_row(RUN)])
        write_iteration(warehouse, RUN, 0, iteration_rows(RUN, 0, specs))
    out = tmp_path / "curriculum"
    export_curriculum(path, out, ExportFilters(), ExportOptions(validation_fraction=0.0))
    return out


def _tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,  # tiny: the model's embedding stays small
        special_tokens=["<unk>", "<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    return tokenizer


def _tiny_llama(tokenizer: PreTrainedTokenizerFast) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=128,  # 2 heads x head_dim 64, as in tests/conftest.py
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=256,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )


def test_one_grpo_step_on_an_export(exported: Path, tmp_path: Path) -> None:
    train = datasets.load_from_disk(str(exported))["train"]  # nothing converted after loading
    assert len(train) == 3
    texts = [message["content"] for prompt in train["prompt"] for message in prompt]
    tokenizer = _tokenizer(texts + list(train["answer"]))
    model = _tiny_llama(tokenizer)
    answers_by_question = dict(zip(train["question"], train["answer"], strict=True))
    seen: list[tuple[str, str]] = []

    def answer_reward(
        completions: list, answer: list[str], question: list[str], **kwargs: object
    ) -> list[float]:
        # Reads the export's `answer` column: digits of the label found in the completion,
        # plus a tiny length term so the two completions of a group differ.
        seen.extend(zip(question, answer, strict=True))
        rewards = []
        for completion, label in zip(completions, answer, strict=True):
            text = completion[0]["content"]
            digits = set(re.findall(r"\d", text))
            rewards.append(len(digits & set(label)) + len(text) / 1000)
        return rewards

    config = trl.GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        use_cpu=True,
        bf16=False,  # TRL 1.16 defaults to bf16, which CPUs here do not train in
        max_completion_length=8,  # short: the model is random, only the plumbing matters
        num_generations=2,  # the smallest group GRPO can normalise
        per_device_train_batch_size=2,
        max_steps=1,
        learning_rate=1e-2,  # big enough that one step visibly moves the weights
        report_to=[],
        save_strategy="no",
        seed=0,
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=answer_reward,
        args=config,
        train_dataset=train,
        processing_class=tokenizer,
    )
    before = {name: value.detach().clone() for name, value in model.named_parameters()}
    result = trainer.train()
    assert result.global_step == 1
    assert seen and all(answers_by_question[q] == a for q, a in seen)  # aligned with prompts
    moved = [
        name for name, value in model.named_parameters() if not torch.equal(before[name], value)
    ]
    assert moved, "one GRPO step changed no weight"
