# The two commands of the README. Both set up .venv first (quick when nothing changed).
.PHONY: setup generate test lint

setup:
	bash scripts/setup.sh

generate: setup
	.venv/bin/selfplay generate --tasks 32

test: setup
	bash scripts/setup-browser.sh
	.venv/bin/pytest -q

lint: setup
	.venv/bin/ruff check . && .venv/bin/mypy selfplay flows corpora verifiers warehouse
