"""The Prometheus endpoint, scraped over real HTTP on 127.0.0.1 and parsed with the text parser."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ares_stream.batch.learner import Pending
from ares_stream.daemon.prometheus import LAG_BUCKETS, Metrics, MetricsError, check_host
from ares_stream.errors import AresError
from ares_stream.events import Trade
from ares_stream.validation.drift import FeatureDrift
from tests.batch.test_learner import DAY, WIN, _booster, _learner, _outcome, _validate
from tests.conftest import until
from tests.test_engine import config, run, trades

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition as {(name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def serving(test: Callable[[Metrics, int], Awaitable[Any]]) -> Any:
    """Run ``test(metrics, port)`` against a started endpoint on an ephemeral port."""
    async def body() -> Any:
        metrics = Metrics()
        port = await metrics.start("127.0.0.1", 0)
        try:
            return await test(metrics, port)
        finally:
            await metrics.stop()
    return asyncio.run(body())


def test_scrape_exposes_every_metric_with_the_ares_prefix() -> None:
    """A fresh endpoint serves all the daemon's metric names in the Prometheus text format."""
    async def test(metrics: Metrics, port: int) -> tuple[int, str, str]:
        return await scrape(port)
    status, ctype, text = serving(test)
    assert status == 200 and ctype.startswith("text/plain; version=")
    names = {f.name for f in text_string_to_metric_families(text)
             if not f.name.endswith("_created")}  # prometheus_client's creation-time series
    assert names == {"ares_frames", "ares_rejected_frames", "ares_gaps", "ares_reconnects",
                     "ares_predictions", "ares_drift_events", "ares_engine_lag_seconds",
                     "ares_fit_duration_seconds", "ares_model_version", "ares_feature_psi",
                     "ares_equity",
                     "ares_position", "ares_heartbeat_timestamp_seconds", "ares_feed_connected",
                     "ares_healthy", "ares_checkpoint_failures", "ares_rolling_log_loss",
                     "ares_rolling_accuracy", "ares_drift_age_seconds", "ares_champion_age_seconds",
                     "ares_validation_promoted", "ares_features_drifting"}
    got = samples(text)
    assert got[("ares_frames_total", ())] == 0
    assert got[("ares_feed_connected", ())] == 0
    assert got[("ares_healthy", ())] == 1 and got[("ares_checkpoint_failures", ())] == 0


def test_values_and_labels_after_updates() -> None:
    """Engine totals, gauges and histograms scrape back with the values and labels set."""
    async def test(metrics: Metrics, port: int) -> Samples:
        metrics.observe_engine(Counter(frames=1200, rejected=3, gaps=2, feed_disconnected=1,
                                       duplicates=9),
                               predictions={"BTCUSDT": 40, "ETHUSDT": 38},
                               drifts={"BTCUSDT": 1, "ETHUSDT": 0})
        for lag in (0.0002, 0.003, 0.003, 7.0):
            metrics.observe_lag(lag)
        metrics.observe_fit(0.68)
        metrics.set_model_version("BTCUSDT", "xgboost", 3)
        metrics.set_equity(10_012.5)
        metrics.set_position("BTCUSDT", 0.015)
        metrics.heartbeat(1_700_000_000.5)
        metrics.set_feed_connected(True)
        metrics.set_health(False, 2)
        return samples((await scrape(port))[2])
    got = serving(test)
    assert got[("ares_healthy", ())] == 0 and got[("ares_checkpoint_failures", ())] == 2
    assert got[("ares_frames_total", ())] == 1200
    assert got[("ares_rejected_frames_total", ())] == 3
    assert got[("ares_gaps_total", ())] == 2
    assert got[("ares_reconnects_total", ())] == 1
    assert got[("ares_predictions_total", (("symbol", "BTCUSDT"),))] == 40
    assert got[("ares_predictions_total", (("symbol", "ETHUSDT"),))] == 38
    assert got[("ares_drift_events_total", (("symbol", "BTCUSDT"),))] == 1
    assert got[("ares_engine_lag_seconds_count", ())] == 4
    assert got[("ares_engine_lag_seconds_bucket", (("le", "0.0005"),))] == 1
    assert got[("ares_engine_lag_seconds_bucket", (("le", "0.005"),))] == 3
    assert got[("ares_engine_lag_seconds_bucket", (("le", "5.0"),))] == 3
    assert got[("ares_engine_lag_seconds_bucket", (("le", "+Inf"),))] == 4
    assert got[("ares_fit_duration_seconds_sum", ())] == pytest.approx(0.68)
    assert got[("ares_model_version", (("kind", "xgboost"), ("symbol", "BTCUSDT")))] == 3
    assert got[("ares_equity", ())] == 10_012.5
    assert got[("ares_position", (("symbol", "BTCUSDT"),))] == 0.015
    assert got[("ares_heartbeat_timestamp_seconds", ())] == 1_700_000_000.5
    assert got[("ares_feed_connected", ())] == 1


