"""Memory that fits: float32 buffer rows that XGBoost sees unchanged, old databases and
checkpoints that still load, compact per-symbol state with unchanged predictions, and the
refusal of a config that would not fit."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import tracemalloc
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import utils

from ares_stream import codec
from ares_stream.config import Config, load_config, replace_values
from ares_stream.engine import Engine
from ares_stream.feed.publicdata import PublicDataSource
from ares_stream.learners import booster as bst
from ares_stream.learners import memory, online
from ares_stream.learners.buffer import SampleBuffer, row_bytes
from ares_stream.learners.online import OnlineLearner
from ares_stream.learners.rings import RollingPairs, WarmRing
from ares_stream.learners.scores import RollingScores, log_loss_one
from ares_stream.store.buffer import BufferStore
from ares_stream.store.db import open_db
from tests.conftest import shared_path

FEATURES = [f"f{i}" for i in range(15)]
MIN = 60 * 10**9
KLINES = "klines/BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"


def values(n: int, seed: int = 0) -> np.ndarray:
    """float64 features as the engine makes them: full precision, a few NaN."""
    X = np.random.default_rng(seed).normal(size=(n, len(FEATURES))) * 1e-3
    X[::17, 3] = np.nan
    return X


def filled(X: np.ndarray, **kw: Any) -> SampleBuffer:
    buf = SampleBuffer("BTCUSDT", FEATURES, **kw)
    for i, row in enumerate(X.tolist()):
        buf.add((i + 1) * MIN, dict(zip(FEATURES, row, strict=True)), label=i % 2,
                forward_return=row[0], close=100.0 + i / 7)
    return buf


def test_rows_round_trip_in_memory_and_through_the_store(tmp_path: Path) -> None:
    """The window holds each row's features rounded to float32 and everything else exactly,
    and a restart reads the same window back from the SQLite file."""
    X = values(500)
    store = BufferStore(open_db(tmp_path / "run.db"))
    buf = filled(X, max_rows=400, store=store)
    buf.flush()
    _, Xw, y, fwd = buf.window()
    assert Xw.dtype == np.float32
    np.testing.assert_array_equal(Xw, X[100:].astype(np.float32))
    assert fwd.tolist() == X[100:, 0].tolist() and y.tolist() == [i % 2 for i in range(100, 500)]
    again = SampleBuffer("BTCUSDT", FEATURES, max_rows=400, store=store)
    assert again.load() == 400
    for a, b in zip(buf.window(), again.window(), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    np.testing.assert_array_equal(buf.closes(), again.closes())


def test_xgboost_gets_the_same_matrix_and_trains_the_same_booster() -> None:
    """XGBoost rounds float64 input to float32: the booster trained on the float32 window is
    byte for byte the one trained on the float64 rows, and predicts the same."""
    X64 = values(2000, seed=1)
    _, X32, y, _ = filled(X64).window()
    labels = y.astype(float)
    ts = np.arange(len(labels), dtype=np.int64)
    s = bst.BoosterSettings(rounds_refit=20)
    a = bst.fit(X64, labels, ts, FEATURES, s)
    b = bst.fit(X32, labels, ts, FEATURES, s)
    assert bytes(a.booster.save_raw("ubj")) == bytes(b.booster.save_raw("ubj"))
    np.testing.assert_array_equal(bst.predict(a, X64), bst.predict(b, X32))
    c = bst.update(a, X64[-300:], labels[-300:], ts[-300:], FEATURES, s)
    d = bst.update(b, X32[-300:], labels[-300:], ts[-300:], FEATURES, s)
    assert bytes(c.booster.save_raw("ubj")) == bytes(d.booster.save_raw("ubj"))


def test_bytes_per_row_are_below_the_layout_bound() -> None:
    """A full buffer (compacted at least once) holds at most ``row_bytes`` per row, which is
    half the float64 layout's ``(8 + 8d + 1 + 8 + 8) × 5/4``."""
    rows = 16_000
    X = values(rows + rows // 8)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        buf = filled(X, max_rows=rows)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(buf) == rows
    d = len(FEATURES)
    assert held <= rows * row_bytes(d) + 32_768, (held / rows, row_bytes(d))  # + the object
    assert row_bytes(d) <= 0.5 * (8 + 8 * d + 1 + 8 + 8) * 1.25


def test_a_database_written_in_the_float64_layout_loads(tmp_path: Path) -> None:
    """Rows written before the float32 buffer (float64 bytes), and newer rows beside them,
    load into the same window the float32 buffer holds."""
    X = values(300, seed=2)
    db = open_db(tmp_path / "old.db")
    fresh = filled(X)
    old = [("BTCUSDT", (i + 1) * MIN, X[i].tobytes(), i % 2, float(X[i, 0]),
            fresh.feature_hash, 100.0 + i / 7) for i in range(200)]  # the old add_many's bytes
    with db.conn:
        db.conn.executemany("INSERT INTO buffer (symbol, ts_event, x, label, forward_return, "
                            "feature_hash, close) VALUES (?, ?, ?, ?, ?, ?, ?)", old)
    store = BufferStore(db)
    _, Xn, yn, fn = fresh.window(since=200 * MIN)
    store.add_many("BTCUSDT", [((201 + i) * MIN, Xn[i], int(yn[i]), float(fn[i]),
                                fresh.feature_hash, 100.0 + (200 + i) / 7) for i in range(100)])
    loaded = SampleBuffer("BTCUSDT", FEATURES, store=store)
    assert loaded.load() == 300
    for a, b in zip(fresh.window(), loaded.window(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_blob_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    """A row holding neither float32 nor float64 features of the schema is an error, not a
    silently misread matrix."""
    store = BufferStore(open_db(tmp_path / "bad.db"))
    buf = filled(values(3))
    store.add_many("BTCUSDT", [(MIN, [1.0, 2.0, 3.0], 1, 0.0, buf.feature_hash, 1.0)])
    with pytest.raises(ValueError, match="neither 15 float32 nor 15 float64"):
        SampleBuffer("BTCUSDT", FEATURES, store=store).load()


# -- the refusal ---------------------------------------------------------------------------------


def many(n: int) -> Config:
    return replace_values(Config(), {"feed": {"symbols": [f"S{i}USDT" for i in range(n)]}})


def test_shortfall_is_a_pure_function_of_the_config_and_the_numbers() -> None:
    """The line names the keys and the arithmetic; a config that fits, or whose symbols are
    unknown (every symbol a source carries), gives none."""
    cfg = many(2000)
    line = memory.shortfall(cfg, 20.1e9)
    assert line.startswith("2,000 symbols × 200,000 rows × 90 B = 36.1 GB of buffers + 2,000 × ")
    assert "> 20.1 GB available: lower batch.buffer_rows or add shards" in line
    buffers, state, process = memory.need(cfg, 2000)
    assert buffers == 2000 * 200_000 * row_bytes(15) and state == 2000 * memory.state_bytes(cfg)
    assert memory.shortfall(cfg, buffers + state + process) == ""
    assert memory.shortfall(Config(), 1.0) == ""  # symbols not named: not known before the feed
    no_batch = replace_values(cfg, {"batch": {"enabled": False}})
    assert memory.need(no_batch, 2000)[0] == 0


@pytest.mark.parametrize("command", [["replay", "IGNORED.gz"], ["run", "--paper"]])
def test_a_config_that_cannot_fit_is_refused_with_one_line(tmp_path: Path,
                                                           command: list[str]) -> None:
    """Replay and the daemon refuse 2,000 full buffers in 20.1 GB: exit 2, one line on stderr
    with the arithmetic, no database made."""
    toml = tmp_path / "big.toml"
    toml.write_text("[store]\nmemory_limit_gb = 20.1\n")
    symbols = ",".join(f"S{i}USDT" for i in range(2000))
    db = tmp_path / "x.db"
    proc = subprocess.run([sys.executable, "-m", "ares_stream.cli", *command, "--config",
                           str(toml), "--symbols", symbols, "--db", str(db)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(f"ares-stream {command[0]}: error: 2,000 symbols × 200,000 rows"
                               " × 90 B = 36.1 GB of buffers")
    assert lines[0].endswith("> 20.1 GB available: lower batch.buffer_rows or add shards "
                             "(--shard), or raise store.memory_limit_gb")
    assert not db.exists()


def test_the_memory_limit_key_is_validated() -> None:
    """A negative store.memory_limit_gb is a config error."""
    from ares_stream.errors import ConfigError

    with pytest.raises(ConfigError, match=r"store\.memory_limit_gb"):
        replace_values(Config(), {"store": {"memory_limit_gb": -1.0}})


# -- per-symbol state ----------------------------------------------------------------------------


class DequeRing:
    """The warm samples as they were kept before the rings: a deque of the learned tuples."""

    def __init__(self, maxlen: int, *, int_labels: bool) -> None:
        self.d: deque[tuple[dict[str, float], Any, float]] = deque(maxlen=maxlen)

    def append(self, x: dict[str, float], y: Any, loss: float) -> None:
        self.d.append((x, y, loss))

    def clear(self) -> None:
        self.d.clear()

    def __iter__(self) -> Any:
        return iter(self.d)

    def __len__(self) -> int:
        return len(self.d)


def river_rolling(factory: Any, window: int, *, int_labels: bool) -> Any:
    return utils.Rolling(factory, window_size=window)


def replay(n: int, monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[list[float], Engine]:
    """Every online prediction of ``n`` real one-minute bars, and the engine."""
    cfg = replace_values(load_config(None), {"feed": {"symbols": ["BTCUSDT"]},
                                             "batch": {"enabled": False}})
    preds: list[float] = []
    engine = Engine(cfg, Sink(preds))
    for k in itertools.islice(PublicDataSource(shared_path(KLINES)), n):
        engine.feed(k)
    return preds, engine


class Sink:
    """Records every prediction's probability; ignores the rest."""

    def __init__(self, out: list[float]) -> None:
        self.out = out

    def prediction(self, p: Any) -> None:
        self.out.append(p.proba_up)

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def test_a_real_replay_predicts_the_same_as_with_the_deques(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """30,000 real one-minute bars (drifts and a challenger warmed from the ring included)
    give bit-identical predictions with the numpy rings and with the deques of before."""
    new, engine = replay(30_000)
    learner = engine.state["BTCUSDT"].learner
    assert learner.n_drifts >= 1 and len(new) > 29_000
    monkeypatch.setattr(online, "WarmRing", DequeRing)
    monkeypatch.setattr(online, "RollingPairs", river_rolling)
    old, before = replay(30_000)
    assert isinstance(before.state["BTCUSDT"].learner._buffer, DequeRing)
    assert new == old
    assert learner.metrics() == before.state["BTCUSDT"].learner.metrics()


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and everything it references (numpy buffers included), once each."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, type):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, np.ndarray):
        return size if obj.base is None else size + deep_size(obj.base, seen)
    if isinstance(obj, dict):
        return size + sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset, deque)):
        return size + sum(deep_size(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    for name in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, name):
            size += deep_size(getattr(obj, name), seen)
    return size


def test_per_symbol_state_is_below_the_bound_the_refusal_uses() -> None:
    """After 3,000 real bars (warm samples and rolling windows full) one symbol's state is
    below :func:`memory.state_bytes` (~190 KB); the deques of before held ~940 KB."""
    _, engine = replay(3000)
    st = engine.state["BTCUSDT"]
    assert len(st.learner._buffer) == st.learner.warm_samples
    size = deep_size(st)
    assert size <= memory.state_bytes(engine.config) < 200_000, size


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([("a", "b"), ("b", "a"), ("a", "b", "c"), ()]),
                          st.floats(allow_nan=True, width=64), st.integers(0, 1),
                          st.floats(0, 10)), max_size=40), st.integers(1, 8))
def test_the_warm_ring_gives_back_what_a_deque_would(samples: list[Any], maxlen: int) -> None:
    """Any samples (key orders changing, NaN, empty dicts): the ring yields the deque's."""
    ring, ref = WarmRing(maxlen, int_labels=True), deque(maxlen=maxlen)
    for keys, v, y, loss in samples:
        x = {k: v + i for i, k in enumerate(keys)}
        ring.append(x, y, loss)
        ref.append((x, y, loss))
    got = list(ring)
    assert [(list(x.items()), y, loss) for x, y, loss in got] == \
        [(list(x.items()), y, loss) for x, y, loss in ref] or _nan_equal(got, list(ref))
    assert ring.losses() == [s[2] for s in ref]


def _nan_equal(a: list[Any], b: list[Any]) -> bool:
    return all(list(x) == list(u) and y == w and s == t
               and all(p == q or (math.isnan(p) and math.isnan(q))
                       for p, q in zip(x.values(), u.values(), strict=True))
               for (x, y, s), (u, w, t) in zip(a, b, strict=True)) and len(a) == len(b)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1)), max_size=60), st.integers(1, 9))
