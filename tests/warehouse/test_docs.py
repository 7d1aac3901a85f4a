"""docs/warehouse.md documents every table column and every view column the code creates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from warehouse import TABLES, VIEWS, Warehouse

DOC = Path(__file__).resolve().parents[2] / "docs" / "warehouse.md"


def _sections() -> dict[str, str]:
    """Level-3 sections of the doc by heading text."""
    parts = re.split(r"^### (.+)$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


@pytest.fixture(scope="module")
def memory() -> Warehouse:
    return Warehouse.open(":memory:")


@pytest.mark.parametrize("table", ["schema_version", *TABLES])
def test_every_table_column_has_a_row_in_its_section(memory: Warehouse, table: str) -> None:
    section = next(
        (body for heading, body in _sections().items() if heading.split()[0] == table), None
    )
    assert section is not None, f"docs/warehouse.md has no '### {table}' section"
    columns = memory.query(f'SELECT * FROM "{table}" LIMIT 0').column_names
    undocumented = [name for name in columns if f"| `{name}` |" not in section]
    assert not undocumented, f"{table}: columns missing from docs/warehouse.md: {undocumented}"


@pytest.mark.parametrize("view", list(VIEWS))
def test_every_view_and_its_columns_are_documented(memory: Warehouse, view: str) -> None:
    section = next(
        (
            body
            for heading, body in _sections().items()
            if f"`{view}`" in heading or heading == view
        ),
        None,
    )
    assert section is not None, f"docs/warehouse.md has no section naming the view {view}"
    columns = memory.query(f'SELECT * FROM "{view}" LIMIT 0').column_names
    undocumented = [name for name in columns if f"`{name}`" not in section]
    assert not undocumented, f"{view}: columns missing from docs/warehouse.md: {undocumented}"
