"""Shared fixtures: the real Binance data beside the project, skipped by name when absent; and
the helpers a test uses to wait for something instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
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


DEADLINE = 60.0
"""Seconds a test waits for something that normally takes milliseconds: generous enough for a
machine several times slower than ours, or one busy with other work. A test waits for the thing
itself (a message, a counter, a row); it never sleeps a fixed time and hopes."""


async def until(predicate: Callable[[], object], *, timeout: float = DEADLINE,
                every: float = 0.005, what: str = "") -> None:
    """Poll ``predicate`` on the running loop until it holds; fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"waited {timeout} s for {what or predicate}")
        await asyncio.sleep(every)


def wait_until(predicate: Callable[[], object], *, timeout: float = DEADLINE,
               every: float = 0.01, what: str = "") -> None:
    """Poll ``predicate`` (no event loop) until it holds; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what or predicate}")
        time.sleep(every)
