"""The engine: bars, gaps, duplicates, predict-then-learn order, rejection of bad frames."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from ares_stream.config import Config, replace_values
from ares_stream.engine import Engine
from ares_stream.events import Kline, Trade

S = 1_000_000_000


@dataclass
class ListSink:
    """A sink that keeps everything in lists."""

    predictions: list[Any] = field(default_factory=list)
    outcomes: list[Any] = field(default_factory=list)
    drifts: list[Any] = field(default_factory=list)
    gaps: list[Any] = field(default_factory=list)
    incidents: list[tuple[Any, ...]] = field(default_factory=list)
    coefficients_read: list[tuple[str, int, dict[str, float]]] = field(default_factory=list)

    def prediction(self, p: Any) -> None:
        self.predictions.append(p)

    def outcome(self, o: Any) -> None:
        self.outcomes.append(o)

    def drift(self, d: Any) -> None:
        self.drifts.append(d)

    def gap(self, g: Any, count: int | None = None) -> None:
        self.gaps.append(g)

    def health(self, *args: Any, **kwargs: Any) -> None:
        self.incidents.append(args)

    def coefficients(self, symbol: str, ts_event: int, coefs: dict[str, float]) -> None:
        self.coefficients_read.append((symbol, ts_event, coefs))


def config(**sections: dict[str, Any]) -> Config:
    base = {"bars": {"interval": "1s"}, "labels": {"horizon": 3, "threshold_bps": 0.0}}
    base.update(sections)
    return replace_values(Config(), base)


def trades(n: int, start_id: int = 1, per_second: int = 3, symbol: str = "BTCUSDT") -> list[Trade]:
    """A deterministic zig-zag tape: ``per_second`` trades per second, consecutive agg ids."""
    out = []
    for i in range(n):
        ident = start_id + i
        price = 100.0 + (ident % 7) * 0.1 + (ident % 13) * 0.05
        ts = (ident // per_second) * S + (ident % per_second) * 1000
        out.append(Trade(symbol, ts, ts + 5, ident, price, 0.5 + (ident % 3), ident % 2 == 0, True))
    return out


def run(events: list[Any], cfg: Config | None = None) -> tuple[Engine, ListSink]:
    sink = ListSink()
    engine = Engine(cfg or config(), sink)
    for ev in events:
        engine.on_event(ev)
    return engine, sink


def test_predictions_are_labelled_horizon_bars_later() -> None:
    """Each outcome belongs to a prediction made exactly `horizon` bars before the labelling bar."""
    _, sink = run(trades(600))
    assert sink.predictions, "features warm up within 200 bars"
    bar_times = sorted({p.ts_event for p in sink.predictions})
    index = {t: i for i, t in enumerate(bar_times)}
    for o in sink.outcomes:
        assert index[o.ts_label] - index[o.ts_event] == 3


def test_every_prediction_precedes_its_outcome() -> None:
    """No outcome is emitted for a bar before that bar's prediction (predict, then learn)."""
    _, sink = run(trades(600))
    predicted = {p.ts_event for p in sink.predictions}
    assert all(o.ts_event in predicted for o in sink.outcomes)
    assert len(sink.outcomes) == len(sink.predictions) - 3


def test_id_gap_is_recorded_and_warms_up_again() -> None:
    """A hole in agg ids is a gap: recorded with its exact ids, pending labels dropped."""
    tape = trades(600)
    holed = tape[:300] + tape[320:]
    engine, sink = run(holed)
    assert [(g.kind, g.first_missing, g.last_missing) for g in sink.gaps] == [
        ("agg_id", tape[300].trade_id, tape[319].trade_id)
    ]
    assert engine.counts["labels_dropped"] == 3


def test_duplicates_are_dropped_and_counted() -> None:
    """Re-sent trades do not change bars or predictions; they are counted."""
    tape = trades(600)
    _, clean = run(tape)
    engine, sink = run(tape[:400] + tape[390:400] + tape[400:])
    assert engine.counts["duplicates"] == 10
    assert [p.value for p in sink.predictions] == [p.value for p in clean.predictions]


