"""The webhook notifier against a real aiohttp server on 127.0.0.1: each format's body, dedup
and rate limits, webhooks that fail, hang or refuse without ever blocking the loop, the log hook
and its redaction, and the paper daemon alerting its start and a drift end to end."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from structlog.testing import capture_logs

from ares_stream import logs
from ares_stream.config import AlertsConfig, Config, ConfigError, as_dict, replace_values
from ares_stream.daemon import alerts
from ares_stream.daemon.alerts import Alerts, Limiter, Webhook
from ares_stream.sim.exchange import Faults, Tape
from tests.conftest import until, wait_until
from tests.daemon.test_ingest import exchange_in_thread

SYMBOL = "SIMUSDT"


class Receiver:
    """An aiohttp server on its own thread and loop: /ok answers 200, /fail 500, /hang never
    (within a test); every request's path and JSON body is kept in ``got``."""

    def __init__(self) -> None:
        self.got: list[tuple[str, Any]] = []
        self.url = ""
        self._stop = threading.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        self.got.append((request.path, await request.json()))
        if request.path.startswith("/fail"):
            return web.Response(status=500)
        if request.path.startswith("/hang"):
            await asyncio.sleep(3600)
        return web.json_response({"ok": True})

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies posted to ``path``."""
        return [b for p, b in list(self.got) if p == path]

    @contextlib.contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        thread.start()
        wait_until(lambda: self.url, what="the webhook server to listen")
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=10)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        while not self._stop.is_set():
            await asyncio.sleep(0.02)
        await runner.cleanup()


def closed_port() -> int:
    """A loopback port nothing listens on (a connection to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cfg(**kw: Any) -> AlertsConfig:
    return AlertsConfig(**{"min_interval_s": 0.0, "dedup_s": 0.0, "max_per_minute": 1000,
                           "timeout_s": 0.5, **kw})


def test_each_format_posts_its_own_body() -> None:
    """Generic JSON carries event, symbol, ts, text and the details; Telegram chat_id + text;
    Slack text; Discord content."""
    with Receiver().running() as rx:
        hooks = [Webhook(rx.url + "/json"), Webhook(rx.url + "/tg", "telegram", "-1001"),
                 Webhook(rx.url + "/slack", "slack"), Webhook(rx.url + "/discord", "discord")]

        async def main() -> None:
            a = Alerts(cfg(), hooks)
            await a.start()
            a.notify("drift", "BTCUSDT", {"detector": "adwin", "action": "reset"})
            await until(lambda: len(rx.got) == 4, what="four posts")
            await a.stop()
        asyncio.run(main())
        text = "ares-stream drift BTCUSDT: detector=adwin, action=reset"
        [generic] = rx.bodies("/json")
        assert generic["event"] == "drift" and generic["symbol"] == "BTCUSDT"
        assert generic["text"] == text and generic["action"] == "reset"
        assert isinstance(generic["ts"], int) and generic["suppressed"] == 0
        assert rx.bodies("/tg") == [{"chat_id": "-1001", "text": text}]
        assert rx.bodies("/slack") == [{"text": text}]
        assert rx.bodies("/discord") == [{"content": text}]


def test_limiter_dedups_per_kind_and_symbol_and_caps_each_kind_per_minute() -> None:
    """The same kind and symbol within dedup_s is suppressed and counted into the next one
    sent; another symbol is not a duplicate; past max_per_minute a kind waits for the minute."""
    lim = Limiter(dedup_s=10, max_per_minute=3)
    assert lim.admit("gap", "A", 0) == 0 and lim.admit("gap", "A", 5) is None
    assert lim.admit("gap", "B", 5) == 0 and lim.admit("lag", "", 5) == 0
    assert lim.admit("gap", "C", 6) == 0 and lim.admit("gap", "D", 7) is None  # 3 a minute
    assert lim.admit("gap", "A", 30) is None  # dedup passed, the minute not
    assert lim.admit("gap", "A", 61) == 2  # both suppressed ones of (gap, A) are told


def test_duplicates_go_out_once_and_the_next_counts_them() -> None:
    """Five identical alerts within dedup_s: one POST; after the window the next one says +4."""
    with Receiver().running() as rx:
        async def main() -> Alerts:
            a = Alerts(cfg(dedup_s=0.3), [Webhook(rx.url + "/slack", "slack")])
            await a.start()
            for _ in range(5):
                a.notify("gap", "ETHUSDT", {"kind": "aggTrade"})
            await until(lambda: len(rx.got) == 1)
            await asyncio.sleep(0.35)  # the dedup window passes (time is what is tested)
            a.notify("gap", "ETHUSDT", {"kind": "aggTrade"})
            await until(lambda: len(rx.got) == 2)
            await a.stop()
            return a
        a = asyncio.run(main())
    assert rx.bodies("/slack")[1]["text"].endswith("(+4 suppressed)")
    assert a.counts["suppressed"] == 4 and a.counts["sent"] == 2


def test_failing_hanging_and_refusing_webhooks_never_block_the_loop() -> None:
    """A 500, a hang and a refused connection beside a good webhook: the good one gets every
    alert, each bad one is logged once per episode and counted, and a 10 ms ticker on the loop
    is never held for the webhooks' timeouts."""
    with Receiver().running() as rx:
        hooks = [Webhook(rx.url + "/ok"), Webhook(rx.url + "/fail"), Webhook(rx.url + "/hang"),
                 Webhook(f"http://127.0.0.1:{closed_port()}/x")]
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        async def main() -> Alerts:
            a = Alerts(cfg(timeout_s=0.3), hooks)
            await a.start()
            tick = asyncio.create_task(ticker())
            for i in range(6):
                a.notify("lag", str(i), {"lag_ms": 900})
            await until(lambda: len(rx.bodies("/ok")) == 6, what="six alerts on the good hook")
            await until(lambda: a.counts["failed"] >= 3 * 6, what="every failure counted")
            tick.cancel()
            await a.stop(timeout=0.1)
            return a
        with capture_logs() as logged:
            a = asyncio.run(main())
    failing = [e for e in logged if e["event"] == "alert_webhook_failing"]
    assert sorted(e["webhook"] for e in failing) == [1, 2, 3]  # once each, not per alert
    assert {e["error"] for e in failing} == {"HTTP 500", "TimeoutError", "ClientConnectorError"}
    assert a.counts["sent"] == 6 and len(gaps) > 10
    # a notifier that waited for the webhooks would hold the loop for the six alerts' timeouts
    # (6 x 0.3 s on the hanging one) in a row; the bound leaves a busy machine's own hiccups
    assert max(gaps) < 1.5, f"the loop stalled {max(gaps):.3f} s"


def test_the_log_hook_alerts_logged_events_and_no_url_reaches_a_log_line() -> None:
    """Installed by start(): a logged drift_detected becomes an alert; other events do not; the
    webhook URL (a Telegram token in it) is masked wherever it would be logged."""
    with Receiver().running() as rx:
        url = rx.url + "/bot123456:SECRETTOKENabc/sendMessage"
        out = io.StringIO()
        logs.configure(stream=out, json=True)
        log = structlog.get_logger("test")

        async def main() -> None:
            a = await alerts.start(cfg(webhooks=({"url": url, "format": "telegram",
                                                  "chat_id": 42},)))
            assert a is not None
            log.info("bar_closed", symbol="BTCUSDT")
            log.info("drift_detected", symbol="BTCUSDT", detector="features")
            log.warning("something_odd", where=url)
            await until(lambda: rx.got, what="the drift alert")
            await alerts.stop(a)
        asyncio.run(main())
    [(path, sent)] = rx.got
    assert path.endswith("/sendMessage")
    assert sent == {"chat_id": "42",
                    "text": "ares-stream drift BTCUSDT: detector=features"}
    assert "SECRETTOKEN" not in out.getvalue() and '"event": "something_odd"' in out.getvalue()


def test_every_alerted_event_is_still_logged_somewhere() -> None:
    """Each log event the hook turns into an alert is still logged by the package (a renamed
    event would silently stop its alert)."""
    package = Path(alerts.__file__).resolve().parents[1]
    source = "\n".join(p.read_text() for p in package.rglob("*.py") if p.name != "alerts.py")
    for event in alerts.EVENTS:
        assert f'"{event}"' in source, f"nothing logs {event} any more"


def test_webhooks_come_from_the_environment_and_are_validated() -> None:
    """url_env and chat_id_env read the environment; a bad entry is a config error naming it;
    a stored config masks every URL."""
    c = cfg(webhooks=({"url_env": "HOOK", "format": "telegram", "chat_id_env": "CHAT"},
                      "https://hooks.slack.com/services/T/B/x"))
    hooks = alerts.webhooks_of(c, {"HOOK": "https://api.telegram.org/botX/sendMessage",
                                   "CHAT": "7"})
    assert hooks[0] == Webhook("https://api.telegram.org/botX/sendMessage", "telegram", "7")
    assert hooks[1].format == "json"
    for bad in ("ftp://x", {"url": "https://x", "format": "teams"},
                {"url": "https://x", "format": "telegram"}, {"uri": "https://x"}):
        try:
            replace_values(Config(), {"alerts": {"webhooks": [bad]}})
        except ConfigError as exc:
            assert "alerts.webhooks[0]" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")
    good = replace_values(Config(),
                          {"alerts": {"webhooks": ["https://a.b/secret", {"url": "https://c/d",
                                                                          "format": "slack"}]}})
    assert as_dict(good)["alerts"]["webhooks"] == ["***", {"url": "***", "format": "slack"}]


DAEMON_CONFIG = """
[bars]
interval = "1s"
[labels]
horizon = 1
threshold_bps = 1.0
[drift]
delta = 0.9             # on this tape the online loss drifts up (twice in a replay)
[batch]
enabled = false
[metrics]
port = 0
[feed]
silence_timeout_s = 2.0
recordings_dir = "{tmp}/recordings"
[alerts]
webhooks = ["{url}/generic", {{ url = "{url}/slack", format = "slack" }}]
min_interval_s = 0.0
"""


def paper_daemon(urls: dict[str, str], tmp: Path) -> subprocess.Popen[str]:
    """The paper daemon on the local exchange, its log (JSON lines) in ``tmp/daemon.log``."""
    return subprocess.Popen(
        [sys.executable, "daemon.py", "--paper", "--symbols", SYMBOL, "--streams",
         "aggTrade,bookTicker", "--ws-url", urls["ws"], "--rest-url", urls["rest"],
         "--db", str(tmp / "paper.db"), "--config", str(tmp / "daemon.toml"), "--log-json",
         "--checkpoint-every", "0.5"], cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL, stderr=(tmp / "daemon.log").open("a"), text=True)


def checkpoints(db: Path) -> int:
    """Checkpoints in the daemon's database so far (0 before it has the table)."""
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return int(conn.execute("select count(*) from checkpoints").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_the_paper_daemon_alerts_its_start_a_drift_and_its_restart(tape: Tape,
                                                                  tmp_path: Path) -> None:
    """The paper daemon against the local exchange posts its start and a drift of the online
    loss to both webhooks; killed and started again it posts a start that says it resumed; its
    log never shows the URLs."""
    with Receiver().running() as rx, exchange_in_thread(tape, rate=400, faults=Faults()) as urls:
        (tmp_path / "daemon.toml").write_text(DAEMON_CONFIG.format(tmp=tmp_path, url=rx.url))

        def starts() -> list[Any]:
            return [b for b in rx.bodies("/generic") if b["event"] == "start"]

        def drifts() -> list[Any]:
            return [b for b in rx.bodies("/generic") if b["event"] == "drift"]
        proc = paper_daemon(urls, tmp_path)
        try:
            wait_until(lambda: starts() or proc.poll() is not None, what="the start alert")
            wait_until(lambda: drifts() or proc.poll() is not None, what="a drift alert")
            wait_until(lambda: checkpoints(tmp_path / "paper.db") > 0, what="a checkpoint")
            proc.kill()
            proc.wait(timeout=60)
            proc = paper_daemon(urls, tmp_path)
            wait_until(lambda: len(starts()) >= 2 or proc.poll() is not None,
                       what="the restart alert")
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    err = (tmp_path / "daemon.log").read_text()
    assert [(b["mode"], b["resumed"]) for b in starts()] == [("paper", False), ("paper", True)], \
        err[-3000:]
    assert starts()[1]["text"].startswith("ares-stream start: mode=paper")
    assert drifts()[0]["symbol"] == SYMBOL and drifts()[0]["action"]
    assert any(b["text"].startswith(f"ares-stream drift {SYMBOL}: ") for b in rx.bodies("/slack"))
    assert [b["text"][:18] for b in rx.bodies("/slack")].count("ares-stream start:") == 2
    assert rx.url not in err and "Traceback" not in err
    assert all(json.loads(line) for line in err.splitlines() if line.startswith("{"))
