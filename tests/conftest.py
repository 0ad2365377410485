"""Shared fixtures: the real Binance data beside the project, skipped by name when absent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(relative: str) -> Path:
    """Return ``../shared/data/<relative>``, or skip the test naming the missing path."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing")
    return path


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Every test starts and ends with structlog's defaults (a CLI test configures it)."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def shared() -> object:
    """The :func:`shared_path` helper, as a fixture."""
    return shared_path
