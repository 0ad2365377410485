"""The book a tape's depth frames rebuild, at any tape position: what ``/api/v3/depth`` serves.

Per symbol, a :class:`DepthBook` keeps where the tape's diffs (``@depth``, ``@depth@100ms``) and
REST snapshots (a bare ``{"lastUpdateId":…}`` line, or a ``<symbol>@depthSnapshot`` frame) are,
and rebuilds the book as a Binance client does: from a snapshot, skip the diffs with
``u <= lastUpdateId`` and apply the others while each ``U`` is at most the book's id + 1; a
break loses the book until the next snapshot. A symbol whose first diff has ``U == 1`` starts
from an empty book (the simulator's diffs: the first lists every level).

``at(position)`` is the book once the first ``position`` frames were broadcast, its
``lastUpdateId`` the ``u`` of the last diff applied (before a first diff from an empty book: that
empty book, id 0). Where the book is not known yet (a recording whose snapshot line comes after
its first diffs) it is the next snapshot with the diffs already broadcast applied; as a real
snapshot's, its id may then be ahead of the broadcast diffs (the client drops its buffered diffs
up to it). No snapshot to come: None. Frames are decoded when a request first needs them; a
cursor follows the clock forward (an earlier position replays from the start), and ``lag`` asks
for the book that many depth items back (a stale snapshot).

>>> diff = b'{"e":"depthUpdate","s":"X","U":%d,"u":%d,"b":[["%s","1.0"]],"a":[["9.0","%s"]]}'
>>> book = DepthBook([("x@depth", diff % (1, 2, b"8.0", b"2.0")),  # from an empty book
...                   ("x@depth", diff % (3, 4, b"8.5", b"0"))])  # the 9.0 ask goes
>>> book.add_diff(0); book.add_diff(1)
>>> book.at(0), book.at(1)  # before the first diff: the empty book it starts from
({'lastUpdateId': 0, 'bids': [], 'asks': []}, \
{'lastUpdateId': 2, 'bids': [['8.0', '1.0']], 'asks': [['9.0', '2.0']]})
>>> book.at(2, limit=1)
{'lastUpdateId': 4, 'bids': [['8.5', '1.0']], 'asks': []}
"""

from __future__ import annotations

import bisect
from typing import Any

import msgspec
from msgspec import Struct

__all__ = ["DepthBook"]

_Level = tuple[str, str]


class _Diff(Struct, gc=False):
    U: int  # first update id
    u: int  # final update id
    b: list[_Level]  # bids to set: [price, quantity]; quantity 0 removes
    a: list[_Level]  # asks to set


class _Snapshot(Struct, gc=False):
    lastUpdateId: int  # the last update id the book includes  (Binance's name)
    bids: list[_Level]  # [price, quantity], best first
    asks: list[_Level]


_decode_diff = msgspec.json.Decoder(_Diff).decode
_decode_snapshot = msgspec.json.Decoder(_Snapshot).decode


class _Cursor:
    """The book after the first ``done`` items; ``None`` while it is not known."""

    def __init__(self) -> None:
        self.done = 0
        self.book: tuple[dict[str, str], dict[str, str]] | None = None
        self.last = 0  # the book's last update id
        self.seen = False  # a diff was met (the empty start is for a first diff only)
        self.waiting: list[int] = []  # diffs (frame indices) met while the book was not known


