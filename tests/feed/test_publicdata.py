"""Public-data files: every layout in ../shared/data, ZIP/gzip/plain, ms/µs, bad and cut rows."""

from __future__ import annotations

import gzip
import zipfile
import zlib
from itertools import pairwise
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ares_stream.errors import SourceError
from ares_stream.events import NS_PER_MS, NS_PER_S, Kline, Trade
from ares_stream.feed.publicdata import PublicDataSource
from tests.conftest import shared_path

KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore\n"
)
KLINE_US = "1735689600000000,4.15070000,4.15870000,4.15060000,4.15540000,539.23000000,1735693199999999,2240.39860900,13,401.82000000,1669.98121300,0\n"  # noqa: E501 (a real row)
KLINE_US_2 = "1735693200000000,4.15540000,4.16000000,4.15000000,4.15900000,100.00000000,1735696799999999,415.00000000,7,50.00000000,207.00000000,0\n"  # noqa: E501
AGG_ROWS = [
    "13519807,0.00141342,23.00000000,15373518,15373518,{t},True,True\n",
    "13519808,0.00141266,54.00000000,15373519,15373519,{t},false,True\n",
]


def _write_zip(path: Path, member: str, text: str) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, text)
    return path


def test_xrpeth_aggtrades_ms_tape() -> None:
    """The complete XRPETH tape: 12,477 agg trades, ids 13519807–13532283 without gaps, ms → ns."""
    source = PublicDataSource(shared_path("aggtrades/XRPETH-aggTrades-2019-10-11_2019-10-13.csv"))
    trades = list(source)
    assert (source.kind, source.symbol, len(trades)) == ("aggTrades", "XRPETH", 12_477)
    assert [t.trade_id for t in trades] == list(range(13519807, 13532284))
    first = trades[0]
    assert first == Trade(
        "XRPETH",
        1570752011620 * NS_PER_MS,
        1570752011620 * NS_PER_MS,
        13519807,
        0.00141342,
        23.0,
        True,
        True,
    )
    assert trades[-1].ts_event == 1570965568844 * NS_PER_MS
    assert source.stats == {
        "rows": 12_477,
        "events": 12_477,
        "header_rows": 0,
        "bad_rows": 0,
        "truncated_rows": 0,
    }


def test_btcusdt_aggtrades_us() -> None:
    """The 2026 BTCUSDT file is in µs: 5,000 agg trades from 00:00:00.039409 on."""
    source = PublicDataSource(shared_path("aggtrades/BTCUSDT-aggTrades-2026-01-01-first5000.csv"))
    trades = list(source)
    assert len(trades) == 5_000 and all(t.is_agg for t in trades)
    assert trades[0].ts_event == trades[0].ts_init == 1767225600039409000
    assert (trades[1].price, trades[1].qty, trades[1].is_buyer_maker) == (87648.22, 0.00013, False)
    assert trades[-1].trade_id - trades[0].trade_id == 4_999


def test_trx_trade_stream_csv() -> None:
    """The flattened @trade CSV: receive time is ts_init, trade time ts_event, 1/0 booleans."""
    source = PublicDataSource(shared_path("trades/TRXUSDT-spot-trade-stream-2025-03-04.csv"))
    trades = list(source)
    assert (source.kind, source.symbol, len(trades)) == ("trades", "TRXUSDT", 10_000)
    assert trades[0] == Trade(
        "TRXUSDT", 1741046401271497000, 1741046401272286000, 348656870, 0.2312, 2619.4, True, False
    )
    assert trades[1].is_buyer_maker is False
    assert all(t.ts_init >= t.ts_event for t in trades)


def test_one_minute_candles() -> None:
    """130,708 one-minute candles: bar end is ts_event, close time one ms before it, no gaps."""
    source = PublicDataSource(shared_path("klines/BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"))
    bars = list(source)
    assert (source.kind, source.interval, len(bars)) == ("klines", "1m", 130_708)
    first = bars[0]
    assert first == Kline(
        "BTCUSDT",
        1747699260 * NS_PER_S,
        1747699260 * NS_PER_S,
        "1m",
        1747699200 * NS_PER_S,
        1747699259999 * NS_PER_MS,
        105573.73,
        105597.1,
        105554.31,
        105554.32,
        10.82647,
        None,
        None,
        True,
    )
    assert all(b.ts_event - a.ts_event == 60 * NS_PER_S for a, b in pairwise(bars))
    assert source.stats["header_rows"] == 1 and source.stats["events"] == 130_708


