"""The engine: one synchronous, pure code path from frame to learned prediction, for one shard.

``on_frame`` decodes a raw frame; ``on_event`` does all per-event work: continuity checks, bars,
features, delayed labels, predict-then-learn, ADWIN. It never awaits, sleeps or does network I/O;
the live daemon wraps it in asyncio and ``ares-stream replay`` drives it with a plain loop, so the
same input gives the same bars, features and predictions whichever drives it.

Per bar, in this order (River's ``progressive_val_score(delay=horizon)`` order):

1. reveal the labels of the bars made ``horizon`` bars ago and learn them (learn, score, ADWIN);
2. update the features with the new bar;
3. predict on the new bar and queue it until its label exists.

Continuity is the :class:`~ares_stream.feed.gate.Gate`'s: duplicates are dropped; a gap is either
reported at once (replay) or held while the daemon backfills it over REST (live), then released in
order. A data gap that stays (missing trade ids, a jump in kline times, a recording marker) drops
the partial bar, the pending labels (a label would span the gap) and warms the features up again.

With a ``recorder`` the engine writes every raw frame in the order it consumed it — backfilled
frames before the frames that waited for them, a gap marker where a gap stayed — so a replay of
that recording reproduces the live run exactly.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ares_stream import shards
from ares_stream.config import Config, buffer_shortfall
from ares_stream.errors import ConfigError, ParseError
from ares_stream.events import (
    NS_PER_S,
    Bar,
    BookTop,
    Control,
    DepthSnapshot,
    DepthUpdate,
    DriftDetected,
    Gap,
    Kline,
    Outcome,
    Prediction,
    Trade,
)
from ares_stream.features.bars import BarBuilder, bar_from_kline, parse_interval
from ares_stream.features.families import SymbolFeatures, cross_asset
from ares_stream.features.labels import LabelQueue
from ares_stream.feed import RawFrame
from ares_stream.feed.binance import Decoder
from ares_stream.feed.gate import DROP, GAP, PASS, BackfillRequest, Gate, Item
from ares_stream.learners.importance import river_coefficients
from ares_stream.learners.online import OnlineLearner
from ares_stream.learners.policies import learner_for
from ares_stream.learners.scores import RollingScores, log_loss_one, prequential_p

if TYPE_CHECKING:
    from ares_stream.batch.learner import Blend

log = structlog.get_logger("ares_stream.engine")


_LOGGED_REJECTS = 20  # log the first rejected frames in full, then every 1000th
BAR_LINE_EVERY = 60 * NS_PER_S  # a symbol's bar_closed line: at most once a minute of event time


class Sink(Protocol):
    """Where the engine's results go (the run store, or a list in a test)."""

    def prediction(self, p: Prediction) -> None:
        """One prediction, made when its bar closed."""

    def outcome(self, o: Outcome) -> None:
        """One revealed label, scored against the prediction ``horizon`` bars before it."""

    def drift(self, d: DriftDetected) -> None:
        """One ADWIN drift of a symbol's online loss."""

    def gap(self, g: Gap, count: int | None = None) -> None:
        """A gap that stayed; ``count``: the missing items (ids, or bars for time gaps)."""

    def coefficients(self, symbol: str, ts_event: int, coefs: dict[str, float]) -> None:
        """The online learner's standardized coefficients (a linear learner), read at a bar."""

    def health(
        self, symbol: str, ts_event: int, ts_init: int, kind: str, count: int, detail: str,
        first_missing: int | None = None, last_missing: int | None = None,
    ) -> None:
        """One feed incident: a backfill, rejected or error frames, a gap, a warm-up."""


class Recorder(Protocol):
    """Where consumed raw frames go, in consumption order (the recording writer)."""

    def write(self, ts_init: int, data: bytes) -> None:
        """One raw frame, received at ``ts_init`` (ns since the epoch)."""

    def write_gap(self, gap: Gap) -> None:
        """A marker where a gap stayed, so a replay of the recording sees it too."""


