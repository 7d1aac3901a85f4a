"""Result records of the benchmark suite and the markdown page they are written to.

Each benchmark returns a `BenchResult`: table `Record`s (what, ours, baseline, ratio) plus a
free-form markdown section with the details. The runner (`bench/__main__.py`) stamps every
record with the machine, the date and the command that reproduces it, and `write_page` renders
`docs/benchmarks.md`. A run with `--only` replaces only its own benchmarks' rows and sections:
rows are matched to a benchmark by the `--only NAME` in their command cell, sections by their
`<!-- bench:NAME -->` markers, so the rest of the page survives a partial re-run.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

COLUMNS = ("what", "ours", "baseline", "ratio", "machine", "date", "command")
NO_BASELINE = "—"
_ONLY = re.compile(r"--only (\w+)")
_SECTION = re.compile(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->\n?", re.DOTALL)
_CELL_SPLIT = re.compile(r"(?<!\\)\|")

# A benchmark reports what it is doing through this callback (shown by the progress bar).
Step = Callable[[str], None]


def no_step(message: str) -> None:
    """The default `Step`: say nothing (library callers, tests)."""


@dataclass(frozen=True)
class Record:
    """One table row: our figure, the baseline's, and how many times better ours is.

    `ratio` is our rate / the baseline's rate (= baseline time / our time), so above 1 ours
    is faster; a row whose `what` says "share" has ours / baseline = a share of wall time
    instead. None where there is no baseline.
    """

    what: str
    ours: str
    baseline: str = NO_BASELINE
    ratio: float | None = None
    machine: str = ""
    date: str = ""
    command: str = ""

    def cells(self) -> tuple[str, ...]:
        ratio = NO_BASELINE if self.ratio is None else format_ratio(self.ratio)
        values = (self.what, self.ours, self.baseline, ratio, self.machine, self.date)
        return (*values, f"`{self.command}`" if self.command else "")


@dataclass(frozen=True)
class BenchResult:
    """What one benchmark measured: its table rows and a markdown section of details."""

    records: list[Record]
    details: str = ""
    # Set by the runner.
    name: str = ""
    seconds: float = 0.0

    def stamped(
        self, name: str, machine: str, date: str, command: str, seconds: float
    ) -> BenchResult:
        records = [replace(r, machine=machine, date=date, command=command) for r in self.records]
        return replace(self, records=records, name=name, seconds=seconds)


def format_ratio(ratio: float) -> str:
    """Two significant digits below 10, whole numbers above: 0.97, 11.5 -> 12, 961."""
    if ratio >= 10:
        return f"{ratio:,.0f}"
    if ratio >= 1:
        return f"{ratio:.1f}"
    return f"{ratio:.2f}"


def machine_label(load_before: float) -> str:
    """Short machine description for a row: cores, memory, load average before and after."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load_after = os.getloadavg()[0]
    return f"{os.cpu_count()} cores, {memory:.0f} GiB, load {load_before:.1f}→{load_after:.1f}"


def machine_description() -> str:
    """One line for the page header: CPU model, cores, memory, OS, Python."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB, no GPU; "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- the page ------------------------------------------------------------------------------

_HEADER = """# Benchmarks

Written by `python -m bench` (`bench/__main__.py`); do not edit by hand. Each row's command
re-runs the benchmark behind it and rewrites only that benchmark's rows and section here.
{full}
Last written by: {run}.

Machine: {machine}. It is shared with other work: the `machine` column gives the 1-minute
load average before → after each benchmark, and each comparison alternates ours and the
baseline on the same data, so that load hits both alike.

**ratio** is our rate ÷ the baseline's rate (= baseline time ÷ our time): above 1 ours is
faster. Rows whose *what* says **share** give ours ÷ baseline = the share of a run's wall
time instead. `—`: no baseline.

"""
_FULL = re.compile(r"^A full run .*$", re.MULTILINE)


def render_table(records: Sequence[Record]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for record in records:
        cells = [cell.replace("|", "\\|").replace("\n", " ") for cell in record.cells()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_table(page: str) -> list[dict[str, str]]:
    """The rows of the page's benchmark table as {column: cell} (empty if there is none)."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in page.splitlines():
        if not line.startswith("|"):
            if header is not None and rows:
                break  # the table has ended
            continue
        cells = [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(line.strip())[1:-1]]
        if header is None:
            if tuple(cells) == COLUMNS:
                header = cells
            continue
        if all(set(c) <= {"-", ":"} for c in cells):
            continue
        rows.append(dict(zip(header, cells, strict=False)))
    return rows


def _row_record(row: dict[str, str]) -> Record:
    ratio_cell = row.get("ratio", NO_BASELINE).replace(",", "")
    try:
        ratio: float | None = float(ratio_cell)
    except ValueError:
        ratio = None
    return Record(
        what=row.get("what", ""),
        ours=row.get("ours", ""),
        baseline=row.get("baseline", NO_BASELINE),
        ratio=ratio,
        machine=row.get("machine", ""),
        date=row.get("date", ""),
        command=row.get("command", "").strip("`"),
    )


def benchmark_of(record: Record) -> str | None:
    """Which benchmark produced a row, from the `--only NAME` in its command."""
    found = _ONLY.search(record.command)
    return found.group(1) if found else None


def write_page(
    path: Path,
    results: Sequence[BenchResult],
    order: Sequence[str],
    total_s: float,
    command: str = "python -m bench",
) -> None:
    """Write the page: these results, plus the rows and sections of benchmarks not re-run."""
    old = path.read_text() if path.is_file() else ""
    ran = {result.name for result in results}
    kept_records = [
        record
        for record in map(_row_record, parse_table(old))
        if benchmark_of(record) not in ran and benchmark_of(record) in order
    ]
    sections = {name: body for name, body in _SECTION.findall(old) if name not in ran}
    sections |= {result.name: _section(result) for result in results}
    records = kept_records + [record for result in results for record in result.records]
    rank = {name: index for index, name in enumerate(order)}
    records.sort(key=lambda r: rank.get(benchmark_of(r) or "", len(rank)))  # stable in a bench
    full_run = (
        f"A full run (`python -m bench`) took {total_s / 60:.0f} min here ({utc_stamp()})."
        if ran >= set(order) and "--quick" not in command
        else _previous_full_run(old)
    )
    names = ", ".join(result.name for result in results)
    header = _HEADER.format(
        full=full_run,
        run=f"{command} ({names}; {total_s / 60:.1f} min)",
        machine=machine_description(),
    )
    body = [
        f"<!-- bench:{name} -->\n{sections[name]}<!-- /bench:{name} -->\n"
        for name in order
        if name in sections
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + render_table(records) + "\n## Details\n\n" + "\n".join(body))


def _section(result: BenchResult) -> str:
    details = result.details.strip()
    took = f"_Took {result.seconds:.0f} s._"
    return (
        f"### {result.name}\n\n{details}\n\n{took}\n"
        if details
        else f"### {result.name}\n\n{took}\n"
    )


def _previous_full_run(old: str) -> str:
    found = _FULL.search(old)
    return found.group(0) if found else "A full run (`python -m bench`) takes tens of minutes."
