"""Bad input reaches the user as one clear line and exit status 1, before any row is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from flows.cli import main


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_empty_corpus_folder(tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    warehouse = tmp_path / "w.duckdb"
    result = _invoke("generate", "--warehouse", str(warehouse), "--set", f"corpus.path={corpus}")
    assert result.exit_code == 1
    assert "Error: no documents found in" in result.output
    assert not warehouse.exists(), "nothing may be written before the inputs are checked"


def test_binary_only_corpus(tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "blob.txt").write_bytes(b"\x00\x01\x02binary\xff" * 100)
    result = _invoke(
        "generate", "--warehouse", str(tmp_path / "w.duckdb"), "--set", f"corpus.path={corpus}"
    )
    assert result.exit_code == 1
    assert "binary" in result.output


def test_missing_model_path(tmp_path: Path):
    result = _invoke(
        "generate",
        "--warehouse",
        str(tmp_path / "w.duckdb"),
        "--set",
        f"model.solver={tmp_path / 'no-such-model'}",
    )
    assert result.exit_code == 1
    assert "neither an existing checkpoint directory nor a hub id" in result.output


def test_unwritable_warehouse_path(tmp_path: Path, embedded_model: Path, model_cache: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _invoke(
        "generate",
        "--warehouse",
        str(blocker / "w.duckdb"),
        "--set",
        f"model.cache_dir={model_cache}",
    )
    assert result.exit_code == 1
    assert "Error:" in result.output and str(blocker) in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["generate", "--tasks", "0"],
            "generate.tasks: Input should be greater than or equal to 1",
        ),
        (["generate", "--set", "labels.frontier_low=0.9"], "must not exceed labels.frontier_high"),
        (
            ["config", "show", "--config", "/no/such.yaml"],
            "config file /no/such.yaml does not exist",
        ),
    ],
)
def test_bad_config_is_one_line(args, message):
    result = _invoke(*args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_config_show_prints_effective_yaml():
    result = _invoke("config", "show", "--set", "generate.tasks=5")
    assert result.exit_code == 0
    assert "generate:\n  tasks: 5\n" in result.output
    assert "frontier_low: 0.3" in result.output


def test_sql_on_a_missing_warehouse(tmp_path: Path):
    result = _invoke("sql", "SELECT 1", "--warehouse", str(tmp_path / "none.duckdb"))
    assert result.exit_code == 1
    assert "none.duckdb" in result.output


def test_every_command_has_help_with_an_example():
    for command in (["generate"], ["sql"], ["export"], ["config", "show"], ["prepare-model"]):
        result = _invoke(*command, "--help")
        assert result.exit_code == 0
        assert "Example:" in result.output, command


def test_serve_without_a_prefect_server_says_how_to_start_one(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = _invoke("serve")
    assert result.exit_code == 1
    assert "selfplay serve needs a Prefect server" in result.output
    assert "prefect server start --host 127.0.0.1" in result.output


def test_a_schedule_with_cron_and_interval_is_refused():
    result = _invoke(
        "serve",
        "--set",
        "flows.export_schedule.cron=0 3 * * *",
        "--set",
        "flows.export_schedule.interval_minutes=5",
    )
    assert result.exit_code == 1
    assert "cron or interval_minutes, not both" in result.output
