"""The symbol universe: which symbols the daemon subscribes, resolved once at start.

``[feed]`` names it one of three ways: ``symbols`` (a list), ``symbols_file`` (one symbol a line,
``#`` starts a comment, blank lines skipped) or ``symbols_quote`` (every symbol ``exchangeInfo``
lists as TRADING with that quote asset, asked through python-binance by
:meth:`~ares_stream.feed.backfill.Backfiller.exchange_info`). :func:`resolve` returns the config
with the list in ``feed.symbols`` (and the file or quote cleared): what the run subscribed is
what its stored config says.

>>> read_symbols(["# majors", "btcusdt", "", "ETHUSDT  # second", "BTCUSDT"], "list")
('BTCUSDT', 'ETHUSDT')
>>> info = {"symbols": [
...     {"symbol": "BTCUSDT", "status": "TRADING", "quoteAsset": "USDT"},
...     {"symbol": "LUNAUSDT", "status": "BREAK", "quoteAsset": "USDT"},
...     {"symbol": "ETHBTC", "status": "TRADING", "quoteAsset": "BTC"}]}
>>> trading_symbols(info, "USDT")
('BTCUSDT',)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from ares_stream.config import Config, replace_values
from ares_stream.errors import ConfigError

__all__ = ["read_symbols", "resolve", "trading_symbols"]

log = structlog.get_logger(__name__)

_SYMBOL = re.compile(r"[A-Z0-9\-_.]{1,20}")  # Binance's symbol pattern


def read_symbols(lines: Iterable[str], source: str) -> tuple[str, ...]:
    """The symbols of ``lines`` (upper case, first occurrence kept); a line that is not a
    symbol is an error naming ``source`` and the line number."""
    out: dict[str, None] = {}
    for number, line in enumerate(lines, 1):
        symbol = line.partition("#")[0].strip().upper()
        if not symbol:
            continue
        if _SYMBOL.fullmatch(symbol) is None:
            raise ConfigError(f"{source}:{number}: {line.strip()!r} is not a symbol (one a line, "
                              "# for comments)")
        out.setdefault(symbol)
    return tuple(out)


def trading_symbols(info: Mapping[str, Any], quote: str) -> tuple[str, ...]:
    """The symbols ``exchangeInfo`` lists with status TRADING and quote asset ``quote``."""
    return tuple(s["symbol"] for s in info.get("symbols", [])
                 if s.get("status") == "TRADING" and s.get("quoteAsset") == quote)


def _from_file(path: str) -> tuple[str, ...]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"feed.symbols_file = {path!r}: cannot read it "
                          f"({exc.strerror or exc})") from None
    return read_symbols(text.splitlines(), path)


async def _from_exchange(config: Config) -> tuple[str, ...]:
    from ares_stream.feed.backfill import Backfiller  # REST only when a quote asks for it

    f = config.feed
    _, rest_url, market = f.urls()
    try:
        async with Backfiller(rest_url, market=market) as rest:
            info = await rest.exchange_info()
    except Exception as exc:  # a network or HTTP error of any kind: start-up cannot go on
        raise ConfigError(f"feed.symbols_quote = {f.symbols_quote!r}: exchangeInfo from "
                          f"{rest_url} failed: {type(exc).__name__}: {exc}") from None
    return trading_symbols(info, f.symbols_quote)


async def resolve(config: Config) -> Config:
    """``config`` with ``feed.symbols`` the universe it names (unchanged when it is a list)."""
    f = config.feed
    if f.symbols_file:
        symbols, source = _from_file(f.symbols_file), f"file {f.symbols_file}"
        if not symbols:
            raise ConfigError(f"feed.symbols_file = {f.symbols_file!r} names no symbol")
    elif f.symbols_quote:
        symbols, source = await _from_exchange(config), f"quote {f.symbols_quote}"
        if not symbols:
            raise ConfigError(f"feed.symbols_quote = {f.symbols_quote!r}: exchangeInfo lists "
                              f"no TRADING symbol quoted in {f.symbols_quote}")
    else:
        return config
    log.info("universe_resolved", source=source, symbols=len(symbols), first=symbols[:5])
    return replace_values(config, {"feed": {"symbols": list(symbols), "symbols_file": "",
                                            "symbols_quote": ""}}, source=source)
