"""The bundled sample corpus: size, provenance, licences, and the builder that makes it."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from corpora import load_corpus, sample_corpus_path
from corpora.build_sample import GROUPS, STDLIB, Group, prose_chars, write_corpus

FIELDS = {"text", "title", "source", "domain", "licence", "package_version"}


def bundled_records() -> list[dict[str, str]]:
    lines = sample_corpus_path().read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_bundled_file_exists_and_is_small() -> None:
    path = sample_corpus_path()
    assert path.is_file()
    assert path.stat().st_size < 3_000_000


def test_every_record_has_provenance_and_licence() -> None:
    records = bundled_records()
    assert len(records) >= 300
    for record in records:
        assert set(record) == FIELDS, record.get("title")
        assert all(isinstance(record[key], str) and record[key].strip() for key in FIELDS)
        assert record["licence"] in {"BSD-3-Clause", "PSF-2.0"}
        assert record["text"].startswith(record["title"])


def test_three_domains_in_roughly_equal_shares() -> None:
    domains = Counter(record["domain"] for record in bundled_records())
    assert set(domains) == {"math", "science", "code"}
    total = sum(domains.values())
    assert all(count / total > 0.25 for count in domains.values()), domains


def test_loads_through_load_corpus_without_rejections() -> None:
    load = load_corpus(sample_corpus_path())
    assert len(load.documents) == len(bundled_records())
    assert load.skipped == []
    doc = load.documents[0]
    assert set(doc.metadata) == {"source", "domain", "licence", "package_version"}


def test_each_source_has_its_licence_files_and_a_sources_entry() -> None:
    sample_dir = sample_corpus_path().parent
    sources_md = (sample_dir / "SOURCES.md").read_text(encoding="utf-8")
    for source in {record["source"] for record in bundled_records()}:
        licence_files = sorted((sample_dir / "licenses").glob(f"{source}-*"))
        assert licence_files, source
        assert any("Copyright" in f.read_text(encoding="utf-8") for f in licence_files), source
        assert f"| {source} |" in sources_md


def test_documents_are_prose_rich() -> None:
    for record in bundled_records():
        docstring = record["text"].split("\n\n", 1)[1]
        assert prose_chars(docstring) >= 300, record["title"]


def test_builder_is_deterministic_and_writes_all_outputs(tmp_path: Path) -> None:
    # Two small stdlib modules keep this fast; the real build reads many more.
    group = Group(
        "stdlib-small",
        STDLIB,
        "code",
        "PSF-2.0",
        "https://www.python.org",
        ("difflib", "heapq"),
        quota=5,
    )
    first = write_corpus(tmp_path / "a", (group,))
    second = write_corpus(tmp_path / "b", (group,))
    written = (tmp_path / "a" / "documents.jsonl").read_bytes()
    assert written == (tmp_path / "b" / "documents.jsonl").read_bytes()
    assert [c.title for c in first] == [c.title for c in second]
    assert len(written.splitlines()) == 5
    assert (tmp_path / "a" / "licenses" / "python-stdlib-LICENSE.txt").is_file()
    assert "| stdlib-small | python-stdlib |" in (tmp_path / "a" / "SOURCES.md").read_text()
    assert len(load_corpus(tmp_path / "a" / "documents.jsonl").documents) == 5


def test_bundled_stdlib_records_match_a_fresh_extraction() -> None:
    # Guards against hand edits: the same interpreter gives the same stdlib docstrings.
    (stdlib,) = [group for group in GROUPS if group.package == STDLIB]
    bundled = [r for r in bundled_records() if r["source"] == STDLIB]
    if bundled[0]["package_version"] != platform.python_version():
        pytest.skip(
            f"corpus built with Python {bundled[0]['package_version']}, "
            f"running {platform.python_version()}: docstrings may differ"
        )
    # In a fresh interpreter: `import ray` (which Prefect may do, through prefect-ray's
    # collection entry point) swaps stdlib functions such as inspect.isgenerator for wrappers
    # without docstrings, and this test would compare those.
    script = (
        "import json; from corpora.build_sample import GROUPS, STDLIB, extract_group; "
        "(group,) = [g for g in GROUPS if g.package == STDLIB]; "
        "print(json.dumps({c.title: c.text for c in extract_group(group)}))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    fresh = json.loads(output)
    assert len(bundled) == stdlib.quota
    assert all(fresh.get(r["title"]) == r["text"] for r in bundled)
