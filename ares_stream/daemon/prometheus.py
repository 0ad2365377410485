"""The Prometheus endpoint: the daemon's counters, gauges and histograms on 127.0.0.1:9464/metrics.

Every :class:`Metrics` has its own ``CollectorRegistry`` (never the process-global one), so tests
and several engines in one process do not clash. The endpoint is a small aiohttp app served on the
daemon's own event loop (no extra thread); it binds a loopback address only, unless the caller
passes ``allow_remote=True``.

**Counters come from the engine's totals.** The engine keeps plain ``Counter`` dicts and must
not pay for Prometheus per frame, so the counters (``ares_frames_total``,
``ares_rejected_frames_total``, ``ares_gaps_total``, ``ares_reconnects_total``,
``ares_predictions_total{symbol}``, ``ares_drift_events_total{symbol}``) are exposed by a custom
collector from the last totals given to :meth:`Metrics.observe_engine`. The daemon hands it the
live counters at scrape time::

    metrics.on_scrape(lambda: metrics.observe_engine(
        engine.counts,
        predictions={s: st.predictions for s, st in engine.state.items()},
        drifts={s: st.learner.n_drifts for s, st in engine.state.items()}))

Totals only grow within a process; a restart starts them at 0 again, which Prometheus' ``rate()``
reads as a counter reset. The engine lag histogram is fed every frame, so it is a
:class:`LagHistogram` that buffers lags and bins them with numpy in batches (a list append per
frame instead of a locked ``Histogram.observe``). The rest are ordinary metrics set as things
happen: the fit duration histogram, model versions, equity, position, heartbeat and
feed-connected gauges, and the health gauges (``ares_healthy``: 0 while the daemon is unhealthy —
a stalled feed, or a checkpoint that failed; ``ares_checkpoint_failures``: failed in a row).
The model-quality gauges (rolling log loss and accuracy per model, drift and champion ages, the
last validation's decision, features drifting) are read from the engine at scrape time by
:meth:`Metrics.observe_models` (:mod:`ares_stream.daemon.quality`).

>>> m = Metrics()
>>> m.observe_engine({"frames": 10, "rejected": 1, "feed_disconnected": 2}, {"BTCUSDT": 4})
>>> m.set_feed_connected(True)
>>> text = m.exposition().decode()
>>> "ares_frames_total 10.0" in text, 'ares_predictions_total{symbol="BTCUSDT"} 4.0' in text
(True, True)
>>> "ares_feed_connected 1.0" in text
True
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ares_stream.daemon.quality import ModelQuality
from ares_stream.errors import AresError

if TYPE_CHECKING:
    from ares_stream.engine import Engine

__all__ = ["DEFAULT_PORT", "FIT_BUCKETS", "LAG_BUCKETS", "LagHistogram", "Metrics",
           "MetricsError", "check_host"]

DEFAULT_PORT = 9464
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

# engine.counts key -> (metric name, help); reconnects are the feed's "disconnected" notices
_ENGINE_COUNTERS = {
    "frames": ("ares_frames", "Raw frames the engine took from its source."),
    "rejected": ("ares_rejected_frames", "Frames rejected as malformed (counted and skipped)."),
    "gaps": ("ares_gaps", "Gaps detected in the feed (missing ids or bars)."),
    "feed_disconnected": ("ares_reconnects", "Websocket disconnections (each one reconnects)."),
}


class MetricsError(AresError):
    """The metrics endpoint cannot bind: a non-loopback host without opt-in, or a busy port."""


def check_host(host: str, allow_remote: bool = False) -> None:
    """Refuse a host that is not a loopback address unless ``allow_remote``.

    >>> check_host("127.0.0.1"); check_host("::1"); check_host("localhost")
    >>> check_host("0.0.0.0")
    Traceback (most recent call last):
    ...
    ares_stream.daemon.prometheus.MetricsError: metrics host '0.0.0.0' is not a loopback address: the endpoint is unauthenticated; bind 127.0.0.1, or pass allow_remote=True to expose it on purpose
    """  # noqa: E501 (a doctest's expected output is one line)
    if allow_remote or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise MetricsError(
            f"metrics host {host!r} is not a loopback address: the endpoint is "
            "unauthenticated; bind 127.0.0.1, or pass allow_remote=True to expose it on purpose")


class _EngineTotals(Collector):
    """Exposes the engine totals last given to :meth:`Metrics.observe_engine`."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.predictions: dict[str, int] = {}
        self.drifts: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        """The engine totals as counter families (predictions and drift events per symbol)."""
        for key, (name, doc) in _ENGINE_COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=self.counts.get(key, 0))
        for name, doc, per_symbol in (
            ("ares_predictions", "Predictions made, per symbol.", self.predictions),
            ("ares_drift_events", "Drift events (ADWIN, error went up), per symbol.", self.drifts),
        ):
            family = CounterMetricFamily(name, doc, labels=["symbol"])
            for symbol, value in sorted(per_symbol.items()):
                family.add_metric([symbol], value)
            yield family


