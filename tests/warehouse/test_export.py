"""export_curriculum: selection, cleaning, stable splits, files on disk, the card, the push."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest

from warehouse import Warehouse, WarehouseError, content_key
from warehouse.export import (
    ExportFilters,
    ExportOptions,
    export_curriculum,
    hub_files,
    split_of,
)

from .pipeline import (
    TaskSpec,
    evaluation_row,
    iteration_rows,
    run_row,
    task_id_for,
    write_iteration,
)

RUN_A, RUN_B = content_key("run", "export-a"), content_key("run", "export-b")
SHEEP = (
    "A farmer has 17 sheep and all but 9 run away. How many sheep does the farmer have left "
    "after the storm passes and the gate is fixed?"
)
NATALIA = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did she sell in total?"
)
SPECS = {
    (RUN_A, 0): [
        TaskSpec("What is 12 * 3?", "36", 2),  # exact duplicate of (A, 1, 0), less sure
        TaskSpec("What is 7 squared?", "49", 3),
        TaskSpec("What is 1 + 1?", "2", 4),  # too easy
        TaskSpec("What is 99 * 99?", "9801", 0),  # too hard
        TaskSpec("Which is prime? A) 4 B) 9 C) 7", "C", 2, kind="mcq"),
        TaskSpec(NATALIA, "72", 2),  # contaminated by an evaluation text passed in
    ],
    (RUN_A, 1): [
        TaskSpec("What is 12 * 3?", "36", 3),
        TaskSpec(
            "def f(x): return x * 2\nprint(f(3))", "6", 2, kind="code_o", label_source="executor"
        ),
        TaskSpec(SHEEP, "8", 2),
        TaskSpec(SHEEP.replace("fixed?", "fixed again?"), "8", 2),  # near duplicate
    ],
    (RUN_B, 0): [
        TaskSpec("Compute the sum of the first ten odd numbers.", "100", 2),  # in evaluations
        TaskSpec("Evaluate 5 factorial.", "120", 1),  # too hard
    ],
}
EVAL_TEXTS = ["Natalia sold clips to 48 of her friends in April, and then she sold half"]
NO_CLEANING = ExportOptions(exact_dedup=False, near_dedup=None, decontaminate=False)


def key(run: str, iteration: int, slot: int) -> str:
    return task_id_for(run, iteration, slot)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "warehouse.duckdb"
    with Warehouse.open(path) as warehouse:
        warehouse.write("runs", [run_row(RUN_A, seed=1), run_row(RUN_B, seed=2)])
        for (run, iteration), specs in SPECS.items():
            write_iteration(warehouse, run, iteration, iteration_rows(run, iteration, specs))
        warehouse.write(
            "evaluations",
            [
                evaluation_row(
                    "reasoning_gym",
                    "odd-sum-1",
                    "Problem: compute the sum of the first ten odd numbers. Answer:",
                    "",
                )
            ],
        )
    return path


@pytest.fixture
def out(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "curriculum"


def _ids(path: Path) -> set[str]:
    loaded = datasets.load_from_disk(str(path))
    return {task_id for split in loaded.values() for task_id in split["task_id"]}


def test_default_export_cleans_the_frontier_and_counts_each_step(source: Path, out: Path) -> None:
    result = export_curriculum(source, out, evaluation_texts=EVAL_TEXTS)
    counts = result.counts
    assert {
        k: counts[k] for k in ("selected", "exact_duplicates", "near_duplicates", "contaminated")
    } == {"selected": 9, "exact_duplicates": 1, "near_duplicates": 1, "contaminated": 2}
    assert counts["train"] + counts["validation"] == 5
    kept = _ids(out)
    assert key(RUN_A, 1, 0) in kept and key(RUN_A, 0, 0) not in kept  # the surer copy stays
    assert len(kept & {key(RUN_A, 1, 2), key(RUN_A, 1, 3)}) == 1  # one of the near pair
    assert key(RUN_A, 0, 5) not in kept and key(RUN_B, 0, 0) not in kept  # contaminated
    assert result.source.kind == "live"


def test_rows_follow_trl_conventions(source: Path, out: Path) -> None:
    export_curriculum(source, out, ExportFilters(kinds=("code_o",)), NO_CLEANING)
    [row] = datasets.load_from_disk(str(out))["train"].to_list()
    assert row["prompt"] == [
        {"role": "system", "content": "Answer with \\boxed{}."},
        {"role": "user", "content": "def f(x): return x * 2\nprint(f(3))"},
    ]
    assert row["answer"] == row["solution"] == "6"
    assert row["label_source"] == "executor" and row["kind"] == "code_o"
    assert {
        "task_id",
        "pass_rate",
        "band",
        "majority_share",
        "question",
        "reference_answer",
        "run_id",
        "iteration",
        "doc_id",
    } <= set(row)


def test_parquet_files_hold_the_same_rows_as_save_to_disk(source: Path, out: Path) -> None:
    result = export_curriculum(source, out, ExportFilters(bands=()), NO_CLEANING)
    on_disk = datasets.load_from_disk(str(out))
    parquet = datasets.load_dataset(
        "parquet", data_files={name: str(path) for name, path in result.parquet_paths.items()}
    )
    assert set(parquet) == {name for name, split in on_disk.items() if len(split)}
    for name in parquet:
        assert parquet[name].to_list() == on_disk[name].to_list()
    assert sum(len(split) for split in on_disk.values()) == 12  # every valid labelled task


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (ExportFilters(run_ids=(RUN_B,), bands=()), {(RUN_B, 0, 0), (RUN_B, 0, 1)}),
        (
            ExportFilters(iterations=(1,), kinds=("math",)),
            {(RUN_A, 1, 0), (RUN_A, 1, 2), (RUN_A, 1, 3)},
        ),
        (
            ExportFilters(bands=("too_easy", "too_hard")),
            {(RUN_A, 0, 2), (RUN_A, 0, 3), (RUN_B, 0, 1)},
        ),
        (
            ExportFilters(min_confidence=0.75, bands=()),
            {(RUN_A, 0, 1), (RUN_A, 0, 2), (RUN_A, 1, 0)},
        ),
        (ExportFilters(label_sources=("executor",)), {(RUN_A, 1, 1)}),
        (
            ExportFilters(where="question LIKE '%sheep%' AND pass_rate = 0.5"),
            {(RUN_A, 1, 2), (RUN_A, 1, 3)},
        ),
    ],
    ids=["run", "iterations+kinds", "bands", "min-confidence", "label-source", "where"],
)
def test_named_filters_and_where_select_exactly_their_tasks(
    source: Path, out: Path, filters: ExportFilters, expected: set[tuple[str, int, int]]
) -> None:
    export_curriculum(source, out, filters, NO_CLEANING)
    assert _ids(out) == {key(*task) for task in expected}


def test_split_is_a_stable_function_of_the_task_key(source: Path, tmp_path: Path) -> None:
    options = ExportOptions(
        validation_fraction=0.5, exact_dedup=False, near_dedup=None, decontaminate=False
    )
    everything = export_curriculum(source, tmp_path / "all", ExportFilters(bands=()), options)
    frontier = export_curriculum(source, tmp_path / "frontier", ExportFilters(), options)
    assert everything.counts["validation"] > 0 and everything.counts["train"] > 0
    for path in (tmp_path / "all", tmp_path / "frontier"):
        for name, split in datasets.load_from_disk(str(path)).items():
            assert all(split_of(task_id, 0.5) == name for task_id in split["task_id"])
    assert frontier.counts["train"] + frontier.counts["validation"] == 9


def test_split_of_is_deterministic_and_close_to_the_fraction() -> None:
    ids = [content_key("task", i) for i in range(4000)]
    share = sum(split_of(task_id, 0.1) == "validation" for task_id in ids) / len(ids)
    assert 0.08 < share < 0.12, f"validation share {share:.3f} for fraction 0.1"
    assert [split_of(task_id, 0.1) for task_id in ids[:50]] == [
        split_of(task_id, 0.1) for task_id in ids[:50]
    ]
    assert any(split_of(t, 0.1) != split_of(t, 0.1, salt="other") for t in ids[:200])


def test_card_states_provenance_filters_counts_and_difficulty(source: Path, out: Path) -> None:
    result = export_curriculum(
        source, out, ExportFilters(min_confidence=0.5), evaluation_texts=EVAL_TEXTS
    )
    card = result.card_path.read_text()
    assert card.startswith("---\npretty_name: selfplay curriculum\n")
    assert "path: data/train-*.parquet" in card
    assert f"| `{RUN_A}` |" in card and f"| `{RUN_B}` |" in card
    assert "- min_confidence: 0.5" in card and "- bands: frontier" in card
    assert "majority_share >= ?" in card and "[['frontier'], 0.5]" in card
    assert "| 9 | 1 | 1 | 2 |" in card  # selected, exact, near, contaminated
    assert "| median |" in card and "p̂ histogram" in card
    assert "against 2 evaluation texts" in card  # the one passed in + the evaluations table


def test_bad_where_clause_names_the_problem(source: Path, out: Path) -> None:
    with pytest.raises(WarehouseError, match="check the filters and the WHERE clause.*no_column"):
        export_curriculum(source, out, ExportFilters(where="no_column = 1"))
    assert not out.exists()


def test_nothing_selected_is_an_error_that_suggests_loosening(source: Path, out: Path) -> None:
    with pytest.raises(WarehouseError, match="no labelled task matches.*loosen them"):
        export_curriculum(source, out, ExportFilters(kinds=("code_f",)))


def test_unknown_filter_values_are_refused() -> None:
    with pytest.raises(WarehouseError, match="unknown band.*'middle'.*frontier"):
        ExportFilters(bands=("middle",))
    with pytest.raises(WarehouseError, match="unknown label source"):
        ExportFilters(label_sources=("oracle",))
    with pytest.raises(WarehouseError, match=r"validation_fraction \(1.0\) must be in \[0, 1\)"):
        ExportOptions(validation_fraction=1.0)


def test_existing_folders_are_protected(source: Path, out: Path) -> None:
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(WarehouseError, match="files that are not an export; choose another"):
        export_curriculum(source, out, options=NO_CLEANING)
    assert (out / "notes.txt").read_text() == "mine"
    fresh = out.parent / "fresh"
    export_curriculum(source, fresh, options=NO_CLEANING)
    with pytest.raises(WarehouseError, match="an earlier export; pass overwrite"):
        export_curriculum(source, fresh, options=NO_CLEANING)
    overwrite = ExportOptions(
        overwrite=True, exact_dedup=False, near_dedup=None, decontaminate=False
    )
    export_curriculum(source, fresh, ExportFilters(kinds=("mcq",)), overwrite)
    assert _ids(fresh) == {key(RUN_A, 0, 4)}
    assert not list(fresh.parent.glob(".fresh.partial-*"))  # no scratch folder left


def test_push_uploads_the_card_and_parquet_and_reports_a_failed_push(
    source: Path, out: Path
) -> None:
    export_curriculum(source, out, options=NO_CLEANING)
    assert [path.relative_to(out).as_posix() for path in hub_files(out)] == [
        "README.md",
        "data/train-00000-of-00001.parquet",  # validation is empty: no file
    ]
    # A real push attempt in a process that cannot reach a hub: it gets as far
    # as the first request, and the error says the export is safe on disk.
    script = (
        "import sys\nfrom warehouse.export import ExportOptions, export_curriculum\n"
        "from warehouse import WarehouseError\n"
        "options = ExportOptions(push_to_hub='selfplay-test/curriculum', overwrite=True)\n"
        "try:\n    export_curriculum(sys.argv[1], sys.argv[2], options=options)\n"
        "except WarehouseError as err:\n    print(err)\n    sys.exit(3)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_not_a_real_token"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(source), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "pushing" in done.stdout and "selfplay-test/curriculum failed" in done.stdout
    assert "the export on disk is complete" in done.stdout
    assert json.loads((out / "dataset_dict.json").read_text())["splits"] == ["train", "validation"]