@dataclass
class SymbolState:
    """Everything the engine keeps for one symbol."""

    builder: BarBuilder
    features: SymbolFeatures
    labels: LabelQueue
    learner: OnlineLearner
    bar_source: str = ""  # "trade" | "aggTrade" | "kline" once locked
    kline_interval: str = ""
    bars: int = 0
    predictions: int = 0
    labelled: int = 0
    base_ones: int = 0  # revealed labels equal to 1: the constant-probability baseline
    base_loss: float = 0.0
    model_loss: float = 0.0
    ensemble_loss: float = 0.0
    hits: int = 0
    rolling: RollingScores | None = None  # river/booster/ensemble/baseline, last labels (metrics)
    last_drift: int = 0  # event time of the last ADWIN drift (0: none yet)


class BatchLearning(Protocol):
    """Batch learning beside the online learner (:class:`ares_stream.batch.learner.BatchLearner`):
    fed every labelled sample, asked for the forecast and what may trade."""

    @property
    def counts(self) -> Mapping[str, int]:
        """Boosters trained, validations, promotions …"""

    def tick(self, symbol: str, ts: int) -> None:
        """A bar closed at event time ``ts``: apply finished jobs, start due ones (replay)."""

    def apply_due(self, ts: int) -> None:
        """Apply the jobs that finished (live: also between bars)."""

    def blend(self, symbol: str, x: dict[str, float], p_online: float) -> Blend:
        """The forecast, the champion's probability, and what may trade (or why nothing may):
        a :class:`~ares_stream.batch.learner.Blend`."""

    def on_sample(self, symbol: str, ts: int, x: dict[str, float], label: int,
                  forward_return: float, close: float) -> None:
        """One labelled sample (and its bar's close) for the buffer."""

    def on_drift(self, symbol: str, ts: int) -> None:
        """The online loss drifted up: an early refit is due."""

    def finish(self, ts: int) -> None:
        """End of input: apply the jobs still running, then stop the worker."""

    def stop(self) -> None:
        """Stop the worker now, without waiting for its jobs."""

    def flush(self) -> None:
        """Write the buffered samples (before a checkpoint that counts them)."""


class Broker(Protocol):
    """Where the traded probability becomes orders (:class:`ares_stream.trading.paper.PaperBroker`
    and the live broker built on it)."""

    @property
    def positions(self) -> Mapping[str, Any]:
        """Open positions by symbol."""

    @property
    def equity(self) -> float:
        """Cash plus positions at the last mark."""

    def on_trade(self, t: Trade) -> None:
        """A market trade, fed before the bar it closes: fills orders waiting for the market."""

    def on_book(self, b: BookTop) -> None:
        """A book top: the spread orders are filled across."""

    def on_bar(self, bar: Bar, p: float, blocked: str = "") -> None:
        """A closed bar: mark to market, decide on ``p`` (NaN: no decision) at the time of the
        trade that closed it; ``blocked``: why the signal may not trade (the broker goes flat)."""


