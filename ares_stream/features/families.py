"""One symbol's feature vector: its own bar features and the families the config adds.

- the **bar features** of :class:`~ares_stream.features.pipeline.FeatureSet` (always);
- ``features.book``: the **order book** — a local book kept in sync from the depth diff stream and
  REST snapshots (:class:`~ares_stream.features.book.BookSync`) and its per-bar features
  (:class:`~ares_stream.features.bookflow.BookFeatures`: depth imbalance, microprice, order-flow
  imbalance, spread, depth change);
- ``features.timeframes``: **higher timeframes** — the bar features of the last *closed* bar of
  each (:class:`~ares_stream.features.timeframes.MultiTimeframe`), named ``<feature>@<tf>``;
- ``features.cross_asset``: the **reference symbol**'s recent returns and volatility
  (:class:`~ares_stream.features.crossasset.CrossAsset`, one per engine, shared by its symbols;
  the reference itself gets its own values too, so every symbol has one schema).

:func:`feature_names` is the schema: the ordered names the buffer, the boosters and their
feature hash use, so a change of families forces a refit, never a warm start. A vector exists only
when every selected family has one: a book out of sync, a higher timeframe or the reference still
warming up means no vector for that bar (no prediction, no sample), never a silently partial one.

>>> from ares_stream.config import Config, replace_values
>>> cfg = replace_values(Config(), {"features": {"timeframes": ["15m"], "cross_asset": True}})
>>> names = feature_names(cfg)
>>> names[:2], names[15:17], len(names)
(('ret_1', 'ret_5'), ('ret_1@15m', 'ret_5@15m'), 32)
>>> names[-4:]
('ref_ret_1', 'ref_ret_5', 'ref_ret_15', 'ref_vol')
"""

from __future__ import annotations

from ares_stream.config import Config
from ares_stream.events import Bar
from ares_stream.features.book import BookSync
from ares_stream.features.bookflow import BookFeatures
from ares_stream.features.crossasset import CrossAsset
from ares_stream.features.pipeline import FeatureSet, feature_set
from ares_stream.features.timeframes import MultiTimeframe

__all__ = ["SymbolFeatures", "cross_asset", "feature_names"]


def feature_names(config: Config) -> tuple[str, ...]:
    """The ordered feature names of every symbol under ``config`` (the booster's schema)."""
    f = config.features
    base = feature_set(config).names
    names = list(base)
    if f.book:
        names += BookFeatures(f.book_levels, f.book_bps).names
    if f.timeframes:
        names += MultiTimeframe(f.timeframes, lambda: feature_set(config)).names
    if f.cross_asset:
        names += _cross(config).names
    return tuple(names)


def cross_asset(config: Config) -> CrossAsset | None:
    """The engine's reference-symbol features when the config selects them."""
    return _cross(config) if config.features.cross_asset else None


def _cross(config: Config) -> CrossAsset:
    f = config.features
    return CrossAsset(f.reference, f.return_horizons, f.vol_span, f.reference_max_lag_bars)


class SymbolFeatures:
    """The feature families of one symbol; ``update(bar)`` → the vector or None (warming up).

    ``book`` (a :class:`BookSync`) and ``flow`` (its :class:`BookFeatures`) are None without
    ``features.book``; the engine feeds them depth events (:meth:`on_book_update`)."""

    __slots__ = ("bars", "book", "cross", "flow", "higher", "names")

    def __init__(self, config: Config, cross: CrossAsset | None = None) -> None:
        f = config.features
        self.bars: FeatureSet = feature_set(config)
        self.book = BookSync() if f.book else None
        self.flow = BookFeatures(f.book_levels, f.book_bps) if f.book else None
        self.higher = (MultiTimeframe(f.timeframes, lambda: feature_set(config))
                       if f.timeframes else None)
        self.cross = cross
        self.names = feature_names(config)

    def update(self, bar: Bar) -> dict[str, float] | None:
        """Feed one closed bar (the reference's bar went to ``cross`` first); the full vector,
        or None while any selected family has none. Every family sees every bar."""
        x = self.bars.update(bar)
        higher = self.higher.update(bar) if self.higher is not None else {}
        book = (self.flow.on_bar(self.book.book, self.book.synced)
                if self.flow is not None and self.book is not None else {})
        ref = self.cross.get_at(bar.ts_event) if self.cross is not None else {}
        if x is None or higher is None or book is None or ref is None:
            return None
        return {**x, **higher, **book, **ref}

    def on_book_update(self) -> None:
        """After a diff or snapshot changed the synced book: the order-flow accumulators."""
        if self.flow is not None and self.book is not None:
            self.flow.on_update(self.book.book)

    def reset(self) -> None:
        """A gap in the bars: the bar families warm up again (the book keeps its own sync)."""
        self.bars.reset()
        if self.higher is not None:
            self.higher.reset()
