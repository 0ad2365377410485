"""Alerts without Prometheus: the daemon's notable events POSTed as JSON to webhooks.

The events: a drift event (``drift_detected``: the loss's ADWIN or the features' PSI), a
promotion (``model_promoted``), a manual promotion or rollback, with who and why
(``manual_decision``), a kill switch (``kill_switch_tripped``), a gap that stayed unfilled
(``feed_gap``), a lag episode (``engine_lagging``) and a (re)start (``daemon_started``).
One hook sees them all: :meth:`Alerts.processor`, a structlog processor the daemon puts in the
chain (after the redaction, before the renderer) — where an event is logged it is alerted, with
no other edit. Anything else may call :meth:`Alerts.notify` (from any thread).

Policy (:class:`Limiter`, pure): the same kind and symbol within ``dedup_s`` is sent once, and
the next one sent says how many were suppressed; at most ``max_per_minute`` of a kind go out in
a minute. Each webhook has its own bounded queue and sender task (aiohttp, ``timeout_s``), and
its POSTs are at least ``min_interval_s`` apart: a slow, failing or refusing webhook delays only
its own queue (full: the alert is dropped and counted), never the event loop nor the daemon. A
failure is counted and logged once per episode (``alert_webhook_failing`` … ``_recovered``) by
webhook index and format: URLs (a Telegram bot token is in its URL) never reach a log line, and
are registered with :mod:`ares_stream.redact` so a stray one is masked too.

>>> lim = Limiter(dedup_s=60, max_per_minute=2)
>>> [lim.admit("drift", "BTCUSDT", t) for t in (0.0, 1.0, 2.0)]
[0, None, None]
>>> lim.admit("drift", "BTCUSDT", 61.0)  # the two suppressed ones are told
2
>>> body(Webhook("https://hooks.slack.com/x", "slack"), Alert("gap", "BTCUSDT", 0, "gap"))
{'text': 'gap'}
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from ares_stream.config import AlertsConfig
from ares_stream.redact import redact_value, register_secret

__all__ = ["EVENTS", "FORMATS", "Alert", "Alerts", "Limiter", "Webhook", "body", "start",
           "stop", "text_of", "webhooks_of"]

log = structlog.get_logger("ares_stream.daemon.alerts")

FORMATS = ("json", "telegram", "slack", "discord")
EVENTS = {  # log event -> alert kind
    "drift_detected": "drift", "model_promoted": "promotion", "kill_switch_tripped": "kill_switch",
    "feed_gap": "gap", "engine_lagging": "lag", "daemon_started": "start",
    "manual_decision": "manual",
}
QUEUE = 100  # alerts waiting per webhook; more are dropped (counted)
_NOT_FIELDS = {"event", "level", "timestamp", "logger", "symbol"}


@dataclass(frozen=True)
class Webhook:
    """Where alerts go: ``url`` (a secret: never logged) in ``format``; Telegram's ``chat_id``."""
    url: str
    format: str = "json"
    chat_id: str = ""


@dataclass(frozen=True)
class Alert:
    """One alert: its kind, symbol ("" for the daemon), wall time (ns), text and details."""
    kind: str
    symbol: str
    ts: int
    text: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    suppressed: int = 0  # alerts of this kind and symbol suppressed since the last one sent


def body(hook: Webhook, alert: Alert) -> dict[str, Any]:
    """The JSON body of ``alert`` in the webhook's format."""
    if hook.format == "telegram":
        return {"chat_id": hook.chat_id, "text": alert.text}
    if hook.format == "slack":
        return {"text": alert.text}
    if hook.format == "discord":
        return {"content": alert.text}
    return {**alert.fields, "event": alert.kind, "symbol": alert.symbol, "ts": alert.ts,
            "text": alert.text, "suppressed": alert.suppressed}


def text_of(kind: str, symbol: str, fields: Mapping[str, Any], suppressed: int) -> str:
    """One line for a chat: ``ares-stream drift BTCUSDT: action=reset (+2 suppressed)``."""
    details = ", ".join(f"{k}={v}" for k, v in fields.items())
    head = f"ares-stream {kind}" + (f" {symbol}" if symbol else "")
    more = f" (+{suppressed} suppressed)" if suppressed else ""
    return f"{head}: {details}{more}" if details else head + more


class Limiter:
    """Dedup per (kind, symbol) within ``dedup_s`` and at most ``max_per_minute`` per kind.
    :meth:`admit` returns the suppressed count to report with a sent alert, or None: suppress."""

    def __init__(self, dedup_s: float, max_per_minute: int) -> None:
        self.dedup_s = dedup_s
        self.max_per_minute = max_per_minute
        self._last: dict[tuple[str, str], float] = {}
        self._sent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._suppressed: collections.Counter[tuple[str, str]] = collections.Counter()

    def admit(self, kind: str, symbol: str, now: float) -> int | None:
        """Send (the count suppressed before it) or suppress (None) an alert at ``now`` (s)."""
        key, sent = (kind, symbol), self._sent[kind]
        while sent and now - sent[0] >= 60.0:
            sent.popleft()
        last = self._last.get(key)
        if (last is not None and now - last < self.dedup_s) or len(sent) >= self.max_per_minute:
            self._suppressed[key] += 1
            return None
        self._last[key] = now
        sent.append(now)
        return self._suppressed.pop(key, 0)


