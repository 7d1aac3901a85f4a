"""The benchmark entry point: a quick run writes the table, and partial runs merge into it.

The cheap benchmarks run for real at `--quick` sizes (about half a minute here); the two
that start vLLM have their own test, marked `vllm`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rich.console import Console

from bench.__main__ import BENCHMARKS, main
from bench.report import COLUMNS, NO_BASELINE, BenchResult, Record, parse_table, write_page

CHEAP = [name for name, (_, needs_vllm) in BENCHMARKS.items() if not needs_vllm]


def _run(out: Path, *names: str) -> list[dict[str, str]]:
    argv = ["--quick", "--out", str(out)]
    for name in names:
        argv += ["--only", name]
    assert main(argv, console=Console(quiet=True)) == 0
    return parse_table(out.read_text())


def _ratio(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_a_quick_run_of_the_cheap_benchmarks_writes_the_table(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    rows = _run(out, *CHEAP)
    page = out.read_text()
    assert "| " + " | ".join(COLUMNS) + " |" in page
    assert rows and all(tuple(row) == COLUMNS for row in rows)
    for name in CHEAP:
        mine = [row for row in rows if f"--only {name} --quick" in row["command"]]
        compared = [row for row in mine if row["baseline"] != NO_BASELINE]
        assert compared, f"{name} wrote no comparison row: {mine}"
        for row in compared:
            assert _ratio(row["ratio"]) > 0, row
        assert f"<!-- bench:{name} -->" in page
    for row in rows:
        assert row["machine"].startswith(f"{os.cpu_count()} cores"), row
        assert row["date"].endswith("UTC"), row


def _result(name: str, what: str, ratio: float) -> BenchResult:
    record = Record(what, "1 s", "2 s", ratio)
    return BenchResult([record], f"details of {name}").stamped(
        name, "2 cores", "2025-01-01 00:00 UTC", f"python -m bench --only {name}", 1.0
    )


def test_a_partial_run_replaces_only_its_own_rows_and_sections(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    order = ["executor", "clustering"]
    write_page(
        out, [_result("executor", "old pool", 2.0), _result("clustering", "old", 3.0)], order, 60.0
    )
    write_page(out, [_result("clustering", "new", 4.0)], order, 10.0)
    rows = parse_table(out.read_text())
    assert [(row["what"], _ratio(row["ratio"])) for row in rows] == [
        ("old pool", 2.0),
        ("new", 4.0),
    ]
    page = out.read_text()
    assert "details of executor" in page and page.count("details of clustering") == 1


def test_an_unknown_benchmark_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "nonsense"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


@pytest.mark.vllm
def test_a_quick_run_of_the_vllm_benchmarks_writes_their_rows(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    rows = _run(out, "rollout", "end_to_end")
    rollout = [row for row in rows if "--only rollout" in row["command"]]
    assert len(rollout) == 1 and _ratio(rollout[0]["ratio"]) > 0, rollout
    shares = [
        row for row in rows if "--only end_to_end" in row["command"] and "share" in row["what"]
    ]
    assert shares and all(0 <= _ratio(row["ratio"]) <= 1 for row in shares), shares