class Engine:
    """Wires the stages for one shard of symbols. ``batch`` and ``broker`` are optional
    collaborators, given at construction (see :func:`ares_stream.runtime.build_engine`)."""

    def __init__(self, config: Config, sink: Sink, *, gate: Gate | None = None,
                 recorder: Recorder | None = None, learn: bool = True,
                 batch: BatchLearning | None = None, broker: Broker | None = None) -> None:
        self.config = config
        self.sink = sink
        self.gate = gate if gate is not None else Gate()
        self.recorder = recorder
        self.learn = learn  # False: decode, gate, record and count only (``ares-stream record``)
        self.batch = batch  # the BatchLearner (boosters, validation), or None
        self.broker = broker  # the PaperBroker: trades the traded probability, or None
        self.log_bars = False  # the daemon: the canonical bar line (a symbol's, once a minute)
        self._bar_lines: dict[str, list[Any]] = {}  # symbol -> [next line due, bars since, qty]
        self.last_ts = 0
        self.decoder = Decoder()
        self.symbols = frozenset(s.upper() for s in config.feed.symbols)
        self.shard = shards.parse(config.feed.shard) if config.feed.shard else None
        self._foreign: set[str] = set()  # symbols of other shards seen (each hashed once)
        self.interval_ns = parse_interval(config.bars.interval)
        every = config.drift.feature_every
        self._coef_every = parse_interval(every if every != "0s" else "1h")
        self._coef_due: dict[str, int] = {}  # symbol -> event time of the next coefficients
        self.threshold = config.labels.threshold_bps / 1e4
        self.regression = config.learner.task == "regression"
        self.model_name = config.learner.model
        self.state: dict[str, SymbolState] = {}
        self.cross = cross_asset(config)  # the reference symbol's features, shared by all
        self.snapshot_requests: list[str] = []  # symbols whose book needs a REST snapshot (live)
        self._bare_snapshot: DepthSnapshot | None = None  # a symbol-less snapshot line, held
        self.counts: Counter[str] = Counter()
        self._backfill_items: Counter[BackfillRequest] = Counter()  # per request, over its parts

    # -- entry points -------------------------------------------------------------------------

    def feed(self, item: RawFrame | Any) -> None:
        """Take one item of a source: a raw frame or a ready-made event."""
        if type(item) is RawFrame:
            self.on_frame(item.ts_init, item.data)
        else:
            self.on_event(item)

    def on_frame(self, ts_init: int, data: bytes) -> None:
        """Decode one raw frame; a malformed one is counted, logged and skipped."""
        self.counts["frames"] += 1
        try:
            event = self.decoder.decode(data, ts_init)
        except ParseError as exc:
            self._reject(ts_init, exc)
            event = None
        if event is None:
            if self.recorder is not None:
                self.recorder.write(ts_init, data)
            return
        self._admit(event, ts_init, data)

    def on_event(self, ev: Any) -> None:
        """An event without a raw frame (a file row, a recording's gap marker)."""
        self._admit(ev, ev.ts_init, None)

    def _admit(self, ev: Any, ts_init: int, data: bytes | None) -> None:
        """Through the gate: process now, drop a duplicate, hold behind a gap, or gap first."""
        status = self.gate.admit(ev, ts_init, data)
        if status == PASS:
            self._consume(ev, ts_init, data)
        elif status == DROP:
            self.counts["duplicates"] += 1
            if self.recorder is not None and data is not None:
                self.recorder.write(ts_init, data)
        elif status == GAP:
            assert self.gate.gap is not None
            self._consume(self.gate.gap, ts_init, None)
            self._consume(ev, ts_init, data)
        else:
            self.counts["held"] += 1

    def _consume(self, ev: Any, ts_init: int, data: bytes | None) -> None:
        rec = self.recorder
        if rec is not None:
            if data is not None:
                rec.write(ts_init, data)
            elif type(ev) is Gap:
                rec.write_gap(ev)
        self._process(ev)

    def on_backfill(self, request: BackfillRequest, frames: list[Any], complete: bool,
                    reason: str = "", *, final: bool = True) -> None:
        """The daemon's answer to a backfill request: synthetic frames (``RawFrame``) in order.

        A long answer comes in parts: ``final=False`` consumes a part at once (the gate's cursor
        moves through it; what waited behind the gap keeps waiting); the final call — the last
        frames, or none — ends the request: a Gap for what REST did not have, then the held
        items, and one ``backfill`` health row counting every part."""
        filled = self._decoded(frames)
        self._backfill_items[request] += len(filled)
        if not final:
            self._consume_all(self.gate.advance(request, filled))
            self.counts["backfilled"] = self.gate.counts["backfilled"]
            return
        items = self._backfill_items.pop(request)
        released = self.gate.resolve(request, filled, complete)
        n_filled = sum(1 for ev, _, _ in released if type(ev) is not Gap)
        self.counts["backfilled"] = self.gate.counts["backfilled"]
        self.sink.health(request.symbol, 0, 0, "backfill", items, reason or "ok",
                         request.first_missing, request.last_missing)
        self._consume_all(released)
        log.info("feed_backfilled", symbol=request.symbol, kind=request.kind,
                 first=request.first_missing, last=request.last_missing, items=items,
                 complete=complete, reason=reason, released=n_filled)

    def _decoded(self, frames: list[Any]) -> list[Item]:
        """Backfilled frames as gate items; a malformed one is rejected like a live one."""
        filled: list[Item] = []
        for f in frames:
            try:
                ev = self.decoder.decode(f.data, f.ts_init)
            except ParseError as exc:
                self._reject(f.ts_init, exc)
                continue
            if ev is not None:
                filled.append((ev, f.ts_init, f.data))
        return filled

    def _consume_all(self, items: list[Item]) -> None:
        for ev, ts_init, data in items:
            self._consume(ev, ts_init, data)

    def _process(self, ev: Any) -> None:
        """All per-event work after the gate. Hot path: dispatch on the exact type."""
        kind = type(ev)
        if kind is Gap:
            self._on_gap_event(ev)
            return
        if not self.learn:
            return
        if kind is Trade:
            self._on_trade(ev)
        elif kind is BookTop:
            st = self._state(ev.symbol)
            if st is not None:
                st.builder.on_book(ev)
                if self.broker is not None:
                    self.broker.on_book(ev)
        elif kind is Kline:
            if ev.closed:
                self._on_kline(ev)
        elif kind is DepthUpdate:
            self._on_depth(ev)
        elif kind is DepthSnapshot:
            self._on_snapshot(ev)
        elif kind is Control:
            self._on_control(ev)
        else:
            self.counts[f"ignored_{kind.__name__}"] += 1

    # -- stages -------------------------------------------------------------------------------

    def _other_shard(self, symbol: str) -> bool:
        """With ``feed.shard``: the symbol belongs to another shard."""
        if self.shard is None:
            return False
        if symbol in self._foreign:
            return True
        if shards.shard_of(symbol, self.shard.n) != self.shard.k:
            self._foreign.add(symbol)
            return True
        return False

    def _state(self, symbol: str) -> SymbolState | None:
        st = self.state.get(symbol)
        if st is None:
            if (self.symbols and symbol not in self.symbols) or self._other_shard(symbol):
                self.counts["other_symbol"] += 1
                return None
            st = self.state[symbol] = self._new_state(symbol)
        return st

    def new_features(self) -> SymbolFeatures:
        """A fresh feature set for a new symbol, built from the config."""
        return SymbolFeatures(self.config, self.cross)

    def restore_state(self, state: dict[str, SymbolState]) -> None:
        """Take a checkpoint's symbol states; the reference-symbol features are theirs."""
        self.state = state
        for st in state.values():
            if st.features.cross is not None:
                self.cross = st.features.cross
                break

    def _new_state(self, symbol: str) -> SymbolState:
        cfg = self.config
        return SymbolState(
            builder=BarBuilder(symbol, self.interval_ns),
            features=self.new_features(),
            labels=LabelQueue(cfg.labels.horizon, self.threshold),
            learner=learner_for(cfg),
        )

    def _lock_source(self, st: SymbolState, source: str) -> bool:
        """Bars of a symbol come from one kind of input: the configured one, or the first seen."""
        if st.bar_source == source:
            return True
        wanted = self.config.bars.source
        allowed = wanted == "auto" or (wanted == "klines") == (source == "kline")
        if st.bar_source or not allowed:
            self.counts[f"unused_{source}"] += 1
            return False
        st.bar_source = source
        return True

    def _on_trade(self, t: Trade) -> None:
        st = self.state.get(t.symbol) or self._state(t.symbol)
        if st is None or not self._lock_source(st, "aggTrade" if t.is_agg else "trade"):
            return
        if self.broker is not None:  # before the bar it closes: that bar is decided at this
            self.broker.on_trade(t)  # trade, and its order fills at a later one
        bar = st.builder.on_trade(t)
        if bar is not None:
            self._on_bar(st, bar)

    def _on_kline(self, k: Kline) -> None:
        st = self._state(k.symbol)
        if st is None or not self._lock_source(st, "kline"):
            return
        if not st.kline_interval:
            problem = buffer_shortfall(self.config, k.interval) if self.batch else ""
            if problem:  # the input's candles, not the config, set the bar interval
                raise ConfigError(f"{k.symbol} has {k.interval} candles: {problem}")
            st.kline_interval = k.interval
        elif k.interval != st.kline_interval:
            self.counts["unused_kline_interval"] += 1
            return
        self._on_bar(st, bar_from_kline(k))

    def _on_depth(self, ev: DepthUpdate) -> None:
        """A depth diff into the symbol's local book (Binance's procedure, ``BookSync``); a
        break in the update ids is recorded, the book cleared, and a snapshot asked for."""
        st = self._state(ev.symbol)
        sync = st.features.book if st is not None else None
        if st is None or sync is None:
            self.counts["ignored_DepthUpdate"] += 1
            return
        if self._bare_snapshot is not None:  # a capture's snapshot line: this symbol's
            self._into_book(st, self._bare_snapshot)
            self._bare_snapshot = None
        outcome = sync.on_diff(ev.first_update_id, ev.final_update_id,
                               ev.prev_final_update_id, ev.bids, ev.asks)
        self.counts[f"depth_{outcome}"] += 1
        if outcome == "applied":
            st.features.on_book_update()
        elif outcome == "break":
            self.sink.health(ev.symbol, ev.ts_event, ev.ts_init, "book_resync", 1,
                             f"depth update {ev.first_update_id}..{ev.final_update_id} does "
                             "not follow the book: cleared, waiting for a snapshot")
            log.warning("book_resync", symbol=ev.symbol, first=ev.first_update_id,
                        final=ev.final_update_id)
        if sync.needs_snapshot and self.gate.backfill:  # live: the shell fetches one
            self.snapshot_requests.append(ev.symbol)
            sync.asked()

    def _on_snapshot(self, ev: DepthSnapshot) -> None:
        """A REST depth snapshot: into its symbol's book; a bare one (no symbol) waits for the
        next depth diff's symbol. A partial-depth frame (<= 20 levels a side) is no snapshot."""
        if not ev.symbol:
            if len(ev.bids) > 20 or len(ev.asks) > 20:
                self._bare_snapshot = ev
            return
        st = self._state(ev.symbol)
        if st is not None and st.features.book is not None:
            self._into_book(st, ev)

    def _into_book(self, st: SymbolState, ev: DepthSnapshot) -> None:
        sync = st.features.book
        assert sync is not None
        applied = sync.on_snapshot(ev.last_update_id, ev.bids, ev.asks)
        self.counts["book_snapshots"] += 1
        if st.features.flow is not None:
            st.features.flow.reset()  # the jump to a new book is no order flow
        if sync.synced:
            st.features.on_book_update()
        log.info("book_snapshot", symbol=ev.symbol or "", last_update_id=ev.last_update_id,
                 diffs_applied=applied, synced=sync.synced)

    def _on_gap_event(self, g: Gap) -> None:
        """A gap that stays: recorded; the symbol's bar, labels and features start afresh."""
        count = None
        interval = self._interval_of(g)
        if g.kind == "kline_time" and interval:
            count = (g.last_missing - g.first_missing) // parse_interval(interval) + 1
        self.counts["gaps"] += 1
        self.sink.gap(g, count)
        st = self.state.get(g.symbol)
        dropped = 0
        if st is not None:
            st.builder.reset()
            st.features.reset()
            dropped = st.labels.clear()
            self.counts["labels_dropped"] += dropped
        log.warning("feed_gap", symbol=g.symbol, kind=g.kind, first=g.first_missing,
                    last=g.last_missing, labels_dropped=dropped)

    def _interval_of(self, g: Gap) -> str:
        st = self.state.get(g.symbol)
        return st.kline_interval if st is not None else ""

    def _on_bar(self, st: SymbolState, bar: Bar) -> None:
        """Reveal due labels and learn, then update features, then predict. Hot path."""
        st.bars += 1
        self.last_ts = bar.ts_event
        batch = self.batch
        if batch is not None:
            batch.tick(bar.symbol, bar.ts_event)
        for r in st.labels.resolve(bar.close):
            self._learn(st, r, bar)
        if self.cross is not None:
            self.cross.on_bar(bar)  # before any symbol's features read it
        x = st.features.update(bar)
        if x is None:
            st.labels.push(None, bar.close, bar.ts_event)
            if self.broker is not None:
                self.broker.on_bar(bar, math.nan)  # marks to market; no decision
            return
        y_pred = st.learner.predict(x)
        traded, p_trade, p_booster, blocked = y_pred, y_pred, None, ""
        if batch is not None:
            b = batch.blend(bar.symbol, x, y_pred)
            traded, p_trade, p_booster, blocked = b.forecast, b.trade, b.booster, b.blocked
        elif self.config.trading.require_edge:
            blocked = "no walk-forward validation: batch learning is off (trading.require_edge)"
        p = Prediction(bar.symbol, bar.ts_event, bar.ts_init, self.model_name,
                       self.config.labels.horizon, math.nan if self.regression else traded,
                       y_pred, bar.close, math.nan if p_booster is None else p_booster)
        st.predictions += 1
        self.sink.prediction(p)
        st.labels.push(x, bar.close, bar.ts_event, (y_pred, traded, p_booster))
        if self.broker is not None and bar.ts_event > self.gate.live_from.get(bar.symbol, 0):
            self.broker.on_bar(bar, math.nan if self.regression else
                               (traded if blocked else p_trade), blocked)
        if self.log_bars:
            self._log_bar(bar, y_pred, traded)

    def _log_bar(self, bar: Bar, online: float, traded: float) -> None:
        """The canonical line of a closed bar: what came in, what was predicted, what is held.

        Sampled: a symbol's first bar, then its first bar at least ``BAR_LINE_EVERY`` of event
        time after its last line (every bar of 1 m bars, one in 60 of 1 s bars), and any bar whose
        position differs from the last line's; ``bars`` counts the bars the line stands for. A
        line costs ~80 µs: a thousand symbols of 1 s bars would spend 8 % of a core on them."""
        broker = self.broker
        pos = broker.positions.get(bar.symbol) if broker is not None else None
        qty = pos.qty if pos is not None else 0.0
        line = self._bar_lines.get(bar.symbol)
        if line is None:
            line = self._bar_lines[bar.symbol] = [bar.ts_event, 0, qty]
        line[1] += 1
        if bar.ts_event < line[0] and qty == line[2]:
            return
        log.info("bar_closed", symbol=bar.symbol, ts_event=bar.ts_event, close=bar.close,
                 volume=round(bar.volume, 8), trades=bar.trade_count, p_online=round(online, 4),
                 p_traded=round(traded, 4), position=qty,
                 equity=round(broker.equity, 2) if broker is not None else None,
                 lag_ms=round((time.time_ns() - bar.ts_init) / 1e6, 2), bars=line[1])
        line[:] = [bar.ts_event + BAR_LINE_EVERY, 0, qty]

    def _learn(self, st: SymbolState, r: Any, bar: Bar) -> None:
        y_pred, traded, *booster = r.payload  # older checkpoints queued no booster
        if self.regression:
            y: float = r.forward_return
            loss = traded_loss = abs(y - y_pred)
        else:
            y = label = r.label
            loss = log_loss_one(y_pred, label)
            traded_loss = loss if traded == y_pred else log_loss_one(traded, label)
            self._roll(st, label, {"river": y_pred, "booster": booster[0] if booster else None,
                                   "ensemble": traded})
            self._baseline(st, label)
            st.hits += int((traded >= 0.5) == bool(label))
        st.labelled += 1
        st.model_loss += loss
        st.ensemble_loss += traded_loss
        self.sink.outcome(Outcome(bar.symbol, r.ts_event, bar.ts_init, bar.ts_event,
                                  r.forward_return, r.label, traded_loss))
        report = st.learner.learn(r.x, y, y_pred)
        if bar.ts_event >= self._coef_due.get(bar.symbol, 0):
            self._record_coefficients(st, bar)
        if self.batch is not None:
            self.batch.on_sample(bar.symbol, r.ts_event, r.x, r.label, r.forward_return, r.close)
        if report is not None:
            self._drift(st, bar, report)

    def _record_coefficients(self, st: SymbolState, bar: Bar) -> None:
        """Every ``drift.feature_every`` of event time (the feature check's clock, so the two
        line up), the online learner's weights on its standardized inputs go to the sink."""
        every = self._coef_every
        self._coef_due[bar.symbol] = (bar.ts_event // every + 1) * every
        coefs = river_coefficients(st.learner.estimator, st.features.names)
        if coefs:
            self.sink.coefficients(bar.symbol, bar.ts_event, coefs)

    def close(self, *, drain: bool) -> None:
        """Tear down. ``drain`` (the end of a replay's input): let running batch jobs finish and
        apply, then stop the worker; otherwise (a stop, a failure) stop it without waiting."""
        if self.batch is None:
            return
        if drain:
            self.batch.finish(self.last_ts)
        else:
            self.batch.stop()

    def _roll(self, st: SymbolState, label: int, probs: dict[str, float | None]) -> None:
        """The rolling scores the metrics endpoint reads, over the learner's rolling window."""
        if st.rolling is None:  # a fresh state, or one checkpointed before the rolling scores
            st.rolling = RollingScores(st.learner.rolling_window)
        st.rolling.update(label, {**probs, "baseline": prequential_p(st.base_ones, st.labelled)})

    def _baseline(self, st: SymbolState, y: int) -> None:
        """Prequential constant-probability baseline: the label frequency seen so far."""
        st.base_loss += log_loss_one(prequential_p(st.base_ones, st.labelled), y)
        st.base_ones += y

    def _drift(self, st: SymbolState, bar: Bar, report: Any) -> None:
        d = DriftDetected(bar.symbol, bar.ts_event, bar.ts_init, "adwin", report.mean_before,
                          report.mean_after, report.samples_seen, report.action)
        self.counts["drifts"] += 1
        st.last_drift = bar.ts_event
        self.sink.drift(d)
        if self.batch is not None:
            self.batch.on_drift(bar.symbol, bar.ts_event)
        log.info("drift_detected", symbol=d.symbol, ts_event=d.ts_event,
                 mean_before=round(d.mean_before, 5), mean_after=round(d.mean_after, 5),
                 action=d.action)

    def _on_control(self, c: Control) -> None:
        self.counts[f"control_{c.kind}"] += 1
        if c.kind == "error":
            self.sink.health(c.symbol, c.ts_event, c.ts_init, "error_frame", 1,
                             f"code={c.code} {c.msg}")
            log.warning("error_frame", code=c.code, msg=c.msg, id=c.id)

    def _reject(self, ts_init: int, exc: ParseError) -> None:
        n = self.counts["rejected"] = self.counts["rejected"] + 1
        self.sink.health("", 0, ts_init, "rejected", 1, f"{exc.reason}: {exc.head!r}")
        if n <= _LOGGED_REJECTS or n % 1000 == 0:
            log.warning("frame_rejected", reason=exc.reason, head=repr(exc.head), rejected=n)

    # -- results ------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Run totals and per-symbol prequential metrics."""
        symbols = {sym: self._symbol_summary(st) for sym, st in sorted(self.state.items())}
        totals = {k: sum(s[k] for s in symbols.values())
                  for k in ("bars", "predictions", "labelled", "drifts")}
        out = {"counts": dict(sorted(self.counts.items())), **totals, "symbols": symbols}
        if self.config.features.book:
            c = self.counts
            out["book"] = {"applied": c["depth_applied"], "resyncs": c["depth_break"],
                           "snapshots": c["book_snapshots"]}
        return out

    def _symbol_summary(self, st: SymbolState) -> dict[str, Any]:
        n = st.labelled
        out: dict[str, Any] = {
            "bars": st.bars, "predictions": st.predictions, "labelled": n,
            "drifts": st.learner.n_drifts, "bar_source": st.bar_source or "none",
        }
        if n and not self.regression:
            out["log_loss"] = st.model_loss / n
            out["ensemble_log_loss"] = st.ensemble_loss / n
            out["baseline_log_loss"] = st.base_loss / n
            out["accuracy"] = st.hits / n
        elif n:
            out["mae"] = st.model_loss / n
        out["metrics"] = st.learner.metrics()
        return out
