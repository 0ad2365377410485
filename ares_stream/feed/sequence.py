"""Continuity of a stream: trade ids, or kline open times (``step`` = the interval in ns).

Binance never resends what a dropped connection missed, so the only way to know data was lost is
continuity: ``@trade`` ids and ``@aggTrade`` ids are consecutive integers per symbol, and closed
klines follow each other every interval. A sequencer answers, for each arrival, one of:

- ``OK`` (0): the next expected item;
- ``DUPLICATE`` (-1): already seen (a replayed or re-sent frame) — drop it;
- a positive count: that many items are missing just before this one — a gap.

>>> s = IdSequence()
>>> [s.check(i) for i in (5, 6, 6, 9, 10, 3)]
[0, 0, -1, 2, 0, -1]
>>> s.last
10
"""

from __future__ import annotations

OK = 0
DUPLICATE = -1


class IdSequence:
    """Consecutive integer ids (trade ``t`` or aggTrade ``a``); the first id seen starts it."""

    __slots__ = ("_step", "last")

    def __init__(self, last: int | None = None, step: int = 1) -> None:
        self.last = last  # the last id accepted; a checkpoint restores it to resume after a restart
        self._step = step

    def check(self, ident: int) -> int:
        """``OK``, ``DUPLICATE`` or the number of ids missing before ``ident`` (then accepted)."""
        last = self.last
        if last is None:
            self.last = ident
            return OK
        if ident <= last:
            return DUPLICATE
        self.last = ident
        missing = (ident - last) // self._step - 1
        return missing if missing > 0 else OK

