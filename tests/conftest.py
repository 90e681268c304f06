"""Shared fixtures: where the repository is, and sample data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"


@pytest.fixture(name="repo")
def _repo() -> Path:
    return REPO


@pytest.fixture(name="data_dir")
def _data_dir() -> Path:
    return DATA
