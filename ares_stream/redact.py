"""A structlog processor that keeps API keys, secrets and signatures out of every log line.

Three nets, applied to every value of the event dict, recursively through dicts, lists and
tuples:

- **by key**: the value of a key named like a credential (``api_key``, ``apikey``, ``secret``,
  ``api_secret``, ``password``, ``token``, ``signature``, ``authorization``, ``x-mbx-apikey``; any
  case, ``-`` or ``_``, also as a word of a longer name such as ``binance_api_key``) becomes
  ``"***"`` whatever its type, in a dict and in a ``(name, value)`` tuple (query params);
- **by value**: a secret the daemon registered with :func:`register_secret` (the API key and secret
  it loaded from the environment) is cut out of any string it appears in;
- **by shape**: in any text, ``signature=…`` / ``apiKey=…`` query parameters and
  ``X-MBX-APIKEY: …`` / ``Authorization: …`` headers keep their name and lose their value.

Redaction is idempotent (a redacted dict redacts to itself). It must run after
``format_exc_info`` (so a traceback is text by then) and before the renderer; when it meets an
``exc_info`` that is still unformatted, it formats it itself, so a traceback cannot slip past.

>>> register_secret("k3yK3yK3yK3yK3y")
>>> redact_secrets(None, "info", {"event": "order_sent", "symbol": "BTCUSDT",
...     "api_key": "k3yK3yK3yK3yK3y", "url": "/api/v3/order?signature=9f2c"})
{'event': 'order_sent', 'symbol': 'BTCUSDT', 'api_key': '***', 'url': '/api/v3/order?signature=***'}
>>> redacting("sent with key k3yK3yK3yK3yK3y")
'sent with key ***'
>>> clear_secrets()
"""

from __future__ import annotations

import functools
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["MASK", "MIN_SECRET_LENGTH", "clear_secrets", "is_secret_key", "redact_secrets",
           "redact_value", "redacting", "register_secret"]

MASK = "***"
MIN_SECRET_LENGTH = 8  # shorter values are not registered: they would mask ordinary text

_SECRET_KEY = re.compile(
    r"(?:^|_)(?:api_?key|api_?secret|secret(?:_?key)?|password|passwd|token|signature|"
    r"authorization|x_mbx_apikey)(?:_|$)"
)
# name=value in a query string or a form body; the value runs to the next separator
_QUERY = re.compile(r"(?i)\b(signature|api_?key|api_?secret|secret|password|token)=(?!\*\*\*)"
                    r"[^&\s\"'#,;)}\]]+")
# "X-MBX-APIKEY: value" or "Authorization: Bearer value", also as a dict repr ('X-MBX-APIKEY': 'v')
_HEADER = re.compile(r"(?i)\b(x-mbx-apikey|authorization)(['\"]?\s*[:=]\s*['\"]?)"
                     r"(?!\*\*\*)(?:bearer\s+|basic\s+)?[^\s\"',;)}\]]+")

_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Cut ``value`` out of every later log line (values under 8 characters are ignored)."""
    global _secret_re
    if not value or len(value) < MIN_SECRET_LENGTH or value in _secrets:
        return
    _secrets.add(value)
    ordered = sorted(_secrets, key=len, reverse=True)  # a longer secret wins over its prefix
    _secret_re = re.compile("|".join(re.escape(s) for s in ordered))


def clear_secrets() -> None:
    """Forget every registered secret (tests; a daemon keeps its secrets registered)."""
    global _secret_re
    _secrets.clear()
    _secret_re = None


@functools.lru_cache(maxsize=4096)  # log keys repeat: decide each name once
def is_secret_key(key: object) -> bool:
    """Whether a key names a credential.

    >>> [is_secret_key(k) for k in ("apiKey", "X-MBX-APIKEY", "binance_api_secret", "symbol")]
    [True, True, True, False]
    >>> [is_secret_key(k) for k in ("tokens_seen", "price", "signature")]
    [False, False, True]
    """
    if not isinstance(key, str):
        return False
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)  # apiKey -> api_Key
    return _SECRET_KEY.search(snake.lower().replace("-", "_")) is not None


def redacting(text: str) -> str:
    """``text`` with registered secrets, signatures and key headers replaced by ``***``.

    >>> redacting("GET /api/v3/account?timestamp=1&signature=ab12 headers {'X-MBX-APIKEY': 'zz'}")
    "GET /api/v3/account?timestamp=1&signature=*** headers {'X-MBX-APIKEY': '***'}"
    """
    if _secret_re is not None:
        text = _secret_re.sub(MASK, text)
    text = _QUERY.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def redact_value(value: Any) -> Any:
    """A value with every secret inside it replaced (containers are copied, never mutated)."""
    if isinstance(value, str):
        return redacting(value)
    if isinstance(value, dict):
        return {k: MASK if is_secret_key(k) and value[k] is not None else redact_value(v)
                for k, v in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and is_secret_key(value[0]):
        return (value[0], MASK)  # a (name, value) pair, as in a list of query params
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    if isinstance(value, BaseException):
        text = repr(value)
        cleaned = redacting(text)
        return value if cleaned == text else cleaned
    return value


def redact_secrets(logger: Any, method_name: str,
                   event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The structlog processor: every value of ``event_dict`` through :func:`redact_value`."""
    if event_dict.get("exc_info"):
        event_dict = structlog.processors.format_exc_info(logger, method_name, event_dict)
    for key, value in event_dict.items():
        event_dict[key] = (MASK if is_secret_key(key) and value is not None
                           else redact_value(value))
    return event_dict