class LagHistogram(Collector):
    """``ares_engine_lag_seconds``: a Prometheus histogram fed per frame in nanoseconds, binned
    in batches of ``batch`` (and at every scrape), so the hot path pays one list append.

    >>> h = LagHistogram(batch=2)
    >>> h.add_ns(200_000); h.add_ns(3_000_000); h.observe(7.0)
    >>> h.count                             # the third waits for the next batch or scrape
    2
    >>> h.drain(); h.count, round(h.sum, 4), int(h.counts[0]), int(h.counts[-1])
    (3, 7.0032, 1, 1)
    """

    name = "ares_engine_lag_seconds"

    def __init__(self, bounds: tuple[float, ...] = LAG_BUCKETS, *, batch: int = 1024) -> None:
        self.bounds = bounds
        self._edges = np.asarray(bounds, dtype=np.float64) * 1e9  # in ns
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)  # last one: above every bound
        self.sum = 0.0  # seconds
        self.count = 0
        self._batch = batch
        self._pending: list[int] = []

    def add_ns(self, lag_ns: int) -> None:
        """Buffer one lag in ns; the buffer is binned once it holds ``batch`` lags."""
        self._pending.append(lag_ns)
        if len(self._pending) >= self._batch:
            self.drain()

    def observe(self, seconds: float) -> None:
        """Buffer one lag given in seconds (``Histogram.observe``'s signature)."""
        self.add_ns(round(seconds * 1e9))

    def drain(self) -> None:
        """Bin the buffered lags (``le`` semantics: a lag equal to a bound is in its bucket)."""
        if not self._pending:
            return
        arr = np.asarray(self._pending, dtype=np.float64)
        self._pending.clear()
        idx = np.searchsorted(self._edges, arr, side="left")
        self.counts += np.bincount(idx, minlength=len(self.counts))
        self.sum += float(arr.sum()) / 1e9
        self.count += len(arr)

    def collect(self) -> Iterator[Metric]:
        """The histogram family, after binning the buffered lags (called at every scrape)."""
        self.drain()
        cumulative = np.cumsum(self.counts)
        buckets = [(repr(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1], strict=True)]
        buckets.append(("+Inf", float(cumulative[-1])))
        yield HistogramMetricFamily(self.name, "Frame arrival to processed.", buckets=buckets,
                                    sum_value=self.sum)


