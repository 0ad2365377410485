"""data.binance.vision files and candle/trade CSVs → :class:`Trade` and :class:`Kline` events.

Layouts (CSV, ``.csv.gz`` or a ZIP holding one CSV; header row optional; ms or µs timestamps):

- ``aggTrades``: ``agg_trade_id, price, qty, first_trade_id, last_trade_id, transact_time,
  is_buyer_maker[, is_best_match]`` → ``Trade(is_agg=True)``;
- ``trades``: ``id, price, qty, quote_qty, time, is_buyer_maker[, is_best_match]``, or the flattened
  trade-stream CSV (``TimestampOfReceive,...,TransactionTime,Symbol,TradeId,Price,...``) →
  ``Trade``;
- ``klines``: the 12-column layout or the candle CSV ``open_time,open,high,low,close,volume`` →
  closed ``Kline`` whose ``ts_event`` (and ``ts_init``) is the bar's end, ``open_time + interval``.

The kind comes from the header, else from the file name (``BTCUSDT-aggTrades-…``,
``BTCUSDT-trades-…``, ``BTCUSDT-1m-…``) and the column count; the symbol from the ``symbol``
argument, a ``Symbol`` column or the file name; a kline interval from the file name or the first
two open times.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = Path(tmp) / "XRPETH-aggTrades-2019-10-11.csv"
...     _ = path.write_text("13519807,0.00141342,23.0,15373518,15373518,1570752011620,True,True\\n")
...     source = PublicDataSource(path)
...     trades = list(source)
>>> source.kind, source.symbol, trades[0].ts_event, trades[0].trade_id, trades[0].is_buyer_maker
('aggTrades', 'XRPETH', 1570752011620000000, 13519807, True)
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, cast

import structlog

from ares_stream.errors import SourceError
from ares_stream.events import NS_PER_MS, NS_PER_S, Kline, Trade
from ares_stream.feed.binance import parse_decimal, to_ns

__all__ = ["INTERVALS", "PublicDataSource"]

INTERVALS: dict[str, int] = {  # kline interval → ns ("1mo" is a calendar month: 0 here)
    "1s": NS_PER_S, "1m": 60 * NS_PER_S, "3m": 180 * NS_PER_S, "5m": 300 * NS_PER_S,
    "15m": 900 * NS_PER_S, "30m": 1800 * NS_PER_S, "1h": 3600 * NS_PER_S, "2h": 7200 * NS_PER_S,
    "4h": 14400 * NS_PER_S, "6h": 21600 * NS_PER_S, "8h": 28800 * NS_PER_S,
    "12h": 43200 * NS_PER_S, "1d": 86400 * NS_PER_S, "3d": 259200 * NS_PER_S,
    "1w": 604800 * NS_PER_S, "1mo": 0,
}  # fmt: skip
_BY_LENGTH = {ns: name for name, ns in INTERVALS.items() if ns}
_BOOL = {"True": True, "true": True, "1": True, "False": False, "false": False, "0": False}
_HEADER_NAMES = {  # lower-cased header name → our field
    "agg_trade_id": "id", "aggregatetradeid": "id", "id": "id", "trade_id": "id", "tradeid": "id",
    "price": "price", "qty": "qty", "quantity": "qty", "transact_time": "time", "time": "time",
    "transactiontime": "time", "is_buyer_maker": "maker", "isbuyermarketmaker": "maker",
    "timestampofreceive": "recv", "symbol": "symbol", "open_time": "open_time", "open": "open",
    "high": "high", "low": "low", "close": "close", "volume": "volume", "close_time": "close_time",
    "count": "count", "taker_buy_volume": "taker_buy",
}  # fmt: skip
_REQUIRED = {
    "aggTrades": ("id", "price", "qty", "time", "maker"),
    "trades": ("id", "price", "qty", "time", "maker"),
    "klines": ("open_time", "open", "high", "low", "close", "volume"),
}
_HEADERLESS = {  # (kind, column count) → field columns of the data.binance.vision layouts
    ("aggTrades", 8): {"id": 0, "price": 1, "qty": 2, "time": 5, "maker": 6},
    ("aggTrades", 7): {"id": 0, "price": 1, "qty": 2, "time": 5, "maker": 6},  # futures
    ("trades", 7): {"id": 0, "price": 1, "qty": 2, "time": 4, "maker": 5},
    ("trades", 6): {"id": 0, "price": 1, "qty": 2, "time": 4, "maker": 5},  # futures
    ("klines", 12): {"open_time": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5,
                     "close_time": 6, "count": 8, "taker_buy": 9},
    ("klines", 6): {"open_time": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5},
}  # fmt: skip
_STAT_KEYS = ("rows", "events", "header_rows", "bad_rows", "truncated_rows")

log = structlog.get_logger(__name__)

Event = Trade | Kline


@dataclass(frozen=True, slots=True)
class _Layout:
    kind: str  # "aggTrades" | "trades" | "klines"
    header: bool
    cols: dict[str, int]  # our field → column index


class PublicDataSource:
    """The events of one public-data file, in file order.

    ``skip_bad=True`` counts bad rows in ``stats["bad_rows"]`` instead of raising
    :class:`SourceError`. ``kind``, ``symbol`` and (klines) ``interval`` are known after
    ``__init__``, which reads the first lines.

    >>> PublicDataSource("/no/such/BTCUSDT-1m-2025-01.zip")
    Traceback (most recent call last):
    ...
    ares_stream.errors.SourceError: no such file: /no/such/BTCUSDT-1m-2025-01.zip
    """

    __slots__ = (
        "_layout", "_where", "interval", "kind", "path", "skip_bad", "stats", "symbol", "warnings",
    )

    def __init__(
        self, path: str | Path, *, symbol: str | None = None, skip_bad: bool = False
    ) -> None:
        self.path = Path(path)
        self.skip_bad = skip_bad
        self.stats: dict[str, int] = dict.fromkeys(_STAT_KEYS, 0)
        self.warnings: list[str] = []
        head = _head_rows(self.path)
        layout = _detect_layout(self.path, head)
        if symbol:  # the argument wins over a Symbol column
            layout.cols.pop("symbol", None)
        self._layout = layout
        self._where: list[Callable[[], float]] = []
        self.kind = layout.kind
        self.symbol = symbol or _symbol(self.path, head, layout)
        self.interval = _interval(self.path, head, self._layout) if self.kind == "klines" else None

    def __iter__(self) -> Iterator[Event]:
        """Hot loop: one line → one event. Bad rows go through ``_bad_row``."""
        self.stats = stats = dict.fromkeys(_STAT_KEYS, 0)
        self.warnings = []
        convert = self._converter()
        events = 0
        lineno = stats["header_rows"] = int(self._layout.header)
        with ExitStack() as stack:
            self._where = []
            lines = _open_lines(self.path, stack, self._where)
            try:
                if lineno:
                    next(lines, None)
                for n, line in enumerate(lines, lineno + 1):
                    lineno = n
                    try:
                        event = convert(line.rstrip("\r\n").split(","))
                    except (ValueError, IndexError, KeyError) as exc:
                        if not line.endswith("\n"):  # a final row cut off mid-way
                            self._truncated(lineno, line)
                            break
                        self._bad_row(lineno, line, exc)
                        continue
                    events += 1
                    yield event
            except (EOFError, zlib.error) as exc:  # a .gz cut off by a crash
                self._truncated(lineno + 1, f"({type(exc).__name__}: {exc})")
            except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
                raise SourceError(f"{self.path}:{lineno + 1}: unreadable: {exc}") from exc
            finally:
                stats["rows"] = lineno - stats["header_rows"]
                stats["events"] = events

    def progress(self) -> float:
        """Fraction of the file read so far (0..1), for a progress display."""
        try:
            return min(self._where[-1](), 1.0) if self._where else 0.0
        except (ValueError, OSError):  # the file is closed: iteration ended
            return 1.0

    def _converter(self) -> Callable[[list[str]], Event]:
        symbol, cols = self.symbol, self._layout.cols
        if self.kind == "klines":
            return _kline_converter(symbol, self.interval or "", cols)
        return _trade_converter(symbol, cols, is_agg=self.kind == "aggTrades")

    def _bad_row(self, lineno: int, line: str, exc: Exception) -> None:
        if not line.strip():
            return  # a blank line
        reason = "too few columns" if isinstance(exc, IndexError) else str(exc)
        if isinstance(exc, KeyError):
            reason = f"not a boolean: {exc}"
        if not self.skip_bad:
            raise SourceError(f"{self.path}:{lineno}: {reason}: {line[:60]!r}") from exc
        self.stats["bad_rows"] += 1

    def _truncated(self, lineno: int, tail: str) -> None:
        self.stats["truncated_rows"] += 1
        self.warnings.append(f"{self.path}:{lineno}: truncated last row skipped: {tail[:40]!r}")
        log.warning("publicdata_truncated", file=str(self.path), line=lineno, head=tail[:40])


def _trade_converter(symbol: str, cols: dict[str, int], is_agg: bool) -> Callable[..., Trade]:
    i_id, i_price, i_qty, i_time, i_maker = (cols[k] for k in _REQUIRED["trades"])
    i_recv, i_symbol = cols.get("recv"), cols.get("symbol")
    boolean, decimal, new = _BOOL.__getitem__, parse_decimal, Trade

    def convert(f: list[str]) -> Trade:
        """One CSV row as a :class:`Trade`; ``ts_init`` is the receive time, else the trade time."""
        ts = to_ns(int(f[i_time]))
        return new(
            symbol if i_symbol is None else f[i_symbol],
            ts,
            ts if i_recv is None else to_ns(int(f[i_recv])),
            int(f[i_id]),
            decimal(f[i_price]),
            decimal(f[i_qty]),
            boolean(f[i_maker]),
            is_agg,
        )

    return convert


def _kline_converter(symbol: str, interval: str, cols: dict[str, int]) -> Callable[..., Kline]:
    i_t, i_o, i_h, i_l, i_c, i_v = (cols[k] for k in _REQUIRED["klines"])
    i_count, i_buy = cols.get("count"), cols.get("taker_buy")
    length, decimal, new = INTERVALS[interval], parse_decimal, Kline

    def convert(f: list[str]) -> Kline:
        """One CSV row as a closed :class:`Kline`, event and receive time at the candle's end."""
        start = to_ns(int(f[i_t]))
        end = start + length if length else _next_month(start)
        return new(
            symbol, end, end, interval, start, end - NS_PER_MS,
            decimal(f[i_o]), decimal(f[i_h]), decimal(f[i_l]), decimal(f[i_c]), decimal(f[i_v]),
            None if i_count is None else int(f[i_count]),
            None if i_buy is None else decimal(f[i_buy]),
        )  # fmt: skip

    return convert