def test_rolling_pairs_equal_rivers_rolling(pairs: list[tuple[int, float]], window: int) -> None:
    """The learner's rolling scores in rings equal River's ``utils.Rolling`` exactly."""
    ours = RollingPairs(online._ClassificationScores, window)
    ref = utils.Rolling(online._ClassificationScores, window_size=window)
    for y, p in pairs:
        ours.update(y, p)
        ref.update(y, p)
    assert ours.get() == ref.get()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1)), max_size=60), st.integers(1, 9))
def test_rolling_scores_equal_the_deque_sums(pairs: list[tuple[int, float]], window: int) -> None:
    """The engine's rolling scores equal the running sums over a deque, float for float."""
    scores, ring, sums = RollingScores(window), deque[tuple[float, int]](), [0.0, 0.0]
    for y, p in pairs:
        scores.update(y, {"m": p})
        loss, hit = log_loss_one(p, y), int((p >= 0.5) == bool(y))
        ring.append((loss, hit))
        sums[0] += loss
        sums[1] += hit
        if len(ring) > window:
            old = ring.popleft()
            sums[0] -= old[0]
            sums[1] -= old[1]
    if ring:
        assert scores.get("m") == (max(sums[0], 0.0) / len(ring), sums[1] / len(ring))


def test_a_checkpoint_of_the_deque_layout_resumes_identically() -> None:
    """A learner and scores saved as deques (before the rings) load through the codec into
    rings and go on predicting exactly as the learner that never left memory."""
    rng = np.random.default_rng(3)
    xs = [{"a": float(v), "b": float(-v)} for v in rng.normal(size=3000)]
    ys = [int(x["a"] + rng.normal() > 0) for x in xs]
    live = OnlineLearner("logreg", warm_samples=50, rolling_window=80)
    scores = RollingScores(80)
    for x, y in zip(xs[:2000], ys[:2000], strict=True):
        p = live.predict(x)
        live.learn(x, y, p)
        scores.update(y, {"m": p})
    state = dict(vars(live))
    state["_buffer"] = deque(live._buffer, maxlen=50)
    old_rolling = utils.Rolling(online._ClassificationScores, window_size=80)
    old_rolling.obj = live._rolling.obj
    old_rolling.window.extend(((y, p), {}) for y, p in zip(
        np.roll(live._rolling._y, -live._rolling._next).astype(int).tolist(),
        np.roll(live._rolling._p, -live._rolling._next).tolist(), strict=True))
    state["_rolling"] = old_rolling
    saved = OnlineLearner.__new__(OnlineLearner)
    saved.__dict__.update(state)
    old_scores = RollingScores.__new__(RollingScores)
    old_scores.__dict__.update(window=80, _sums=scores._sums, _ring={"m": deque(
        zip(np.roll(scores._ring["m"].loss, -scores._ring["m"].next).tolist(),
            np.roll(scores._ring["m"].hit, -scores._ring["m"].next).tolist(), strict=True))})
    back, back_scores = codec.loads(codec.dumps((saved, old_scores)))
    assert isinstance(back._buffer, WarmRing) and isinstance(back._rolling, RollingPairs)
    live, scores = codec.loads(codec.dumps((live, scores)))  # both resume from a checkpoint
    for x, y in zip(xs[2000:], ys[2000:], strict=True):
        p, q = live.predict(x), back.predict(x)
        assert p == q
        live.learn(x, y, p)
        back.learn(x, y, q)
        scores.update(y, {"m": p})
        back_scores.update(y, {"m": q})
    assert live.metrics() == back.metrics() and scores.get("m") == back_scores.get("m")
    assert list(live._buffer) == list(back._buffer)