def webhooks_of(cfg: AlertsConfig, env: Mapping[str, str] = os.environ) -> list[Webhook]:
    """The configured webhooks (a string: generic JSON; a table: url or url_env, format,
    chat_id or chat_id_env); one whose environment variable is unset is left out (logged)."""
    hooks = []
    for i, entry in enumerate(cfg.webhooks):
        spec = {"url": entry} if isinstance(entry, str) else dict(entry)
        url = spec.get("url") or env.get(spec.get("url_env", ""), "")
        chat = str(spec.get("chat_id") or env.get(spec.get("chat_id_env", ""), ""))
        if not url:
            log.warning("alert_webhook_skipped", webhook=i, reason="its url_env is not set")
            continue
        register_secret(url)
        hooks.append(Webhook(url, spec.get("format", "json"), chat))
    return hooks


class Alerts:
    """The notifier: :meth:`notify` (or the log hook) → limiter → one queue and sender per
    webhook. ``counts``: sent, failed, dropped (a full queue), suppressed."""

    def __init__(self, cfg: AlertsConfig, hooks: list[Webhook]) -> None:
        self.cfg = cfg
        self.hooks = hooks
        self.limiter = Limiter(cfg.dedup_s, cfg.max_per_minute)
        self.counts: collections.Counter[str] = collections.Counter()
        self._queues: list[asyncio.Queue[Alert]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    async def start(self) -> None:
        """Start a sender task per webhook on the running loop."""
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s))
        self._queues = [asyncio.Queue(QUEUE) for _ in self.hooks]
        self._tasks = [asyncio.create_task(self._sender(i), name=f"alerts-{i}")
                       for i in range(len(self.hooks))]

    async def stop(self, timeout: float = 2.0) -> None:
        """Let the queues drain for up to ``timeout`` s, then cancel the senders."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues)), timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    def notify(self, kind: str, symbol: str = "",
               fields: Mapping[str, Any] | None = None) -> None:
        """Alert ``kind`` for ``symbol`` with ``fields`` (details); callable from any thread,
        never raises nor waits."""
        fields = dict(fields or {})
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._thread:
            self._enqueue(kind, symbol, fields)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._enqueue, kind, symbol, fields)

    def processor(self, logger: Any, method: str,
                  event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """The structlog hook: an event of :data:`EVENTS` becomes an alert; the line is
        unchanged, and nothing here can break logging."""
        kind = EVENTS.get(str(event_dict.get("event")))
        if kind is not None:
            try:
                fields = {k: v for k, v in event_dict.items() if k not in _NOT_FIELDS}
                self.notify(kind, str(event_dict.get("symbol") or ""), fields)
            except Exception:  # an alert must never break a log line
                self.counts["errors"] += 1
        return event_dict

    def _enqueue(self, kind: str, symbol: str, fields: dict[str, Any]) -> None:
        suppressed = self.limiter.admit(kind, symbol, time.monotonic())
        if suppressed is None:
            self.counts["suppressed"] += 1
            return
        fields = redact_value(fields)
        alert = Alert(kind, symbol, time.time_ns(), text_of(kind, symbol, fields, suppressed),
                      fields, suppressed)
        for queue in self._queues:
            try:
                queue.put_nowait(alert)
            except asyncio.QueueFull:
                self.counts["dropped"] += 1

    async def _sender(self, i: int) -> None:
        hook, queue, failing = self.hooks[i], self._queues[i], 0
        while True:
            alert = await queue.get()
            try:
                error = await self._post(hook, alert)
            finally:
                queue.task_done()
            failing = self._episode(i, hook, failing, error)
            await asyncio.sleep(self.cfg.min_interval_s)

    async def _post(self, hook: Webhook, alert: Alert) -> str:
        """POST one alert; "" when the webhook took it, else what went wrong (no URL in it)."""
        try:
            async with self._session.post(hook.url, json=body(hook, alert)) as resp:
                await resp.read()
                return "" if resp.status < 300 else f"HTTP {resp.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return type(exc).__name__

    def _episode(self, i: int, hook: Webhook, failing: int, error: str) -> int:
        """Count the outcome; log the first failure of an episode and its end."""
        self.counts["failed" if error else "sent"] += 1
        if error and not failing:
            log.warning("alert_webhook_failing", webhook=i, format=hook.format, error=error)
        elif not error and failing:
            log.info("alert_webhook_recovered", webhook=i, format=hook.format, failed=failing)
        return failing + 1 if error else 0


async def start(cfg: AlertsConfig) -> Alerts | None:
    """The daemon's notifier, started and hooked into structlog; None without webhooks."""
    hooks = webhooks_of(cfg)
    if not hooks:
        return None
    alerts = Alerts(cfg, hooks)
    await alerts.start()
    processors = list(structlog.get_config()["processors"])
    structlog.configure(processors=[*processors[:-1], alerts.processor, *processors[-1:]])
    log.info("alerts_started", webhooks=[h.format for h in hooks])
    return alerts


async def stop(alerts: Alerts | None) -> None:
    """Unhook ``alerts`` from structlog and stop it (pending alerts get a moment to go out)."""
    if alerts is None:
        return
    processors = [p for p in structlog.get_config()["processors"] if p != alerts.processor]
    structlog.configure(processors=processors)
    await alerts.stop()
