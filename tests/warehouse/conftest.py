"""Fixtures: a fresh warehouse file per test, in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from warehouse import Warehouse


@pytest.fixture
def warehouse_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "warehouse.duckdb"


@pytest.fixture
def warehouse(warehouse_path: Path) -> Iterator[Warehouse]:
    with Warehouse.open(warehouse_path) as opened:
        yield opened
