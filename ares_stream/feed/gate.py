"""The gate: continuity, duplicates and ordering of the event stream, before the engine's stages.

Per symbol and stream kind (``trade_id``, ``agg_id``, ``kline_time:<interval>``) the gate keeps
the last id (or kline open time) it let through:

- an item at or below it is a **duplicate** (a re-sent frame, a rotation overlap): dropped;
- the next one passes;
- a jump is a **gap**. In replay (``backfill=False``) the gap is reported (``GAP``): the caller
  processes :attr:`Gate.gap` first, then the item. Live (``backfill=True``) the item is **held**,
  with everything after it of the same key, and a :class:`BackfillRequest` is queued; the daemon
  fetches the missing items over REST and calls :meth:`Gate.resolve`, which releases, in order,
  the backfilled items, a ``Gap`` for whatever could not be filled, then the held items. A long
  backfill comes in parts: :meth:`Gate.advance` takes each part at once (the cursor moves through
  it, so a checkpoint then covers it) and leaves the held items held; ``resolve`` ends it.

A ``Gap`` stands only for what REST did not serve: ids it skips (its history begins later than
asked) and the rest of a range it no longer has; an open-ended catch-up has no rest.

Gap markers from a recording advance the cursor, so the jump that follows a marker is not a second
gap. A checkpointed cursor (``cursors``) makes the first live item after a restart a gap too.

A cold start (no cursor) with ``warmup`` > 0 treats the ``warmup`` trade ids before the first live
one as missing (``warmup_klines``: the klines before the first closed one of each interval): they
are fetched over REST and warm the features before the live item; an incomplete warm-up records
no gap. ``live_from[symbol]`` is the event time of that first live
item: the broker trades from there on.

>>> g = Gate()
>>> t = lambda i: Trade("X", i, i, i, 1.0, 1.0, False, True)
>>> [g.admit(t(i)) for i in (1, 2, 2, 5)]
[0, 0, 1, 3]
>>> (g.gap.kind, g.gap.first_missing, g.gap.last_missing)
('agg_id', 3, 4)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ares_stream.events import Gap, Kline, Trade
from ares_stream.feed.publicdata import INTERVALS
from ares_stream.feed.sequence import DUPLICATE, OK, IdSequence

PASS, DROP, HOLD, GAP = 0, 1, 2, 3
OPEN_END = 2**63 - 1  # last_missing of a catch-up request: everything REST has after the cursor
Item = tuple[Any, int, "bytes | None"]  # (event, ts_init, raw frame or None)
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class BackfillRequest:
    """Items missing from one stream: ids (inclusive), or kline open times in ns."""

    symbol: str
    kind: str  # "agg_id" | "trade_id" | "kline_time"
    first_missing: int
    last_missing: int
    interval: str = ""  # kline interval for kline_time

    @property
    def key(self) -> tuple[str, str]:
        """The gate's key of the stream: ``(symbol, kind)``, a kline kind with its interval."""
        return _key(self.symbol, self.kind, self.interval)


@dataclass
class Held:
    """A key waiting for its backfill: the request and the items that arrived meanwhile."""

    request: BackfillRequest
    items: list[Item] = field(default_factory=list)


def _key(symbol: str, kind: str, interval: str = "") -> tuple[str, str]:
    return (symbol, f"kline_time:{interval}" if kind == "kline_time" else kind)


