"""`selfplay report`: the table it prints, the plots it writes, and its errors, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flows.cli import main
from selfplay.report import DIFFICULTY_PLOT, HELDOUT_PLOT, STAGE_TIME_PLOT
from tests.selfplay.test_report import EMPTY_RUN, RUN, write_two_iteration_run


@pytest.fixture(scope="module")
def warehouse_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-report") / "w.duckdb"
    write_two_iteration_run(path)
    return path


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _lines(text: str) -> list[str]:
    """Output lines with runs of spaces collapsed (the column widths follow the terminal)."""
    return [" ".join(line.split()) for line in text.splitlines()]


def test_prints_the_table_and_writes_plots_beside_the_warehouse(warehouse_path: Path):
    result = _invoke("report", "aaa1", "--warehouse", str(warehouse_path))
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert f"run {RUN}, started 2025-01-01 12:00 UTC" in lines
    # iter, proposals, valid, too easy, frontier, too hard, label=ref, exec maj,
    # Challenger reward, held-out, time
    assert "0 - - - - - - - - 38% -" in lines
    [first] = [line for line in lines if line.startswith("1 5 4 ")]
    assert first.startswith("1 5 4 1 2 1 67% (3) 100%") and "0.250 75% 60" in first
    assert "2 3 3 0 2 1 - 50% - 75% 5" in lines or "2 3 3 0 2 1 - 50% (2) - 75% 5" in lines
    # held-out accuracy per benchmark
    header = lines.index("iter arith humaneval")
    assert lines[header + 2 : header + 5] == ["0 25% 50%", "1 50% 100%", "2 75% -"]
    out = warehouse_path.parent / "reports" / RUN
    for name in (DIFFICULTY_PLOT, HELDOUT_PLOT, STAGE_TIME_PLOT):
        assert f"plot: {out / name}" in lines
        assert (out / name).stat().st_size > 10_000
    assert result.stderr == ""


def test_out_folder(warehouse_path: Path, tmp_path: Path):
    out = tmp_path / "plots"
    result = _invoke("report", RUN, "--warehouse", str(warehouse_path), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [DIFFICULTY_PLOT, HELDOUT_PLOT, STAGE_TIME_PLOT]
    assert f"plot: {out / HELDOUT_PLOT}" in result.stdout


@pytest.mark.parametrize(
    ("run_id", "message"),
    [
        ("zzz", "Error: no run 'zzz' in {warehouse}; list the runs with: selfplay sql"),
        ("aaa", "Error: run id prefix 'aaa' matches several runs (aaa111, aaa222)"),
        (EMPTY_RUN, f"Error: run {EMPTY_RUN} has no iterations yet"),
    ],
)
def test_errors_are_one_line_and_exit_1(warehouse_path: Path, run_id: str, message: str):
    result = _invoke("report", run_id, "--warehouse", str(warehouse_path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(message.format(warehouse=warehouse_path))
    assert result.stderr.count("\n") == 1


def test_missing_warehouse(tmp_path: Path):
    result = _invoke("report", RUN, "--warehouse", str(tmp_path / "none.duckdb"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: no warehouse at {tmp_path / 'none.duckdb'}")


def test_help_has_an_example():
    result = _invoke("report", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Example: selfplay report 3fa2 --warehouse runs/selfplay.duckdb" in text
    assert "[default: reports/RUN_ID beside the warehouse file]" in text