def test_hourly_candles_keep_the_exchange_outages() -> None:
    """58,419 hourly candles with their 28 real outage gaps (128 missing bars) left as they are."""
    bars = list(PublicDataSource(shared_path("klines/BTCUSDT-1h-2017-08-17_2024-04-21.csv.gz")))
    hour = 3600 * NS_PER_S
    jumps = [b.open_time - a.open_time for a, b in pairwise(bars)]
    assert len(bars) == 58_419 and bars[0].interval == "1h"
    assert sum(j > hour for j in jumps) == 28
    assert sum(j // hour - 1 for j in jumps) == 128


def test_zip_klines_without_header_in_us(tmp_path: Path) -> None:
    """A spot ZIP (12 columns, no header, µs) gives trade count and taker-buy volume."""
    path = _write_zip(
        tmp_path / "ADABKRW-1h-2025-01.zip", "ADABKRW-1h-2025-01.csv", KLINE_US + KLINE_US_2
    )
    source = PublicDataSource(path)
    bars = list(source)
    assert (source.symbol, source.interval, len(bars)) == ("ADABKRW", "1h", 2)
    start = 1735689600 * NS_PER_S
    assert (bars[0].open_time, bars[0].ts_event) == (start, start + 3600 * NS_PER_S)
    assert bars[0].close_time == start + 3600 * NS_PER_S - NS_PER_MS
    assert (bars[0].trade_count, bars[0].taker_buy_volume) == (13, 401.82)


def test_zip_klines_with_header_interval_from_open_times(tmp_path: Path) -> None:
    """A futures-style ZIP with a header and a name without interval infers it from open times."""
    path = _write_zip(tmp_path / "export.zip", "export.csv", KLINE_HEADER + KLINE_US + KLINE_US_2)
    source = PublicDataSource(path, symbol="ADABKRW")
    assert (source.kind, source.interval) == ("klines", "1h")
    assert [b.trade_count for b in source] == [13, 7]
    assert source.stats["header_rows"] == 1


def test_single_row_interval_from_close_time(tmp_path: Path) -> None:
    """With one µs row and no name to go by, the interval comes from the close time."""
    path = tmp_path / "k.csv"
    path.write_text(KLINE_US)
    assert PublicDataSource(path, symbol="ADABKRW").interval == "1h"


def test_zip_trades_with_header(tmp_path: Path) -> None:
    """A USD-M trades ZIP with a header (six columns, lower-case booleans) reads as trades."""
    text = "id,price,qty,quote_qty,time,is_buyer_maker\n28457,4.00000100,12.00000000,48.00,1499865549590,true\n"  # noqa: E501
    source = PublicDataSource(_write_zip(tmp_path / "BTCUSDT-trades-2017-07.zip", "t.csv", text))
    assert list(source) == [
        Trade(
            "BTCUSDT",
            1499865549590 * NS_PER_MS,
            1499865549590 * NS_PER_MS,
            28457,
            4.000001,
            12.0,
            True,
            False,
        )
    ]


def test_headerless_spot_trades_by_name_and_by_columns(tmp_path: Path) -> None:
    """Spot trades without header are told apart from agg trades by name, else by column 5."""
    row = "51175358,17.80180000,5.69000000,101.29224200,1735689600010866,True,True\n"
    named = tmp_path / "SOLUSDT-trades-2025-01-01.csv"
    named.write_text(row)
    unnamed = tmp_path / "x.csv"
    unnamed.write_text(row)
    for path in (named, unnamed):
        source = PublicDataSource(path, symbol="SOLUSDT")
        (trade,) = list(source)
        assert (source.kind, trade.trade_id, trade.ts_event) == (
            "trades",
            51175358,
            1735689600010866000,
        )
        assert trade.is_agg is False


def test_ms_and_us_files_give_the_same_times(tmp_path: Path) -> None:
    """The same agg trades written in ms and in µs decode to the same ns times."""
    ms = tmp_path / "XRPETH-aggTrades-ms.csv"
    us = tmp_path / "XRPETH-aggTrades-us.csv"
    ms.write_text("".join(r.format(t=1570752011620) for r in AGG_ROWS))
    us.write_text("".join(r.format(t=1570752011620000) for r in AGG_ROWS))
    assert list(PublicDataSource(ms)) == list(PublicDataSource(us))
    assert [t.is_buyer_maker for t in PublicDataSource(ms)] == [True, False]


def test_symbol_argument_and_missing_symbol(tmp_path: Path) -> None:
    """The argument names the symbol; a file whose name does not is an error without it."""
    path = tmp_path / "trades.csv"
    path.write_text(AGG_ROWS[0].format(t=1570752011620))
    with pytest.raises(SourceError, match="cannot tell the symbol"):
        PublicDataSource(path)
    assert PublicDataSource(path, symbol="XRPETH").symbol == "XRPETH"
    assert next(iter(PublicDataSource(path, symbol="XRPETH"))).symbol == "XRPETH"


def test_bad_row_names_file_and_line_or_is_counted(tmp_path: Path) -> None:
    """A bad row raises `path:line: reason`; with skip_bad it is counted and skipped."""
    path = tmp_path / "XRPETH-aggTrades-x.csv"
    rows = [r.format(t=1570752011620) for r in AGG_ROWS]
    path.write_text(
        rows[0]
        + "13519809,nan,1.0,1,1,1570752011620,True,True\n"
        + "13519810,0.1,1.0,1,1,1570752011620,maybe,True\n"
        + rows[1]
    )
    with pytest.raises(SourceError, match=rf"^{path}:2: .*nan"):
        list(PublicDataSource(path))
    source = PublicDataSource(path, skip_bad=True)
    assert [t.trade_id for t in source] == [13519807, 13519808]
    assert source.stats["bad_rows"] == 2 and source.stats["rows"] == 4


def test_bad_boolean_and_short_row(tmp_path: Path) -> None:
    """Booleans other than True/False/true/false/1/0, and rows missing columns, are bad rows."""
    path = tmp_path / "XRPETH-aggTrades-x.csv"
    good = AGG_ROWS[0].format(t=1570752011620)
    path.write_text(good + "13519810,0.1,1.0,1,1,1570752011620,maybe,True\n")
    with pytest.raises(SourceError, match=rf"^{path}:2: not a boolean: 'maybe'"):
        list(PublicDataSource(path))
    path.write_text(good + "13519810,0.1,1.0\n" + good)
    with pytest.raises(SourceError, match=rf"^{path}:2: too few columns"):
        list(PublicDataSource(path))


def test_truncated_final_row_warns_and_stops(tmp_path: Path) -> None:
    """A plain CSV whose last row was cut (no newline, too few columns) yields the rows before."""
    path = tmp_path / "XRPETH-aggTrades-x.csv"
    path.write_text(AGG_ROWS[0].format(t=1570752011620) + "13519808,0.0014")
    source = PublicDataSource(path)
    with capture_logs() as logs:
        assert [t.trade_id for t in source] == [13519807]
    assert [(e["event"], e["line"]) for e in logs] == [("publicdata_truncated", 2)]
    assert source.stats["truncated_rows"] == 1 and source.stats["events"] == 1


def test_last_row_without_newline_is_read_when_whole(tmp_path: Path) -> None:
    """A complete last row without a final newline is a row, not a truncation."""
    path = tmp_path / "XRPETH-aggTrades-x.csv"
    path.write_text("".join(r.format(t=1570752011620) for r in AGG_ROWS).rstrip("\n"))
    source = PublicDataSource(path)
    assert len(list(source)) == 2 and source.warnings == []


def test_gzip_csv_cut_mid_stream(tmp_path: Path) -> None:
    """A .csv.gz cut by a crash yields the rows it still holds, then warns."""
    rows = "".join(
        f"{1747699200000 + 60_000 * i},1.{i:05d},2.0,0.5,1.5,{i}.25\n" for i in range(20_000)
    )
    full = gzip.compress(("open_time,open,high,low,close,volume\n" + rows).encode())
    path = tmp_path / "BTCUSDT-1m-cut.csv.gz"
    path.write_bytes(full[: len(full) // 2])
    whole = zlib.decompressobj(31).decompress(path.read_bytes()).count(b"\n") - 1
    source = PublicDataSource(path)
    with capture_logs() as logs:
        bars = list(source)
    assert len(bars) == whole > 0
    assert bars[-1].volume == (whole - 1) + 0.25
    assert [e["event"] for e in logs] == ["publicdata_truncated"]


def test_monthly_klines_end_at_the_next_month(tmp_path: Path) -> None:
    """A `1mo` candle opened on 1 Dec 2024 ends at 1 Jan 2025, 00:00 UTC."""
    path = tmp_path / "BTCUSDT-1mo-2024-12.csv"
    path.write_text("1733011200000,1,2,0.5,1.5,10,1735689599999,0,3,4,0,0\n")
    (bar,) = list(PublicDataSource(path))
    assert bar.ts_event == 1735689600 * NS_PER_S and bar.interval == "1mo"
    assert bar.close_time == bar.ts_event - NS_PER_MS


def test_unknown_layouts_are_source_errors(tmp_path: Path) -> None:
    """Too few columns, an unknown header or a ZIP with two files are named errors."""
    narrow = tmp_path / "BTCUSDT-aggTrades-x.csv"
    narrow.write_text("1,2,3\n")
    with pytest.raises(SourceError, match="3 columns do not fit a aggTrades file"):
        PublicDataSource(narrow)
    header = tmp_path / "BTCUSDT-x.csv"
    header.write_text("id,price,when\n1,2,3\n")
    with pytest.raises(SourceError, match="lacks qty, time, maker"):
        PublicDataSource(header)
    two = tmp_path / "BTCUSDT-1m-x.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", KLINE_US)
        archive.writestr("b.csv", KLINE_US)
    with pytest.raises(SourceError, match="expected one CSV inside the ZIP, found 2"):
        PublicDataSource(two)
