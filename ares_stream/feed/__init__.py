"""Sources of market data: the live websocket, wire decoding, the gate, REST backfill, recordings
and public-data files.

Every source yields :class:`RawFrame` (a raw websocket frame with its receive time) or ready-made
events (file rows have no wire frame); the engine cannot tell the live feed from a replay.
"""

from __future__ import annotations

from typing import NamedTuple


class RawFrame(NamedTuple):
    """One raw websocket frame and the time we received it (ns since the epoch)."""

    ts_init: int
    data: bytes
