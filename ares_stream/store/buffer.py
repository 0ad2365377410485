"""The ``buffer`` table: labelled samples per symbol, written in batches, pruned by event time.

A row is one sample: its feature vector ``x`` as the raw bytes of a float32 array (in the order of
the feature list whose hash is stored beside it; rows written before the buffer held float32 hold
float64 bytes, twice as long, and :func:`decode_x` reads both), its binary label, its forward
return and the close of its bar (the price the walk-forward trades the broker's rule at; NULL in
rows written before schema 5). The key is ``(symbol, ts_event)``; writing a row again replaces
it, so a flush that is repeated after a crash, or a sample of a new feature schema at the time of
an old one, never conflicts.

>>> from ares_stream.store.db import open_db
>>> store = BufferStore(open_db(":memory:"))
>>> store.add_many("BTCUSDT", [(60, [1.0, 2.0], 1, 0.01, "h1", 100.0),
...                             (120, [3.0, 4.0], 0, -0.02, "h1", 101.0)])
2
>>> rows = store.load("BTCUSDT", "h1")
>>> [(ts, decode_x([x], 2).tolist(), label, fwd, c) for ts, x, label, fwd, c in rows]
[(60, [[1.0, 2.0]], 1, 0.01, 100.0), (120, [[3.0, 4.0]], 0, -0.02, 101.0)]
>>> store.prune("BTCUSDT", older_than_ts=120), store.count("BTCUSDT")
(1, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import sqlite_utils

__all__ = ["BufferRow", "BufferStore", "decode_x"]

BufferRow = tuple[int, bytes, int, float, float]
"""A stored sample: ``(ts_event, x as float32 (or, older, float64) bytes, label, forward_return,
close)`` (close NaN when unknown)."""

_INSERT = (
    "INSERT OR REPLACE INTO buffer (symbol, ts_event, x, label, forward_return, feature_hash, "
    "close) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_PRUNE = "DELETE FROM buffer WHERE symbol = ? AND ts_event < ?"
_LOAD = (
    "SELECT ts_event, x, label, forward_return, close FROM buffer "
    "WHERE symbol = ? AND feature_hash = ? ORDER BY ts_event"
)
_COUNT = "SELECT count(*) FROM buffer WHERE symbol = ?"


class BufferStore:
    """SQL of the ``buffer`` table; one ``executemany`` transaction per batch."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def add_many(
        self,
        symbol: str,
        rows: Iterable[tuple[int, Sequence[float] | np.ndarray, int, float, str, float]],
    ) -> int:
        """Write ``(ts_event, x, label, forward_return, feature_hash, close)`` rows in one
        transaction (a NaN close is stored as NULL).

        ``x`` is stored as ``np.asarray(x, float32).tobytes()``. Returns the number of rows.
        """
        params = [
            (symbol, int(ts), np.asarray(x, dtype=np.float32).tobytes(), int(label),
             float(fwd), fhash, None if close != close else float(close))
            for ts, x, label, fwd, fhash, close in rows
        ]
        if not params:
            return 0
        conn = self.db.conn
        with conn:
            conn.execute("BEGIN")
            conn.executemany(_INSERT, params)
        return len(params)

    def prune(self, symbol: str, older_than_ts: int) -> int:
        """Delete the symbol's rows with ``ts_event < older_than_ts``; returns how many."""
        conn = self.db.conn
        with conn:
            conn.execute("BEGIN")
            cur = conn.execute(_PRUNE, (symbol, int(older_than_ts)))
        return int(cur.rowcount)

    def load(self, symbol: str, feature_hash: str) -> list[BufferRow]:
        """The symbol's rows written with ``feature_hash``, ordered by ``ts_event``."""
        cur = self.db.conn.execute(_LOAD, (symbol, feature_hash))
        return [(int(ts), bytes(x), int(label), float(fwd), math.nan if c is None else float(c))
                for ts, x, label, fwd, c in cur]

    def count(self, symbol: str) -> int:
        """Rows stored for ``symbol``, whatever their feature schema."""
        return int(self.db.conn.execute(_COUNT, (symbol,)).fetchone()[0])


def decode_x(blobs: Sequence[bytes], width: int) -> np.ndarray:
    """Stored feature vectors of ``width`` features as a float32 ``(len(blobs), width)`` array,
    each blob float32 bytes or, written before the buffer held float32, float64 bytes (rounded
    to float32 as XGBoost would). Raises ValueError on a blob of neither length.

    >>> old = np.array([0.1, 2.0]).tobytes(); new = np.float32([0.1, 2.0]).tobytes()
    >>> (decode_x([old, new], 2) == np.float32(0.1)).sum(axis=0).tolist()
    [2, 0]
    """
    blob = b"".join(blobs)
    if len(blob) == 4 * width * len(blobs) and all(len(b) == 4 * width for b in blobs):
        return np.frombuffer(blob, dtype=np.float32).reshape(len(blobs), width)
    if len(blob) == 8 * width * len(blobs) and all(len(b) == 8 * width for b in blobs):
        return np.frombuffer(blob, dtype=np.float64).reshape(len(blobs), width).astype(np.float32)
    out = np.empty((len(blobs), width), dtype=np.float32)
    for i, b in enumerate(blobs):
        if len(b) not in (4 * width, 8 * width):
            raise ValueError(f"a buffer row of {len(b)} bytes holds neither {width} float32 nor "
                             f"{width} float64 features")
        out[i] = np.frombuffer(b, dtype=np.float32 if len(b) == 4 * width else np.float64)
    return out


def symbols(db: sqlite_utils.Database) -> list[str]:
    """The symbols that have samples in the buffer table."""
    return [r[0] for r in db.conn.execute("SELECT DISTINCT symbol FROM buffer ORDER BY symbol")]