def test_malformed_frames_are_counted_and_skipped() -> None:
    """A bad frame among good ones is rejected, recorded, and the good ones still count."""
    sink = ListSink()
    engine = Engine(config(), sink)
    good = {"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "E": 1, "s": "BTCUSDT",
            "a": 1, "p": "1.0", "q": "1.0", "f": 1, "l": 1, "T": 1_700_000_000_000,
            "m": True, "M": True}}
    engine.on_frame(1, json.dumps(good).encode())
    engine.on_frame(2, b'{"stream":"btcusdt@aggTrade","data":{"p":"NaN"')
    engine.on_frame(3, b"\xff\xfe garbage")
    assert engine.counts["frames"] == 3
    assert engine.counts["rejected"] == 2
    assert [i[3] for i in sink.incidents] == ["rejected", "rejected"]


def test_kline_gap_and_only_closed_klines() -> None:
    """Open klines are ignored; a jump in open times is a kline_time gap."""
    m = 60 * S

    def k(i: int, closed: bool = True) -> Kline:
        return Kline("BTCUSDT", (i + 1) * m, (i + 1) * m, "1m", i * m, (i + 1) * m - 1,
                     100.0 + i % 5, 101.0 + i % 5, 99.0, 100.5, 3.0, 10, 1.0, closed)

    events = [k(i) for i in range(50)] + [k(50, closed=False)] + [k(i) for i in range(53, 80)]
    engine, sink = run(events)
    assert engine.summary()["bars"] == 50 + 27
    assert [(g.kind, g.first_missing, g.last_missing) for g in sink.gaps] == [
        ("kline_time", 50 * m, 52 * m)
    ]


def test_bar_source_locks_to_first_kind_seen() -> None:
    """With trades and klines for one symbol, only the first kind seen makes bars."""
    kl = Kline("BTCUSDT", 60 * S, 60 * S, "1m", 0, 60 * S - 1, 1, 1, 1, 1, 1, 1, 1.0, True)
    engine, _ = run([*trades(30), kl])
    assert engine.counts["unused_kline"] == 1
    assert engine.summary()["symbols"]["BTCUSDT"]["bar_source"] == "aggTrade"


def test_symbol_filter() -> None:
    """Symbols outside feed.symbols are ignored and counted."""
    cfg = config(feed={"symbols": ["ETHUSDT"]})
    engine, _ = run(trades(100), cfg)
    assert not engine.state
    assert engine.counts["other_symbol"] == 100


def test_same_input_gives_identical_predictions() -> None:
    """Two engines fed the same events produce the same predictions, bit for bit."""
    tape = trades(900)
    assert run(tape)[1].predictions == run(tape)[1].predictions


