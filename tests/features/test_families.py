"""One symbol's feature families in the engine (ares_stream/features/families.py): the schema,
the local book on a real capture, and a checkpoint in the middle."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from ares_stream.codec import dumps, loads
from ares_stream.config import Config, replace_values
from ares_stream.engine import Engine
from ares_stream.features.families import SymbolFeatures, feature_names
from ares_stream.features.pipeline import feature_set
from tests.test_engine import ListSink

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ws"
CAPTURES = [DATA / f"binance-spot-btcusdt-2024080{d}.gz" for d in (8, 9)]


def frames() -> list[tuple[int, bytes]]:
    """Both BTCUSDT spot captures (trades, bookTicker, depth@100ms, a snapshot line first)."""
    for path in CAPTURES:
        if not path.exists():
            pytest.skip(f"real data missing: {path}")
    out = []
    for path in CAPTURES:
        with gzip.open(path, "rb") as f:
            for line in f:
                ts, _, data = line.rstrip(b"\n").partition(b" ")
                out.append((int(ts), data))
    return out


def config(**features: Any) -> Config:
    return replace_values(Config(), {
        "bars": {"interval": "5s"}, "labels": {"horizon": 2, "threshold_bps": 0.0},
        "features": {"return_horizons": [1, 3], "vol_span": 5, "rsi_period": 5,
                     "macd": [3, 6, 3], "boll_window": 5, "vwap_window": 5, "flow_window": 5,
                     "intensity_span": 5, "volume_window": 5, **features}})


def test_the_schema_lists_every_family_in_a_fixed_order() -> None:
    """Bar features, then the book's, the higher timeframes' (without the book top) and the
    reference's; the same names whatever the symbol, and a change of family changes them."""
    cfg = config(book=True, timeframes=["15s", "1m"], cross_asset=True)
    names = feature_names(cfg)
    base = feature_set(cfg).names
    assert names[:len(base)] == base
    assert names[len(base):len(base) + 6] == ("depth_imb_k", "depth_imb_bps", "microprice_dev",
                                              "ofi", "book_spread_bps", "depth_chg")
    assert "ret_1@15s" in names and "spread_bps@1m" not in names
    assert names[-3:] == ("ref_ret_1", "ref_ret_3", "ref_vol")
    assert SymbolFeatures(cfg).names == names
    assert feature_names(config()) == base and len(set(names)) == len(names)


def test_the_book_of_a_real_capture_syncs_and_feeds_every_bar() -> None:
    """The capture's snapshot line and depth diffs build a book that never breaks; once it is
    synced every prediction's vector carries the book features."""
    engine = Engine(config(book=True), ListSink())
    for ts, data in frames():
        engine.on_frame(ts, data)
    assert engine.counts["book_snapshots"] == 1
    assert engine.counts["depth_applied"] > 6000 and engine.counts["depth_break"] == 0
    st = engine.state["BTCUSDT"]
    assert st.features.book is not None and st.features.book.synced
    assert not st.features.book.book.crossed()
    assert engine.sink.predictions, "bars with a synced book are predicted"


def test_a_checkpoint_in_the_middle_changes_nothing() -> None:
    """The engine state with the book, higher timeframes and the reference, written with the
    codec half-way and read into a fresh engine, predicts exactly as the engine that ran on."""
    cfg = config(book=True, timeframes=["15s"], cross_asset=True)
    tape = frames()
    half = len(tape) // 2
    first = Engine(cfg, ListSink())
    for ts, data in tape[:half]:
        first.on_frame(ts, data)
    second = Engine(cfg, ListSink())
    second.restore_state(loads(dumps(first.state)))
    second.counts.update(first.counts)
    second.last_ts = first.last_ts
    assert second.cross is not None and second.cross is second.state["BTCUSDT"].features.cross
    after = first.sink = ListSink()
    for ts, data in tape[half:]:
        first.on_frame(ts, data)
        second.on_frame(ts, data)
    assert after.predictions, "predictions after the checkpoint"
    assert after.predictions == second.sink.predictions
    assert dumps(first.state) == dumps(second.state)


def test_a_simulated_recording_with_depth_syncs_its_book_from_the_recording_alone(
        tmp_path: Path) -> None:
    """The simulator's recording opens with the empty book its first diff starts from, so a
    replay syncs the book without any REST, never breaks, and predicts from the first warm bar."""
    from ares_stream.sim.simulator import write_recording

    path = tmp_path / "sim.gz"
    write_recording(path, seconds=900, seed=4, streams=("aggTrade", "depth@100ms"),
                    book_beta=3e-4)
    engine = Engine(config(book=True), ListSink())
    with gzip.open(path, "rb") as f:
        for line in f:
            ts, _, data = line.rstrip(b"\n").partition(b" ")
            engine.on_frame(int(ts), data)
    assert engine.counts["book_snapshots"] == 1 and engine.counts["depth_break"] == 0
    assert engine.counts["depth_applied"] > 5000  # most 100 ms windows change the book
    assert len(engine.sink.predictions) > 100