class Metrics:
    """The daemon's metrics in their own registry, and the endpoint that serves them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._totals = _EngineTotals()
        self.registry.register(self._totals)
        self._quality = ModelQuality()
        self.registry.register(self._quality)
        self._on_scrape: list[Callable[[], None]] = []
        self._runner: web.AppRunner | None = None
        reg = self.registry
        self.engine_lag = LagHistogram()
        reg.register(self.engine_lag)
        self.fit_duration = Histogram("ares_fit_duration_seconds", "XGBoost fit wall time.",
                                      buckets=FIT_BUCKETS, registry=reg)
        self.model_version = Gauge("ares_model_version",
                                   "Model version by kind: river = online model replacements, "
                                   "booster = newest booster id, champion = champion id.",
                                   ["symbol", "kind"], registry=reg)
        self.feature_psi = Gauge("ares_feature_psi",
                                 "PSI of a feature's recent window against the champion's "
                                 "training window, at the last feature drift check.",
                                 ["symbol", "feature"], registry=reg)
        self.equity = Gauge("ares_equity", "Account equity, quote asset.", registry=reg)
        self.position = Gauge("ares_position", "Position, base asset.", ["symbol"], registry=reg)
        self.heartbeat_ts = Gauge("ares_heartbeat_timestamp_seconds",
                                  "Wall time of the loop's last healthy beat.", registry=reg)
        self.feed_connected = Gauge("ares_feed_connected", "1 while the websocket is connected.",
                                    registry=reg)
        self.healthy = Gauge("ares_healthy", "1 while the daemon is healthy: the pump runs, frames "
                             "come, the last checkpoint succeeded.", registry=reg)
        self.checkpoint_failures = Gauge("ares_checkpoint_failures",
                                         "Checkpoints failed in a row (0: the last succeeded).",
                                         registry=reg)
        self.healthy.set(1)

    # -- updates ------------------------------------------------------------------------------

    def observe_engine(self, counts: Mapping[str, int],
                       predictions: Mapping[str, int] | None = None,
                       drifts: Mapping[str, int] | None = None) -> None:
        """Take the engine's running totals (``engine.counts``, per-symbol predictions/drifts)."""
        totals = self._totals
        totals.counts = {key: int(counts.get(key, 0)) for key in _ENGINE_COUNTERS}
        if predictions is not None:
            totals.predictions = {s: int(n) for s, n in predictions.items()}
        if drifts is not None:
            totals.drifts = {s: int(n) for s, n in drifts.items()}

    def observe_models(self, engine: Engine, now: int | None = None) -> None:
        """Read the model-quality gauges from ``engine`` (ages at ``now``, Unix ns; default:
        the wall clock). Call it at scrape time, beside :meth:`observe_engine`."""
        self._quality.observe(engine, now)

    def on_scrape(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at the start of every scrape (to hand over fresh engine totals)."""
        self._on_scrape.append(callback)

    def observe_lag(self, seconds: float) -> None:
        """Record one frame's arrival-to-processed lag, in seconds."""
        self.engine_lag.observe(seconds)

    def observe_fit(self, seconds: float) -> None:
        """Record one XGBoost fit's wall time, in seconds."""
        self.fit_duration.observe(seconds)

    def set_model_version(self, symbol: str, kind: str, version: int) -> None:
        """Set ``symbol``'s model version of ``kind``: river, booster or champion."""
        self.model_version.labels(symbol=symbol, kind=kind).set(version)

    def set_feature_psi(self, symbol: str, feature: str, psi: float) -> None:
        """Set ``symbol``'s last PSI of ``feature`` (NaN: too few values to measure)."""
        self.feature_psi.labels(symbol=symbol, feature=feature).set(psi)

    def set_equity(self, value: float) -> None:
        """Set the account equity, in the quote asset."""
        self.equity.set(value)

    def set_position(self, symbol: str, qty: float) -> None:
        """Set ``symbol``'s position, in the base asset."""
        self.position.labels(symbol=symbol).set(qty)

    def heartbeat(self, ts: float | None = None) -> None:
        """Record a healthy beat at ``ts`` (Unix seconds; now by default)."""
        self.heartbeat_ts.set(time.time() if ts is None else ts)

    def set_health(self, healthy: bool, checkpoint_failures: int = 0) -> None:
        """Set the daemon's health (1 or 0) and its checkpoint failures in a row."""
        self.healthy.set(1 if healthy else 0)
        self.checkpoint_failures.set(checkpoint_failures)

    def set_feed_connected(self, connected: bool) -> None:
        """Set whether the websocket is connected (exposed as 1 or 0)."""
        self.feed_connected.set(1 if connected else 0)

    def exposition(self) -> bytes:
        """The text a scrape returns (after the on-scrape callbacks ran)."""
        for callback in self._on_scrape:
            callback()
        return generate_latest(self.registry)

    # -- the endpoint -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                    allow_remote: bool = False) -> int:
        """Serve ``/metrics`` on the running loop; returns the bound port (``port=0``: any)."""
        check_host(host, allow_remote)
        if self._runner is not None:
            raise MetricsError("the metrics endpoint is already running")
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise MetricsError(f"metrics endpoint cannot bind {host}:{port}: {exc.strerror}; "
                               "choose another port") from None
        self._runner = runner
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close the endpoint (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def serve(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                    allow_remote: bool = False) -> None:
        """Serve until cancelled, then close: for ``asyncio.create_task(metrics.serve())``."""
        await self.start(host, port, allow_remote=allow_remote)
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(body=self.exposition(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})
