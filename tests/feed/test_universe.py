"""The symbol universe: a list, a file, or every TRADING symbol of a quote from exchangeInfo
(the real python-binance client against the local exchange)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ares_stream.config import Config, load_config, replace_values
from ares_stream.errors import ConfigError
from ares_stream.feed.universe import resolve
from ares_stream.sim.exchange import LocalExchange, Tape, many_symbols
from ares_stream.sim.exchange.rest import NOT_TRADING
from ares_stream.sim.simulator import write_recording
from tests.conftest import DEADLINE


def feed(**keys: Any) -> Config:
    return replace_values(Config(), {"feed": keys})


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, DEADLINE))


def test_a_list_stays_and_a_file_is_read(tmp_path: Path) -> None:
    """A list is the universe as it is; a file gives its symbols (comments, blank lines and
    repeats skipped, upper-cased) and the config says the list it resolved to."""
    listed = feed(symbols=["BTCUSDT"])
    assert run(resolve(listed)) is listed
    path = tmp_path / "symbols.txt"
    path.write_text("# the majors\nbtcusdt\n\nETHUSDT   # second\nBTCUSDT\n  solusdt\n")
    cfg = run(resolve(feed(symbols_file=str(path))))
    assert cfg.feed.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert cfg.feed.symbols_file == "" and cfg.feed.symbols_quote == ""


def test_file_errors_name_the_file_and_the_line(tmp_path: Path) -> None:
    """A missing file, an empty one and a line that is not a symbol are errors naming them."""
    missing = tmp_path / "nope.txt"
    with pytest.raises(ConfigError, match=r"feed.symbols_file = '.*nope.txt': cannot read it"):
        run(resolve(feed(symbols_file=str(missing))))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ConfigError, match="names no symbol"):
        run(resolve(feed(symbols_file=str(empty))))
    bad = tmp_path / "bad.txt"
    bad.write_text("BTCUSDT\nETH USDT\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: 'ETH USDT' is not a symbol"):
        run(resolve(feed(symbols_file=str(bad))))


def test_config_keys_are_validated(tmp_path: Path) -> None:
    """Two ways of naming the symbols, a lower-case quote and a stream cap Binance does not
    allow are refused at load, naming the key."""
    path = tmp_path / "c.toml"
    path.write_text('[feed]\nsymbols = ["BTCUSDT"]\nsymbols_file = "s.txt"\n')
    with pytest.raises(ConfigError, match=r"feed.symbols and feed.symbols_file both name"):
        load_config(path)
    for keys, message in (({"symbols_quote": "usdt"}, "feed.symbols_quote = 'usdt'"),
                          ({"streams_per_connection": 1025}, "streams_per_connection = 1025"),
                          ({"streams_per_connection": 1}, "below the 2 streams of one symbol")):
        with pytest.raises(ConfigError, match=message):
            feed(**keys)
    assert feed(streams_per_connection=2).feed.streams_per_connection == 2


def test_every_trading_symbol_of_a_quote_from_exchange_info(tmp_path: Path) -> None:
    """symbols_quote takes the TRADING symbols of that quote from exchangeInfo, through
    python-binance: not the other quote's, not those in BREAK, HALT or auction; a quote with
    none says so."""
    path = tmp_path / "one.gz"
    write_recording(path, seconds=60, seed=3, symbol="SIMUSDT")
    tape = many_symbols(Tape.from_recording([path]), 9, quotes=("USDT", "USDT", "BTC"), frames=5)

    async def main() -> None:
        async with LocalExchange(tape) as ex:
            cfg = await resolve(feed(symbols_quote="USDT", rest_url=ex.rest_url))
            assert cfg.feed.symbols == tuple(s for s in tape.symbols if s.endswith("USDT"))
            assert len(cfg.feed.symbols) == 6 and "LUNAUSDT" in dict(NOT_TRADING)
            btc = await resolve(feed(symbols_quote="BTC", rest_url=ex.rest_url))
            assert btc.feed.symbols == ("S0002BTC", "S0005BTC", "S0008BTC")
            with pytest.raises(ConfigError, match="no TRADING symbol quoted in EUR"):
                await resolve(feed(symbols_quote="EUR", rest_url=ex.rest_url))
            assert ex.stats["rest_requests"] == 3
        with pytest.raises(ConfigError, match=r"exchangeInfo from .* failed"):
            await resolve(feed(symbols_quote="USDT", rest_url=ex.rest_url))  # it is gone

    run(main())
