"""Delayed labels: River's question/answer order on bar indices, targets, gaps, protocol."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import stream

from ares_stream.features.labels import LabelQueue, Resolved


def _run(closes: list[float], has_x: list[bool], horizon: int, threshold: float = 0.0):
    """Drive a queue bar by bar; return the (kind, bar) event log, resolved samples and queue."""
    q = LabelQueue(horizon, threshold)
    log: list[tuple[str, int]] = []
    out: list[tuple[int, Resolved]] = []
    for i, (close, ok) in enumerate(zip(closes, has_x, strict=True)):
        for r in q.resolve(close):
            log.append(("answer", r.ts_event))
            out.append((i, r))
        if ok:
            log.append(("question", i))
        q.push({"bar": float(i)} if ok else None, close, ts_event=i, payload=-i)
    return log, out, q


def test_order_matches_river_simulate_qa_with_bar_moments() -> None:
    """Reveals and questions interleave exactly as River's simulate_qa(moment=bar, delay=h).

    A sample due on a featureless bar is revealed there, River reveals it before the next question:
    relative to the questions (predictions), the order is the same.
    """
    rng = random.Random(7)
    n, horizon = 400, 5
    has_x = [i >= 20 and rng.random() > 0.1 for i in range(n)]  # warm-up, then random holes
    closes = [100.0 + rng.random() for _ in range(n)]
    log, _, q = _run(closes, has_x, horizon)
    dataset = [({"bar": i}, i) for i in range(n) if has_x[i]]
    river_log = [
        ("question" if y is None else "answer", x["bar"])
        for _, x, y in stream.simulate_qa(dataset, moment="bar", delay=horizon)
    ]
    assert river_log[: len(log)] == log
    # River flushes what is still pending at the end; we keep it until its bar exists
    assert [e for e, _ in river_log[len(log) :]] == ["answer"] * len(q)


def test_targets_are_log_forward_return_and_fee_threshold() -> None:
    """forward_return = log(c[t+h]/c[t]); label is 1 only when it strictly exceeds the threshold."""
    threshold = math.log(1.002)
    q = LabelQueue(horizon=1, threshold=threshold)
    q.resolve(100.0)
    q.push({"a": 1.0}, 100.0, ts_event=10, payload="p")
    (r,) = q.resolve(100.2)  # exactly the threshold: the fees are not covered
    assert (r.x, r.ts_event, r.close, r.payload) == ({"a": 1.0}, 10, 100.0, "p")
    assert r.forward_return == pytest.approx(threshold, abs=1e-15) and r.label == 0
    q.push({"a": 2.0}, 100.2, ts_event=11)
    (r,) = q.resolve(100.5)
    assert r.forward_return == math.log(100.5 / 100.2) and r.label == 1


def test_bars_without_features_still_tick_the_horizon_clock() -> None:
    """A bar pushed with x=None makes no sample but counts as one bar of every pending horizon."""
    closes = [100.0, 101.0, 102.0, 103.0, 104.0]
    _, out, q = _run(closes, [True, False, False, True, False], horizon=2)
    assert [(i, r.ts_event, r.forward_return) for i, r in out] == [(2, 0, math.log(1.02))]
    assert len(q) == 1  # bar 3's label needs bar 5


def test_clear_drops_pending_samples_and_counts_them() -> None:
    """After a gap clear() forgets every pending sample; later bars label only later samples."""
    _, _, q = _run([1.0, 2.0, 3.0], [True, True, True], horizon=3)
    assert q.clear() == 3 and len(q) == 0 and q.clear() == 0
    for close in (4.0, 5.0, 6.0):
        assert q.resolve(close) == []
        q.push({"a": close}, close, ts_event=0)
    assert [r.close for r in q.resolve(7.0)] == [4.0]


def test_push_without_resolve_is_refused() -> None:
    """Skipping resolve() on a bar would label with a later close, so push() raises."""
    q = LabelQueue(horizon=1, threshold=0.0)
    q.resolve(1.0)
    q.push({"a": 1.0}, 1.0, ts_event=0)
    with pytest.raises(RuntimeError, match="resolve"):
        q.push({"a": 1.0}, 1.0, ts_event=1)


def test_horizon_must_be_positive() -> None:
    """A zero horizon would label a bar with its own close."""
    with pytest.raises(ValueError, match="horizon"):
        LabelQueue(horizon=0, threshold=0.0)


@settings(max_examples=60, deadline=None)
@given(
    closes=st.lists(st.floats(0.5, 2.0), min_size=1, max_size=60),
    mask=st.lists(st.booleans(), min_size=60, max_size=60),
    horizon=st.integers(1, 6),
    threshold=st.floats(-0.01, 0.01),
)
def test_every_sample_resolves_once_at_exactly_t_plus_horizon(
    closes: list[float], mask: list[bool], horizon: int, threshold: float
) -> None:
    """On any series each featured bar t is revealed once, in order, at bar t + h, with targets."""
    has_x = mask[: len(closes)]
    _, out, q = _run(closes, has_x, horizon, threshold)
    expected = [t for t, ok in enumerate(has_x) if ok and t + horizon < len(closes)]
    assert [r.ts_event for _, r in out] == expected
    for i, r in out:
        t = r.ts_event
        assert i == t + horizon and r.payload == -t
        assert r.forward_return == math.log(closes[i] / closes[t])
        assert r.label == int(r.forward_return > threshold)
    assert len(q) == sum(has_x) - len(expected)
