"""Faults the local exchange injects: what a real exchange (or the network in front of it) does.

Every field is a plain number, mutable while the exchange runs; 0 means off. Counters of
"every n-th frame" count the tape frames handled on one connection, from 1 (those of depth diffs
count that connection's depth diffs). The depth faults break what a client following Binance's
book procedure relies on: ``skip_depth`` / ``skip_depth_every`` leave a diff out on one
connection (its next ``U`` is not the previous ``u`` + 1 there: the client must notice and
resync from a new snapshot), ``stale_depth`` answers the book some diffs back (a client that
buffered fewer finds ``lastUpdateId`` below its first buffered ``U`` - 1: it must fetch again).

>>> faults = Faults(rest_429=1)
>>> take(faults, "rest_429"), take(faults, "rest_429"), faults.rest_429
(True, False, 0)
>>> malformed(b'{"e":"trade","p":"61837.63","q":"1"}', 0)
b'{"e":"trade","p":"'
>>> malformed(b'{"e":"trade","p":"61837.63","q":"1"}', 1)
b'{"e":"trade","p":"NaN","q":"1"}'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Faults", "every", "malformed", "take"]

_PRICE = re.compile(rb'"p":"[^"]*"')


@dataclass
class Faults:
    """What to break; mutable at run time, 0 means off."""

    drop_every: int = 0  # abort (no close frame) each connection after this many frames
    close_every: int = 0  # clean close (1000) after this many frames
    malformed_every: int = 0  # after every n-th frame, also send a malformed one
    duplicate_every: int = 0  # send every n-th frame twice
    swap_every: int = 0  # send every n-th frame after the next one
    silence_after: int = 0  # after this many frames send nothing more (the connection stays open)
    refuse_connections: int = 0  # refuse the next N websocket handshakes with HTTP 503
    shutdown_after: int = 0  # after this many frames send a serverShutdown event, then close
    rest_429: int = 0  # answer the next N REST market-data requests 429 (Retry-After: 1)
    rest_418: int = 0  # same with 418 (an IP ban)
    rest_delay_s: float = 0.0  # answer every REST market-data request this much later
    skip_depth: int = 0  # leave out the next N depth diffs, each on the connection it was for
    skip_depth_every: int = 0  # leave out every n-th depth diff of each connection
    stale_depth: int = 0  # answer the next N /api/v3/depth with the book 10 depth diffs back
    max_drops: int = 0  # connection-ending faults (drop, close, shutdown, silence) allowed; 0: any


def take(faults: Faults, name: str) -> bool:
    """Use up one of a "next N" budget (``refuse_connections``, ``rest_429``, ``rest_418``,
    ``skip_depth``, ``stale_depth``)."""
    left: int = getattr(faults, name)
    if left <= 0:
        return False
    setattr(faults, name, left - 1)
    return True


def every(n: int, period: int) -> bool:
    """Whether frame ``n`` (from 1) is an ``every period``-th frame (never when ``period`` is 0).

    >>> [n for n in range(1, 8) if every(n, 3)], every(5, 0)
    ([3, 6], False)
    """
    return period > 0 and n % period == 0


def malformed(wire: bytes, k: int) -> bytes:
    """The ``k``-th malformed version of a frame: truncated JSON, or a ``"NaN"`` price (when the
    frame has a price; otherwise truncated again). Stays valid UTF-8 (a text frame must)."""
    if k % 2 == 1 and _PRICE.search(wire):
        return _PRICE.sub(b'"p":"NaN"', wire, count=1)
    return wire[: len(wire) // 2].decode("utf-8", "ignore").encode()