def test_lag_buckets_span_half_a_millisecond_to_five_seconds() -> None:
    """The engine-lag histogram's buckets run from 0.5 ms to 5 s."""
    assert LAG_BUCKETS[0] == 0.0005 and LAG_BUCKETS[-1] == 5.0
    assert list(LAG_BUCKETS) == sorted(LAG_BUCKETS)


def test_on_scrape_callbacks_hand_over_live_totals() -> None:
    """A callback registered with on_scrape runs per scrape, so each scrape sees fresh totals."""
    counts: Counter[str] = Counter()

    async def test(metrics: Metrics, port: int) -> list[float]:
        metrics.on_scrape(lambda: metrics.observe_engine(counts))
        seen = []
        for n in (5, 12):
            counts["frames"] = n
            seen.append(samples((await scrape(port))[2])[("ares_frames_total", ())])
        return seen
    assert serving(test) == [5, 12]


def test_heartbeat_defaults_to_now() -> None:
    """heartbeat() without a time records the current wall time."""
    metrics = Metrics()
    before = time.time()
    metrics.heartbeat()
    value = samples(metrics.exposition().decode())[("ares_heartbeat_timestamp_seconds", ())]
    assert before <= value <= time.time()


def test_registries_are_independent() -> None:
    """Two Metrics in one process neither clash on names nor share values."""
    a, b = Metrics(), Metrics()
    a.set_equity(1.0)
    b.set_equity(2.0)
    assert samples(a.exposition().decode())[("ares_equity", ())] == 1.0
    assert samples(b.exposition().decode())[("ares_equity", ())] == 2.0
    registry = CollectorRegistry()
    assert Metrics(registry).registry is registry