class DepthBook:
    """One symbol's book over a tape's ``frames`` (see the module docstring)."""

    def __init__(self, frames: list[tuple[str, bytes]]) -> None:
        self._frames = frames
        self._known: list[int] = []  # the tape position from which each item is known
        self._items: list[int | bytes] = []  # a diff's frame index, or a snapshot's payload
        self._snapshots: list[int] = []  # the item numbers of the snapshots
        self._now, self._stale = _Cursor(), _Cursor()

    def add_diff(self, index: int) -> None:
        """The tape's frame ``index`` is one of this symbol's diffs."""
        self._known.append(index + 1)
        self._items.append(index)

    def add_snapshot(self, position: int, payload: bytes) -> None:
        """A snapshot read after the tape's first ``position`` frames."""
        self._snapshots.append(len(self._items))
        self._known.append(position)
        self._items.append(payload)

    def at(self, position: int, *, limit: int = 5000, lag: int = 0) -> dict[str, Any] | None:
        """The book (``lastUpdateId``, ``limit`` best ``bids`` and ``asks``) once ``position``
        frames were broadcast, ``lag`` items back; None if it is not known (nor to come)."""
        n = max(bisect.bisect_right(self._known, position) - lag, 0)
        cursor = self._stale if lag else self._now
        if cursor.done > n:  # back in time: replay from the start
            cursor = _Cursor()
            self._stale, self._now = (cursor, self._now) if lag else (self._stale, cursor)
        while cursor.done < n:
            self._step(cursor, self._items[cursor.done])
            cursor.done += 1
        if cursor.book is None:
            return self._ahead(cursor, n, limit)
        return _view(cursor, limit)

    def _ahead(self, cursor: _Cursor, n: int, limit: int) -> dict[str, Any] | None:
        """Before a first diff from an empty book, that book; else the next snapshot after item
        ``n`` with the waiting diffs applied, if any."""
        item = self._items[n] if n < len(self._items) else None
        if not cursor.seen and isinstance(item, int):
            probe = _Cursor()
            self._diff(probe, item)
            if probe.book is not None:
                return {"lastUpdateId": 0, "bids": [], "asks": []}
        i = bisect.bisect_left(self._snapshots, n)
        if i == len(self._snapshots):
            return None
        probe = _Cursor()
        probe.waiting, probe.seen = list(cursor.waiting), cursor.seen
        self._step(probe, self._items[self._snapshots[i]])
        return None if probe.book is None else _view(probe, limit)

    def _step(self, cursor: _Cursor, item: int | bytes) -> None:
        if isinstance(item, int):
            self._diff(cursor, item)
            return
        if cursor.book is not None:  # the diffs keep the book: a snapshot adds nothing
            return
        try:
            snap = _decode_snapshot(item)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        cursor.book, cursor.last = (dict(snap.bids), dict(snap.asks)), snap.lastUpdateId
        waiting, cursor.waiting = cursor.waiting, []
        for index in waiting:
            self._diff(cursor, index)

    def _diff(self, cursor: _Cursor, index: int) -> None:
        """Apply a diff as a client does: skip it if old, lose the book at a break."""
        try:
            d = _decode_diff(self._frames[index][1])
        except (msgspec.DecodeError, msgspec.ValidationError):
            d = None
        if cursor.book is None and d is not None and d.U == 1 and not cursor.seen:
            cursor.book, cursor.last = ({}, {}), 0  # the simulator's: from an empty book
        cursor.seen = True
        if cursor.book is None:
            cursor.waiting.append(index)
        elif d is None or cursor.last + 1 < d.U:  # a break (or a diff we cannot read)
            cursor.book, cursor.waiting = None, [index]
        elif d.u > cursor.last:
            for side, levels in zip(cursor.book, (d.b, d.a), strict=True):
                for price, qty in levels:
                    if float(qty) == 0.0:
                        side.pop(price, None)
                    else:
                        side[price] = qty
            cursor.last = d.u


def _view(cursor: _Cursor, limit: int) -> dict[str, Any]:
    """The ``/api/v3/depth`` answer: the ``limit`` best levels a side."""
    assert cursor.book is not None
    bids, asks = cursor.book
    best_bids = sorted(bids, key=float, reverse=True)[:limit]
    best_asks = sorted(asks, key=float)[:limit]
    return {"lastUpdateId": cursor.last, "bids": [[p, bids[p]] for p in best_bids],
            "asks": [[p, asks[p]] for p in best_asks]}
