"""The secret-redacting log processor: by key, by registered value, by shape, end to end."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from ares_stream.redact import (
    MASK,
    clear_secrets,
    is_secret_key,
    redact_secrets,
    redacting,
    register_secret,
)

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


@pytest.fixture(autouse=True)
def _secrets() -> Iterator[None]:
    """Every test starts with the daemon's two secrets registered and ends with none."""
    register_secret(API_KEY)
    register_secret(API_SECRET)
    yield
    clear_secrets()


def run(event: dict[str, Any]) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", dict(event)))


@pytest.mark.parametrize("key", ["api_key", "apikey", "apiKey", "API_KEY", "secret", "Secret",
                                 "api_secret", "password", "token", "signature", "authorization",
                                 "Authorization", "x-mbx-apikey", "X-MBX-APIKEY",
                                 "binance_api_key", "access_token", "secret_key"])
def test_values_of_credential_keys_are_masked(key: str) -> None:
    """A value under a key named like a credential becomes *** whatever its case or type."""
    assert run({"event": "x", key: "abc123"})[key] == MASK
    assert run({"event": "x", key: 12345})[key] == MASK


@pytest.mark.parametrize("key", ["symbol", "price", "qty", "event", "tokens_seen", "side",
                                 "client_id", "level", "timestamp", "keys", "monkey"])
def test_ordinary_keys_are_not_credentials(key: str) -> None:
    """Normal event fields are not mistaken for credentials."""
    assert not is_secret_key(key)


def test_normal_event_is_left_alone() -> None:
    """A bar line with symbols, prices and URLs without secrets comes out unchanged."""
    event = {"event": "bar_closed", "symbol": "BTCUSDT", "price": 64123.5, "qty": 0.01,
             "ts_event": 1_700_000_000_000_000_000, "url": "wss://stream.binance.com:9443/ws",
             "detail": "connection 3", "proba": 0.55, "levels": [1, 2.5, "x"], "ok": True,
             "none": None}
    assert run(event) == event


def test_registered_secret_is_cut_out_of_any_string() -> None:
    """The registered key and secret disappear from free text, keeping the text around them."""
    out = run({"event": "keys_loaded", "detail": f"loaded {API_KEY}, ok",
               "msg": f"HMAC with {API_SECRET} done"})
    assert out["detail"] == "loaded ***, ok"
    assert out["msg"] == "HMAC with *** done"
    assert API_KEY not in json.dumps(out)


def test_short_values_are_not_registered() -> None:
    """A value under 8 characters is ignored so it cannot mask ordinary text."""
    register_secret("BTC")
    register_secret("")
    register_secret(None)
    assert redacting("BTCUSDT") == "BTCUSDT"


def test_query_signature_and_api_key_in_text() -> None:
    """signature= and apiKey= query parameters keep their name and lose their value."""
    url = "https://api.binance.com/api/v3/order?symbol=BTCUSDT&timestamp=1&signature=7c0e9a&x=1"
    assert redacting(url) == url.replace("7c0e9a", MASK)
    assert redacting("wss://x/ws-api/v3?apiKey=abc&sig=1") == "wss://x/ws-api/v3?apiKey=***&sig=1"


@pytest.mark.parametrize("text,expected", [
    ("X-MBX-APIKEY: abcdef", "X-MBX-APIKEY: ***"),
    ("x-mbx-apikey=abcdef rest", "x-mbx-apikey=*** rest"),
    ("headers {'X-MBX-APIKEY': 'abcdef', 'Accept': 'json'}",
     "headers {'X-MBX-APIKEY': '***', 'Accept': 'json'}"),
    ('{"X-MBX-APIKEY": "abcdef"}', '{"X-MBX-APIKEY": "***"}'),
    ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: ***"),
])
def test_key_headers_in_text(text: str, expected: str) -> None:
    """An API-key or Authorization header inside text keeps its name and loses its value."""
    assert redacting(text) == expected


def test_nested_structures() -> None:
    """Secrets are found in dicts inside lists inside dicts, and tuples stay tuples."""
    event = {"event": "request", "request": {
        "headers": {"X-MBX-APIKEY": API_KEY, "Accept": "application/json"},
        "params": [("symbol", "BTCUSDT"), ("signature", "deadbeef")],
        "history": [{"url": "/api?signature=deadbeef"}, f"raw {API_SECRET}"]}}
    request = run(event)["request"]
    assert request["headers"] == {"X-MBX-APIKEY": MASK, "Accept": "application/json"}
    assert request["params"] == [("symbol", "BTCUSDT"), ("signature", MASK)]
    assert request["history"] == [{"url": "/api?signature=***"}, "raw ***"]
    assert API_KEY in json.dumps(event)  # the input is not mutated


def test_idempotent() -> None:
    """Redacting a redacted event changes nothing."""
    event = {"event": "x", "api_key": API_KEY, "u": "a?signature=1&apiKey=2",
             "h": "X-MBX-APIKEY: z", "n": [{"token": "t"}], "m": f"s {API_SECRET}"}
    once = run(event)
    assert run(once) == once
    assert redacting(redacting("Authorization: Bearer q")) == "Authorization: ***"


def test_exception_values_and_text() -> None:
    """An exception passed as a value, and exception text, lose the secret."""
    exc = RuntimeError(f"auth failed for {API_KEY}")
    out = run({"event": "order_failed", "error": exc})
    assert API_KEY not in str(out["error"]) and MASK in out["error"]
    assert redacting(f"Traceback ...\nValueError: bad key {API_KEY}") == \
        "Traceback ...\nValueError: bad key ***"
    harmless = ValueError("bad price")
    assert run({"event": "x", "error": harmless})["error"] is harmless


def test_unformatted_exc_info_is_formatted_then_redacted() -> None:
    """A traceback not yet formatted is rendered to text and redacted, never passed on raw."""
    try:
        raise ConnectionError(f"GET /api/v3/account?signature={API_SECRET}")
    except ConnectionError:
        out = run({"event": "request_failed", "exc_info": True})
    assert "exc_info" not in out
    assert "ConnectionError" in out["exception"]
    assert API_SECRET not in out["exception"]


def test_end_to_end_json_line_contains_no_secret() -> None:
    """A structlog chain with the processor before the JSON renderer prints no secret at all."""
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level,
                    structlog.processors.format_exc_info,
                    redact_secrets,
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    log = structlog.get_logger("t").bind(api_key=API_KEY)
    log.info("keys_loaded", secret=API_SECRET, symbol="BTCUSDT", price=64000.5)
    log.info("order_sent", url=f"/api/v3/order?symbol=BTCUSDT&signature={API_SECRET[:16]}",
             headers={"X-MBX-APIKEY": API_KEY})
    try:
        raise PermissionError(f"rejected key {API_KEY}")
    except PermissionError:
        log.exception("order_failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 3
    text = out.getvalue()
    for secret in (API_KEY, API_SECRET, API_SECRET[:16]):
        assert secret not in text
    assert lines[0]["symbol"] == "BTCUSDT" and lines[0]["price"] == 64000.5
    assert lines[0]["api_key"] == MASK and lines[0]["secret"] == MASK
    assert lines[1]["url"] == "/api/v3/order?symbol=BTCUSDT&signature=***"
    assert "PermissionError: rejected key ***" in lines[2]["exception"]