def test_other_paths_are_not_found() -> None:
    """Only /metrics is served."""
    async def test(metrics: Metrics, port: int) -> int:
        return (await scrape(port, "/"))[0]
    assert serving(test) == 404


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_non_loopback_hosts_are_refused(host: str) -> None:
    """Binding anything but loopback needs allow_remote=True, and the error says so."""
    with pytest.raises(MetricsError, match="allow_remote=True") as info:
        asyncio.run(Metrics().start(host, 0))
    assert isinstance(info.value, AresError)
    check_host(host, allow_remote=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    """Every loopback spelling is accepted without opt-in."""
    check_host(host)


def test_busy_port_is_a_clear_error() -> None:
    """A port already taken raises MetricsError naming host and port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsError, match=f"127.0.0.1:{port}"):
            asyncio.run(Metrics().start("127.0.0.1", port))


def test_serve_runs_until_cancelled_then_closes_the_port() -> None:
    """serve() answers scrapes while it runs and frees its port when its task is cancelled."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def body() -> int:
        metrics = Metrics()
        task = asyncio.create_task(metrics.serve("127.0.0.1", port))
        await until(lambda: metrics._runner is not None or task.done(), what="it to listen")
        status = (await scrape(port))[0]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        with pytest.raises(aiohttp.ClientConnectionError):
            await scrape(port)
        return status
    assert asyncio.run(body()) == 200


def test_stop_is_idempotent_and_start_twice_is_refused() -> None:
    """stop() on a stopped endpoint does nothing; a second start() while running is an error."""
    async def body() -> None:
        metrics = Metrics()
        await metrics.stop()
        await metrics.start("127.0.0.1", 0)
        with pytest.raises(MetricsError, match="already running"):
            await metrics.start("127.0.0.1", 0)
        await metrics.stop()
        await metrics.stop()
    asyncio.run(body())


def test_feature_psi_gauge_per_symbol_and_feature() -> None:
    """ares_feature_psi carries the last PSI of each (symbol, feature) the daemon set."""
    async def test(metrics: Metrics, port: int) -> Samples:
        metrics.set_feature_psi("BTCUSDT", "flow_imb", 0.31)
        metrics.set_feature_psi("BTCUSDT", "vol", 0.02)
        return samples((await scrape(port))[2])
    got = serving(test)
    assert got[("ares_feature_psi", (("feature", "flow_imb"), ("symbol", "BTCUSDT")))] == 0.31
    assert got[("ares_feature_psi", (("feature", "vol"), ("symbol", "BTCUSDT")))] == 0.02


def _flipped_tape(n: int, start: int) -> list[Trade]:
    """Trades whose price pattern differs from tests.test_engine's tape: the online loss drifts."""
    out = []
    for ident in range(start, start + n):
        ts = (ident // 3) * 1_000_000_000 + (ident % 3) * 1000
        price = 100.0 - (ident % 5) * 0.2 + (ident % 11) * 0.07
        out.append(Trade("BTCUSDT", ts, ts + 5, ident, price, 1.0, ident % 2 == 1, True))
    return out


def test_model_quality_gauges_equal_the_engines_own_scores() -> None:
    """After a fed engine, the rolling log loss and accuracy per model and the drift age scrape
    back equal to the engine's own numbers (under one window: its whole-run means)."""
    engine, _ = run(trades(3000) + _flipped_tape(3000, 3001), config(drift={"delta": 0.9},
                                                                  learner={"rolling_window": 5000}))
    st = engine.state["BTCUSDT"]
    assert st.learner.n_drifts >= 1 and st.labelled < st.learner.rolling_window

    async def test(metrics: Metrics, port: int) -> Samples:
        metrics.on_scrape(lambda: metrics.observe_models(engine, now=engine.last_ts))
        return samples((await scrape(port))[2])
    got = serving(test)

    def gauge(name: str, model: str) -> float:
        return got[(name, (("model", model), ("symbol", "BTCUSDT")))]
    n = st.labelled
    assert gauge("ares_rolling_log_loss", "ensemble") == pytest.approx(st.ensemble_loss / n)
    assert gauge("ares_rolling_log_loss", "baseline") == pytest.approx(st.base_loss / n)
    assert gauge("ares_rolling_accuracy", "ensemble") == pytest.approx(st.hits / n)
    assert gauge("ares_rolling_log_loss", "river") == pytest.approx(
        st.learner.metrics()["logloss_rolling"])
    assert not any(k[0] == "ares_rolling_log_loss" and ("model", "booster") in k[1] for k in got)
    age = got[("ares_drift_age_seconds", (("symbol", "BTCUSDT"),))]
    assert age == (engine.last_ts - st.last_drift) / 1e9 and age > 0


def test_rolling_scores_forget_labels_older_than_the_window() -> None:
    """Past the window the rolling log loss is the mean of the newest ``window`` labels only."""
    engine, _ = run(trades(3000), config(learner={"rolling_window": 50}))
    st = engine.state["BTCUSDT"]
    metrics = Metrics()
    metrics.observe_models(engine)
    got = samples(metrics.exposition().decode())
    assert st.rolling is not None and st.labelled > 50
    key = ("ares_rolling_log_loss", (("model", "river"), ("symbol", "BTCUSDT")))
    assert got[key] == pytest.approx(st.learner.metrics()["logloss_rolling"])
    assert got[key] != pytest.approx(st.model_loss / st.labelled)


def test_champion_validation_and_feature_drift_gauges(tmp_path: Path) -> None:
    """The champion's age, the last validation's decision (challenger as a label) and the
    features drifting scrape back from the batch learner's own state."""
    learner, _ = _learner(tmp_path)
    _validate(learner, DAY, _outcome({"prior": 0.60, "river": 0.59, "xgb_refit": 0.55,
                                      "champion": 0.60}, {"river": WIN, "xgb_refit": WIN},
                                     promote="xgb_refit", refit=_booster()))
    _validate(learner, 2 * DAY, _outcome({"prior": 0.60, "river": 0.59, "champion": 0.60},
                                         {"river": WIN}))
    done: Future[Any] = Future()
    done.set_result([FeatureDrift("a", 0.9, 0.5, 100, 100, True, 0.25),
                     FeatureDrift("b", 0.1, 0.1, 100, 100, False, 0.25)])
    sb = learner.symbols["BTCUSDT"]
    learner.pending.append(Pending("BTCUSDT", "features", done, 2 * DAY, 2 * DAY,
                                   {"model_id": sb.champion.model_id if sb.champion else 0}))
    learner.apply_due(2 * DAY)
    engine, _ = run(trades(30))
    engine.batch = learner
    metrics = Metrics()
    metrics.observe_models(engine, now=3 * DAY)
    got = samples(metrics.exposition().decode())
    learner.stop()
    btc = (("symbol", "BTCUSDT"),)
    assert sb.champion_since[-1][0] == DAY
    assert got[("ares_champion_age_seconds", btc)] == 2 * DAY / 1e9
    assert got[("ares_validation_promoted", (("challenger", "xgb_refit"), *btc))] == 0
    assert got[("ares_features_drifting", btc)] == 1 == learner.features_drifting["BTCUSDT"]
