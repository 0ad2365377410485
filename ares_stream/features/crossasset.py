"""Features of a reference symbol (the market leader, BTCUSDT) for the other symbols of a shard.

Every closed base bar of every symbol goes through :meth:`CrossAsset.on_bar`; the reference's
bars update its O(1) indicators, and another symbol's bar ending at ``t`` reads them with
:meth:`CrossAsset.get_at`: the reference's last closed bar with ``ts_event <= t``, never a later
one, and nothing when that bar is too old (a stalled reference feeds no stale values).

>>> CrossAsset().names
('ref_ret_1', 'ref_ret_5', 'ref_ret_15', 'ref_vol')
"""

from __future__ import annotations

from collections import deque

from ares_stream.events import Bar
from ares_stream.features.indicators import EwmaVol, LogReturn

_Snapshot = tuple[int, int, dict[str, float] | None]  # (ts_event, interval_ns, values or None)


class CrossAsset:
    """The reference symbol's latest closed-bar features, causally, for the other symbols.

    Features (definitions as in :mod:`~ares_stream.features.indicators`, over the reference's
    closed bars):

    - ``ref_ret_<k>``: :class:`LogReturn` of the reference's close over ``k`` bars, for each of
      ``return_horizons``;
    - ``ref_vol``: :class:`EwmaVol` of the reference (``vol_span``), per bar.

    :meth:`get_at` ``(t)`` is the main accessor: the values of the reference's last bar with
    ``ts_event <= t``; ``None`` while that bar's indicators warm up, when no such bar is among the
    last ``history`` reference bars, or when it ended more than ``max_lag_bars`` of its intervals
    before ``t`` (the reference stalled or is quiet). :meth:`get` is the latest bar's values,
    whatever ``t``. A reference bar that does not end after the previous one (late, duplicate)
    is skipped and counted in ``late``. :meth:`reset` after a gap in the reference's data.

    >>> m = 60_000_000_000
    >>> ca = CrossAsset("BTCUSDT", return_horizons=(1,), vol_span=1)
    >>> def bar(sym, i, close): return Bar(sym, (i + 1) * m, (i + 1) * m, i * m, m, close,
    ...                                    close, close, close, 1.0, None, None, close)
    >>> ca.on_bar(bar("BTCUSDT", 0, 100.0)); ca.on_bar(bar("ETHUSDT", 0, 3.0))
    >>> ca.get_at(1 * m) is None  # one close: no return yet
    True
    >>> ca.on_bar(bar("BTCUSDT", 1, 110.0)); ca.on_bar(bar("BTCUSDT", 2, 99.0))
    >>> round(ca.get_at(2 * m)["ref_ret_1"], 6), round(ca.get_at(3 * m)["ref_ret_1"], 6)
    (0.09531, -0.105361)
    >>> ca.get_at(5 * m) is not None, ca.get_at(6 * m)  # max_lag_bars=2 intervals, then stale
    (True, None)
    >>> ca.for_symbol("BTCUSDT"), ca.for_symbol("ETHUSDT")
    (False, True)
    """

    __slots__ = (
        "_rets", "_snaps", "_vol", "history", "late", "max_lag_bars", "names", "reference",
        "return_horizons", "vol_span",
    )  # fmt: skip

    def __init__(
        self,
        reference: str = "BTCUSDT",
        return_horizons: tuple[int, ...] = (1, 5, 15),
        vol_span: int = 20,
        max_lag_bars: int = 2,
        history: int = 64,
    ) -> None:
        if not return_horizons or len(set(return_horizons)) != len(return_horizons):
            raise ValueError(f"return_horizons must be distinct and non-empty: {return_horizons}")
        if not isinstance(max_lag_bars, int) or max_lag_bars < 0:
            raise ValueError(f"max_lag_bars must be a non-negative integer, got {max_lag_bars!r}")
        if not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be a positive integer, got {history!r}")
        self.reference = reference
        self.return_horizons = return_horizons
        self.vol_span = vol_span
        self.max_lag_bars = max_lag_bars
        self.history = history
        self.names: tuple[str, ...] = (*(f"ref_ret_{k}" for k in return_horizons), "ref_vol")
        self.late = 0  # reference bars skipped: they did not end after the previous one
        self.reset()

    def reset(self) -> None:
        """Forget the reference (a gap in its data): its features warm up again."""
        self._rets = tuple(LogReturn(k) for k in self.return_horizons)
        self._vol = EwmaVol(self.vol_span)
        self._snaps: deque[_Snapshot] = deque(maxlen=self.history)

    def for_symbol(self, symbol: str) -> bool:
        """Whether ``symbol`` gets these features: not the reference (its own set has them)."""
        return symbol != self.reference

    def on_bar(self, bar: Bar) -> None:
        """Take any symbol's closed bar; only the reference's bars update the indicators."""
        if bar.symbol != self.reference:
            return
        snaps = self._snaps
        if snaps and bar.ts_event <= snaps[-1][0]:
            self.late += 1
            return
        close = bar.close
        for r in self._rets:
            r.update(close)
        self._vol.update(close)
        values = [*(r.get() for r in self._rets), self._vol.get()]
        got = {n: v for n, v in zip(self.names, values, strict=True) if v is not None}
        snaps.append((bar.ts_event, bar.interval_ns, got if len(got) == len(values) else None))

    def get(self) -> dict[str, float] | None:
        """The reference's latest closed-bar values (a new dict, ordered as ``names``), or None."""
        values = self._snaps[-1][2] if self._snaps else None
        return None if values is None else dict(values)

    def get_at(self, t: int) -> dict[str, float] | None:
        """The values of the reference's last bar with ``ts_event <= t``, unless stale, or None."""
        snap = self._find(t)
        if snap is None:
            return None
        ts, interval, values = snap
        if values is None or t - ts > self.max_lag_bars * interval:
            return None
        return dict(values)

    def age_ns(self, t: int) -> int | None:
        """How long before ``t`` the reference's last bar with ``ts_event <= t`` ended, or None."""
        snap = self._find(t)
        return None if snap is None else t - snap[0]

    def _find(self, t: int) -> _Snapshot | None:
        """Newest first: a bar of another symbol is usually at or just after the reference's."""
        for snap in reversed(self._snaps):
            if snap[0] <= t:
                return snap
        return None