def frame(tr: Trade) -> bytes:
    """The aggTrade websocket frame of a trade."""
    return json.dumps({"stream": f"{tr.symbol.lower()}@aggTrade", "data": {
        "e": "aggTrade", "E": tr.ts_event // 10**6, "s": tr.symbol, "a": tr.trade_id,
        "p": repr(tr.price), "q": repr(tr.qty), "f": tr.trade_id, "l": tr.trade_id,
        "T": tr.ts_event // 10**6, "m": tr.is_buyer_maker, "M": True}}).encode()


@dataclass
class ListRecorder:
    """A recorder that keeps lines in memory, in the order the engine consumed them."""

    lines: list[Any] = field(default_factory=list)

    def write(self, ts_init: int, data: bytes) -> None:
        self.lines.append((ts_init, data))

    def write_gap(self, gap: Any) -> None:
        self.lines.append(gap)


def ms_trades(n: int) -> list[Trade]:
    """Trades on whole milliseconds (what a wire frame can carry)."""
    return [Trade("BTCUSDT", (i // 3) * S + (i % 3) * 10**6, 0, i, 100.0 + (i % 7) * 0.1,
                  1.0 + i % 3, i % 2 == 0, True) for i in range(1, n + 1)]


def test_live_backfill_equals_the_clean_run_and_its_recording_replays_identically() -> None:
    """A hole filled over REST gives the predictions of a run without the hole, and the
    recording written in consumption order replays to the same predictions."""
    from ares_stream.feed import RawFrame
    from ares_stream.feed.gate import Gate

    tape = ms_trades(900)
    frames = [(i, frame(tr)) for i, tr in enumerate(tape)]
    clean = ListSink()
    engine = Engine(config(), clean)
    for ts, data in frames:
        engine.on_frame(ts, data)
    live, rec = ListSink(), ListRecorder()
    engine = Engine(config(), live, gate=Gate(backfill=True), recorder=rec)
    holed = frames[:400] + frames[430:]
    for ts, data in holed:
        engine.on_frame(ts, data)
        for req in engine.gate.take_requests():
            missing = [RawFrame(10**9 + j, frames[j - 1][1])
                       for j in range(req.first_missing, req.last_missing + 1)]
            engine.on_backfill(req, missing, complete=True)
    assert [p.value for p in live.predictions] == [p.value for p in clean.predictions]
    assert live.gaps == [] and engine.counts["backfilled"] == 30
    replayed = ListSink()
    engine = Engine(config(), replayed)
    for line in rec.lines:
        engine.on_frame(*line)
    assert [p.value for p in replayed.predictions] == [p.value for p in clean.predictions]


def test_unfilled_gap_is_recorded_as_marker_and_replays_the_same() -> None:
    """A gap REST cannot fill becomes a Gap in the run and a marker in the recording."""
    from ares_stream.feed.gate import Gate

    frames = [(i, frame(tr)) for i, tr in enumerate(ms_trades(900))]
    live, rec = ListSink(), ListRecorder()
    engine = Engine(config(), live, gate=Gate(backfill=True), recorder=rec)
    for ts, data in frames[:400] + frames[430:]:
        engine.on_frame(ts, data)
        for req in engine.gate.take_requests():
            engine.on_backfill(req, [], complete=False, reason="not_available")
    assert [(g.first_missing, g.last_missing) for g in live.gaps] == [(401, 430)]
    replayed = ListSink()
    engine = Engine(config(), replayed)
    for line in rec.lines:
        if isinstance(line, tuple):
            engine.on_frame(*line)
        else:
            engine.on_event(line)
    assert [p.value for p in replayed.predictions] == [p.value for p in live.predictions]
    assert [(g.first_missing, g.last_missing) for g in replayed.gaps] == [(401, 430)]


def test_the_online_learners_coefficients_are_read_on_the_feature_check_clock() -> None:
    """Every drift.feature_every of event time (here 60 s of 1 s bars) the sink gets the online
    learner's weights, one per feature, as the learner holds them at that bar."""
    engine, sink = run(trades(3 * 600), config(drift={"feature_every": "1m"}))
    reads = sink.coefficients_read
    assert len(reads) >= 4
    times = [t for _, t, _ in reads]
    assert all(b // (60 * S) > a // (60 * S) for a, b in itertools.pairwise(times))
    names = engine.state["BTCUSDT"].features.names
    assert all(list(c) == list(names) for _, _, c in reads)
    assert any(v != 0.0 for v in reads[-1][2].values())


def test_bar_lines_are_sampled_once_a_minute_and_on_a_position_change() -> None:
    """With 1 s bars a symbol's bar_closed line comes at its first bar, then at its first bar a
    minute of event time after the last line, and at once when its position changed; each line's
    ``bars`` counts the bars since the one before, so none goes unaccounted for."""
    from structlog.testing import capture_logs

    from ares_stream.config import TradingConfig
    from ares_stream.engine import BAR_LINE_EVERY
    from ares_stream.trading.paper import PaperBroker, Position

    broker = PaperBroker(TradingConfig(), None)
    broker.halted = "test: no orders"  # the position changes only where the test says
    sink = ListSink()
    engine = Engine(config(), sink, broker=broker)
    engine.log_bars = True
    with capture_logs() as logs:
        for i, ev in enumerate(trades(3 * 400)):
            if i == 3 * 250:
                broker.positions["BTCUSDT"] = Position(qty=1.0)
            engine.on_event(ev)
    lines = [e for e in logs if e["event"] == "bar_closed"]
    ts = [e["ts_event"] for e in lines]
    first = sink.predictions[0].ts_event
    changed = next(e for e in lines if e["position"] == 1.0)
    assert ts[0] == first and changed["ts_event"] == 251 * S
    assert all(b - a == BAR_LINE_EVERY for a, b in itertools.pairwise(ts)
               if b != changed["ts_event"])  # a bar every second: the line a minute after
    assert 6 <= len(lines) <= 8  # ~390 bars: one line a minute, not one a bar
    assert sum(e["bars"] for e in lines) + engine._bar_lines["BTCUSDT"][1] == len(sink.predictions)
