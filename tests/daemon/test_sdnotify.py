"""sd_notify over real unix datagram sockets: path, abstract, none, vanished, full."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ares_stream.daemon.sdnotify import Notifier, watchdog_interval


def _bind(address: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.settimeout(2.0)
    return server


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    server = _bind(path)
    yield path, server
    server.close()


def test_ready_with_status_is_one_datagram(listener: tuple[str, socket.socket]) -> None:
    """ready("...") sends READY=1 and STATUS= as two lines of a single datagram."""
    path, server = listener
    Notifier(path).ready("warming up")
    assert server.recv(4096) == b"READY=1\nSTATUS=warming up"


def test_each_message_arrives_with_its_bytes(listener: tuple[str, socket.socket]) -> None:
    """status, watchdog, stopping and a bare ready each arrive as their own exact datagram."""
    path, server = listener
    notifier = Notifier(path)
    notifier.ready()
    notifier.status("trading BTCUSDT")
    notifier.watchdog()
    notifier.stopping("flushing")
    notifier.stopping()
    received = [server.recv(4096) for _ in range(5)]
    assert received == [b"READY=1", b"STATUS=trading BTCUSDT", b"WATCHDOG=1",
                        b"STOPPING=1\nSTATUS=flushing", b"STOPPING=1"]


def test_reloading_carries_the_monotonic_clock(listener: tuple[str, socket.socket]) -> None:
    """reloading() sends RELOADING=1 with MONOTONIC_USEC read from CLOCK_MONOTONIC."""
    path, server = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier(path).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = server.recv(4096).split(b"\n")
    assert first == b"RELOADING=1"
    key, value = second.split(b"=")
    assert key == b"MONOTONIC_USEC" and before <= int(value) <= after


def test_generic_send_and_newline_flattening(listener: tuple[str, socket.socket]) -> None:
    """send(**fields) keeps field order and turns a newline inside a value into a space."""
    path, server = listener
    assert Notifier(path).send(STATUS="line one\nline two", ERRNO=5) is True
    assert server.recv(4096) == b"STATUS=line one line two\nERRNO=5"


def test_abstract_namespace_socket() -> None:
    """A NOTIFY_SOCKET starting with "@" names an abstract socket ("\\0" + the rest)."""
    name = f"ares-stream-test-{uuid.uuid4().hex}"
    server = _bind("\0" + name)
    try:
        notifier = Notifier("@" + name)
        assert notifier.enabled
        notifier.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"
    finally:
        server.close()


def test_default_reads_notify_socket(listener: tuple[str, socket.socket],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an argument the notifier sends to $NOTIFY_SOCKET."""
    path, server = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    Notifier().ready()
    assert server.recv(4096) == b"READY=1"


@pytest.mark.parametrize("value", [None, ""])
def test_no_socket_is_a_no_op(value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset or empty NOTIFY_SOCKET gives a disabled notifier whose calls do nothing."""
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    notifier = Notifier()
    assert notifier.enabled is False
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping()
    notifier.reloading()
    assert notifier.send(READY=1) is False


def test_vanished_socket_does_not_raise_and_logs_once(tmp_path: Path) -> None:
    """A socket that went away makes sends return False, logged once, never an exception."""
    path = str(tmp_path / "gone")
    server = _bind(path)
    notifier = Notifier(path)
    assert notifier.send(READY=1) is True
    server.close()
    os.unlink(path)
    with capture_logs() as logs:
        assert notifier.send(WATCHDOG=1) is False
        notifier.watchdog()
        notifier.stopping()
    assert [entry["event"] for entry in logs] == ["sd_notify_failed"]
    assert logs[0]["socket"] == path


def test_full_receiver_never_blocks(listener: tuple[str, socket.socket]) -> None:
    """A receiver that stops reading makes a send fail at once instead of blocking the loop."""
    path, _server = listener
    notifier = Notifier(path)
    started = time.monotonic()
    results = [notifier.send(STATUS="x" * 1000) for _ in range(5000)]
    assert False in results
    # a blocking send would wait forever for a reader that never comes; 5,000 sends that fail
    # at once take milliseconds: the bound only has to tell the two apart
    assert time.monotonic() - started < 60.0


def test_watchdog_interval_is_half_the_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """WATCHDOG_USEC=30 s (for our PID, or without a PID) gives a 15 s ping interval."""
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0


@pytest.mark.parametrize("env", [
    {},
    {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "0"},
    {"WATCHDOG_USEC": "0"},
    {"WATCHDOG_USEC": "-5"},
    {"WATCHDOG_USEC": "soon"},
])
def test_watchdog_interval_none(env: dict[str, str]) -> None:
    """No watchdog, another process's watchdog, or a malformed period gives None."""
    assert watchdog_interval(env) is None
