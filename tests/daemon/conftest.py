"""The tape the daemon tests' local exchange plays: the simulator's half hour, made once."""

from __future__ import annotations

import pytest

from ares_stream.sim.exchange import Tape
from ares_stream.sim.simulator import write_recording

SYMBOL = "SIMUSDT"


@pytest.fixture(scope="session")
def tape(tmp_path_factory: pytest.TempPathFactory) -> Tape:
    """About 5,600 aggTrades and 8,500 book tops of SIMUSDT (seed 21). A module may define its
    own ``tape`` (test_ingest's plays another seed)."""
    path = tmp_path_factory.mktemp("dtape") / "sim.gz"
    write_recording(path, seconds=1800, seed=21, symbol=SYMBOL)
    return Tape.from_recording([path])
