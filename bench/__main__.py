"""Run every benchmark and write the performance table, `docs/benchmarks.md`.

Each benchmark module exposes `results(quick, step) -> BenchResult`; this runs them in order
(cheap ones first, then the two that start vLLM), shows progress, stamps each row with the
machine, the date and the command that reproduces it, and writes the page. With `--only`
the other benchmarks' rows and sections already on the page are kept.

    python -m bench                          # everything, ~26 min on 2 shared cores
    python -m bench --only clustering --only labelling
    python -m bench --quick --only executor  # small sizes: a smoke test, written elsewhere

`--quick` writes to a scratch file unless `--out` is given, so that smoke-test figures never
replace measured ones in the docs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bench.end_to_end import prefect_environment
from bench.report import BenchResult, Step, machine_label, utc_stamp, write_page

# name -> (module, needs vLLM); the order of the run and of the table.
BENCHMARKS: dict[str, tuple[str, bool]] = {
    "executor": ("bench.executor", False),
    "warehouse": ("bench.warehouse", False),
    "clustering": ("bench.clustering", False),
    "labelling": ("bench.labelling", False),
    "rollout": ("bench.rollout", True),
    "end_to_end": ("bench.end_to_end", True),
}
DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
QUICK_PAGE = Path(tempfile.gettempdir()) / "selfplay-bench-quick.md"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, for a smoke test (minutes, not tens)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"page to write (default {DOCS_PAGE.relative_to(DOCS_PAGE.parent.parent)}; "
        f"with --quick {QUICK_PAGE})",
    )
    return parser.parse_args(argv)


def command_for(name: str, quick: bool) -> str:
    return f"python -m bench --only {name}" + (" --quick" if quick else "")


def run_benchmarks(names: Sequence[str], quick: bool, console: Console) -> list[BenchResult]:
    results = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("benchmarks", total=len(names))
        for name in names:
            step = _stepper(progress, overall, console, name)
            step("starting")
            load_before, started, date = os.getloadavg()[0], time.perf_counter(), utc_stamp()
            module = importlib.import_module(BENCHMARKS[name][0])
            measured: BenchResult = module.results(quick=quick, step=step)
            seconds = time.perf_counter() - started
            machine = machine_label(load_before)
            results.append(measured.stamped(name, machine, date, command_for(name, quick), seconds))
            console.log(f"[bold]{name}[/] done in {seconds:.0f} s")
            progress.advance(overall)
    return results


def _stepper(progress: Progress, task: object, console: Console, name: str) -> Step:
    def step(message: str) -> None:
        progress.update(task, description=f"{name}: {message}")  # type: ignore[arg-type]
        if not console.is_terminal:
            console.log(f"{name}: {message}")  # a log file gets the steps as lines

    return step


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = parse_args(argv)
    console = console or Console(stderr=True, log_path=False)
    prefect_environment()  # before anything imports Prefect
    names = [name for name in BENCHMARKS if not args.only or name in args.only]
    out = args.out or (QUICK_PAGE if args.quick else DOCS_PAGE)
    started = time.perf_counter()
    results = run_benchmarks(names, args.quick, console)
    total = time.perf_counter() - started
    command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    write_page(out, results, list(BENCHMARKS), total, command)
    console.log(f"wrote {out} ({len(results)} benchmarks in {total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