def _next_month(start_ns: int) -> int:
    """The start of the calendar month after ``start_ns`` (UTC): a ``1mo`` candle's end."""
    day = datetime.fromtimestamp(start_ns // NS_PER_S, tz=UTC)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp()) * NS_PER_S


def _open_lines(
    path: Path, stack: ExitStack, progress: list[Callable[[], float]] | None = None
) -> Iterator[str]:
    """The text lines (newlines kept) of a plain, gzip (by magic bytes) or single-CSV ZIP file.

    ``progress`` receives a callable telling the fraction of the file read so far.
    """
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
        size = max(path.stat().st_size, 1)
        if magic.startswith(b"PK\x03\x04"):
            member = _zip_member(path, stack)
            binary: IO[bytes] = stack.enter_context(member)
            total = max(getattr(member, "_orig_file_size", 0) or size, 1)
            where: Callable[[], float] = lambda: member.tell() / total  # noqa: E731
        elif magic.startswith(b"\x1f\x8b"):
            gz = gzip.open(path, "rb")  # noqa: SIM115 (closed by the ExitStack)
            binary = stack.enter_context(cast(IO[bytes], gz))
            raw = cast(IO[bytes], gz.fileobj)
            where = lambda: raw.tell() / size  # noqa: E731
        else:
            binary = stack.enter_context(path.open("rb"))
            where = lambda: binary.tell() / size  # noqa: E731
        if progress is not None:
            progress.append(where)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc
    return iter(io.TextIOWrapper(binary, encoding="utf-8-sig", newline=""))


def _zip_member(path: Path, stack: ExitStack) -> IO[bytes]:
    archive = stack.enter_context(zipfile.ZipFile(path))
    names = [n for n in archive.namelist() if not n.endswith("/")]
    if len(names) != 1:
        raise SourceError(f"{path}: expected one CSV inside the ZIP, found {len(names)}: {names}")
    return archive.open(names[0])


def _head_rows(path: Path) -> list[list[str]]:
    """Up to three non-blank rows from the top of the file, split into fields."""
    if not path.is_file():
        raise SourceError(f"no such file: {path}")
    rows: list[list[str]] = []
    with ExitStack() as stack:
        try:
            for line in _open_lines(path, stack):
                if line.strip():
                    rows.append(line.strip().split(","))
                if len(rows) == 3:
                    break
        except (EOFError, zlib.error, UnicodeDecodeError) as exc:
            if not rows:
                raise SourceError(f"cannot read {path}: {exc}") from exc
    if not rows:
        raise SourceError(f"{path} is empty")
    return rows


def _detect_layout(path: Path, head: list[list[str]]) -> _Layout:
    first = head[0]
    if not first[0].strip().isdigit():
        return _header_layout(path, first)
    kind = _kind_from_name(path.name) or _kind_from_row(first)
    cols = _HEADERLESS.get((kind, len(first)))
    if cols is None:
        raise SourceError(f"{path}: {len(first)} columns do not fit a {kind} file")
    return _Layout(kind, False, dict(cols))


def _header_layout(path: Path, header: list[str]) -> _Layout:
    names = [h.strip().lower() for h in header]
    cols = {_HEADER_NAMES[n]: i for i, n in reversed(list(enumerate(names))) if n in _HEADER_NAMES}
    if "open_time" in cols:
        kind = "klines"
    elif {"agg_trade_id", "aggregatetradeid"} & set(names):
        kind = "aggTrades"
    else:
        kind = "trades"
    missing = [k for k in _REQUIRED[kind] if k not in cols]
    if missing:
        raise SourceError(f"{path}: header {','.join(header)} lacks {', '.join(missing)}")
    return _Layout(kind, True, cols)


def _kind_from_name(name: str) -> str | None:
    """``SYMBOL-aggTrades-…``, ``SYMBOL-trades-…``, ``SYMBOL-1m-…`` (data.binance.vision names)."""
    parts = name.split(".")[0].split("-")[1:]
    if "aggTrades" in parts:
        return "aggTrades"
    if "trades" in parts:
        return "trades"
    return "klines" if any(p in INTERVALS for p in parts) else None


def _kind_from_row(row: list[str]) -> str:
    """No header, no telling name: by column count (column 5 is a boolean only in trades)."""
    is_trades = len(row) > 5 and row[5].strip() in _BOOL and not row[5].strip().isdigit()
    if len(row) == 12:
        return "klines"
    if len(row) == 8:
        return "aggTrades"
    if is_trades:
        return "trades"
    return "aggTrades" if len(row) == 7 else "klines"


def _symbol(path: Path, head: list[list[str]], layout: _Layout) -> str:
    """The first row's Symbol column (each row then names its own), else the file name's prefix."""
    i_symbol = layout.cols.get("symbol")
    if i_symbol is not None and len(head) > 1 and len(head[1]) > i_symbol:
        return head[1][i_symbol].strip()
    prefix = path.name.split("-")[0]
    if "-" in path.name and prefix.isalnum() and prefix.isupper():
        return prefix
    raise SourceError(f"cannot tell the symbol of {path}: name it SYMBOL-... or pass symbol=")


def _interval(path: Path, head: list[list[str]], layout: _Layout) -> str:
    """From the file name (``-1m-``), else from the first two open times, else the close time."""
    for part in path.name.split(".")[0].split("-")[1:]:
        if part in INTERVALS:
            return part
    rows = head[1:] if layout.header else head
    i_open, i_close = layout.cols["open_time"], layout.cols.get("close_time")
    try:
        if len(rows) >= 2:
            length = to_ns(int(rows[1][i_open])) - to_ns(int(rows[0][i_open]))
        elif rows and i_close is not None:
            span = to_ns(int(rows[0][i_close])) - to_ns(int(rows[0][i_open]))  # interval - 1 ms|µs
            length = span // NS_PER_MS * NS_PER_MS + NS_PER_MS
        else:
            length = 0
    except (ValueError, IndexError) as exc:
        raise SourceError(f"{path}: cannot read the open times: {exc}") from exc
    if length not in _BY_LENGTH:
        raise SourceError(f"{path}: cannot tell the kline interval (name the file SYMBOL-1m-...)")
    return _BY_LENGTH[length]