class Gate:
    """Continuity checks and holding behind gaps. Pure, synchronous; the hot path is ``admit``."""

    def __init__(
        self, *, backfill: bool = False, cursors: Mapping[tuple[str, str], int] | None = None,
        warmup: int = 0, warmup_klines: int = 0,
    ) -> None:
        self.backfill = backfill
        self.warmup = warmup if backfill else 0
        self.warmup_klines = warmup_klines if backfill else 0
        self.warming: set[BackfillRequest] = set()
        self.live_from: dict[str, int] = {}
        self._steps: dict[tuple[str, str], int] = {
            k: INTERVALS.get(k[1].partition(":")[2]) or 1 for k in (cursors or {})
        }  # a restored kline cursor steps by its interval
        self._seqs: dict[tuple[str, str], IdSequence] = {
            k: IdSequence(last=v, step=self._steps[k]) for k, v in (cursors or {}).items()
        }
        self.held: dict[tuple[str, str], Held] = {}
        self.requests: list[BackfillRequest] = []
        self.gap: Gap | None = None
        self.counts = {"duplicates": 0, "gaps": 0, "held": 0, "backfilled": 0, "unfilled": 0}

    def cursors(self) -> dict[tuple[str, str], int]:
        """The last id (or kline open time) let through, per key: what a checkpoint stores."""
        return {k: s.last for k, s in self._seqs.items() if s.last is not None}

    def admit(self, ev: Any, ts_init: int = 0, data: bytes | None = None) -> int:
        """``PASS``, ``DROP``, ``HOLD`` or ``GAP`` for one event (hot path: trades first)."""
        kind = type(ev)
        if kind is Trade:
            key = (ev.symbol, "agg_id" if ev.is_agg else "trade_id")
            ident, step = ev.trade_id, 1
        elif kind is Kline and ev.closed:
            key = (ev.symbol, f"kline_time:{ev.interval}")
            ident, step = ev.open_time, _step(ev)
        elif kind is Gap:
            self._advance(ev)
            return PASS
        else:
            return PASS
        held = self.held.get(key) if self.held else None
        if held is not None:
            held.items.append((ev, ts_init, data))
            self.counts["held"] += 1
            return HOLD
        seq = self._seqs.get(key)
        if seq is None:
            seq = self._seqs[key] = IdSequence(step=step)
            self._steps[key] = step
            back = self.warmup if kind is Trade else self.warmup_klines
            if back and ident > 0:  # cold start: fetch the history before it
                seq.last = max(ident - back * step, 0) - step
                status = self._check(seq, key, ev, ident, step, ts_init, data)
                self.warming.update(self.requests[-1:] if status == HOLD else ())
                return status
        return self._check(seq, key, ev, ident, step, ts_init, data)

    def _check(self, seq: IdSequence, key: tuple[str, str], ev: Any, ident: int, step: int,
               ts_init: int, data: bytes | None) -> int:
        last = seq.last
        status = seq.check(ident)
        if status == OK:
            return PASS
        if status == DUPLICATE:
            self.counts["duplicates"] += 1
            return DROP
        assert last is not None
        kind = key[1].split(":")[0]
        interval = key[1].partition(":")[2]
        first, end = last + step, ident - step
        self.counts["gaps"] += 1
        if self.backfill:
            seq.last = last  # not accepted yet: the backfill must come first
            request = BackfillRequest(ev.symbol, kind, first, end, interval)
            self.held[key] = Held(request, [(ev, ts_init, data)])
            self.requests.append(request)
            self.counts["held"] += 1
            return HOLD
        self.gap = Gap(ev.symbol, ev.ts_event, ev.ts_init, kind, first, end)
        return GAP

    def _advance(self, gap: Gap) -> None:
        """A recorded gap marker: the missing range is known lost; move the cursor past it."""
        for key, seq in self._seqs.items():
            same = key[0] == gap.symbol and key[1].split(":")[0] == gap.kind
            if same and (seq.last is None or seq.last < gap.last_missing):
                seq.last = gap.last_missing

    def catch_up_requests(self) -> list[BackfillRequest]:
        """Open-ended requests from every cursor not held behind a gap.

        After a (re)connection the daemon asks REST for everything after each cursor instead of
        waiting for the next live item to reveal a hole: in a quiet market, or when the stream
        ends right after a drop, that item may never come.
        """
        out = []
        for key, seq in self._seqs.items():
            if seq.last is None or key in self.held:
                continue
            kind, _, interval = key[1].partition(":")
            out.append(BackfillRequest(key[0], kind, seq.last + self._step(key), OPEN_END,
                                       interval))
        return out

    def _step(self, key: tuple[str, str]) -> int:
        return self._steps.get(key) or INTERVALS.get(key[1].partition(":")[2]) or 1

    def take_requests(self) -> list[BackfillRequest]:
        """The backfill requests queued since the last call."""
        out, self.requests = self.requests, []
        return out

    def advance(self, request: BackfillRequest, filled: list[Item]) -> list[Item]:
        """A part of a backfill before the rest: its new items, in order (a Gap first where REST
        skipped ids), at once. The items held behind the gap stay held and the unfilled rest
        makes no Gap: the last part goes to :meth:`resolve`."""
        return self._accept(request, self._seqs[request.key], filled)

    def resolve(self, request: BackfillRequest, filled: list[Item],
                complete: bool) -> list[Item]:
        """Release, in order: backfilled items, a Gap for the unfilled rest, then the held items.

        ``filled`` are the decoded backfill items (event, ts_init, raw frame) in id order (the
        last part, after :meth:`advance` took the others). Items outside the requested range or
        already seen are dropped. A held item that opens a new gap is held again behind a new
        request.
        """
        key = request.key
        held = self.held.pop(key, None)
        waiting = held.items if held is not None else []
        seq = self._seqs[key]
        out = self._accept(request, seq, filled)
        open_end = request.last_missing == OPEN_END
        if request in self.warming:  # a cold start's history: partial is fine, no gap
            self.warming.discard(request)
            seq.last = max(seq.last or 0, request.last_missing)
            if waiting:
                self.live_from[request.symbol] = waiting[0][0].ts_event
        elif not open_end and (seq.last is None or seq.last < request.last_missing):
            out.append(self._unfilled(request, seq, waiting))
        out.extend(self._release(key, waiting))
        return out

    def _accept(self, request: BackfillRequest, seq: IdSequence, filled: list[Item]) -> list[Item]:
        """The new items of ``filled`` in the range; ids REST skipped before one are a Gap
        (a cold start's history may begin anywhere: no Gap)."""
        out: list[Item] = []
        step, warming = self._step(request.key), request in self.warming
        for item in filled:
            ident, last = _ident(item[0]), seq.last
            if not request.first_missing <= ident <= request.last_missing:
                continue
            missing = seq.check(ident)
            if missing == DUPLICATE:
                continue
            if missing > 0 and not warming and last is not None:
                ev = item[0]
                gap = Gap(request.symbol, ev.ts_event, ev.ts_init, request.kind, last + step,
                          ident - step)
                out.append((gap, item[1], None))
                self.counts["unfilled"] += 1
            out.append(item)
            self.counts["backfilled"] += 1
        return out

    def _unfilled(self, request: BackfillRequest, seq: IdSequence,
                  waiting: list[Item]) -> tuple[Any, int, None]:
        step = self._step(request.key)
        first = request.first_missing if seq.last is None else max(seq.last + step,
                                                                   request.first_missing)
        seq.last = request.last_missing
        self.counts["unfilled"] += 1
        ev = waiting[0][0] if waiting else None
        ts_event = ev.ts_event if ev is not None else 0
        ts_init = ev.ts_init if ev is not None else 0
        gap = Gap(request.symbol, ts_event, ts_init, request.kind, first, request.last_missing)
        return (gap, ts_init, None)

    def _release(self, key: tuple[str, str], waiting: list[Item]) -> list[Item]:
        out: list[Item] = []
        for n, (ev, ts_init, data) in enumerate(waiting):
            self.counts["held"] -= 1
            status = self.admit(ev, ts_init, data)
            if status == PASS:
                out.append((ev, ts_init, data))
            elif status == HOLD:  # a new gap: the rest waits behind it, in order
                rest = waiting[n + 1:]
                self.held[key].items.extend(rest)
                break
        return out

    def holding(self) -> int:
        """Items held behind gaps right now."""
        return sum(len(h.items) for h in self.held.values())


def _step(k: Kline) -> int:
    """One kline interval in ns: by name, else from the candle's own open and close times."""
    return INTERVALS.get(k.interval) or (k.close_time - k.open_time + NS_PER_MS)


def _ident(ev: Any) -> int:
    return int(ev.trade_id) if type(ev) is Trade else int(ev.open_time)
