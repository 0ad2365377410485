"""A seeded market simulator with planted, scheduled drifts, in Binance's wire format.

The market, second by second (``t`` counts seconds from ``start_ns``):

- **stochastic volatility** (:data:`VOL_HALF_LIFE_S`, :data:`VOL_OF_VOL`): the log-volatility is an
  AR(1) (a discretised Ornstein-Uhlenbeck process) around ``log(sigma × multiplier(t))`` with a
  half-life of 600 s and a stationary sd of 0.3, so ``vol(t) = sigma · multiplier(t) · exp(x_t)``;
  the **multiplier** follows ``vol_regimes`` (virtual drift: the signal does not change, the noise
  and the trade rate do);
- **trade arrivals**: taker orders arrive as a Poisson process of intensity
  ``trades_per_second · (vol(t) / sigma) ** INTENSITY_POWER`` (power 1), at uniform instants inside
  each second; each order fills ``1 + Poisson(0.5)`` trades (one ``aggTrade``, several ``trade``);
- **heavy-tailed sizes**: Pareto with tail index :data:`SIZE_ALPHA` (2.2) above
  :data:`SIZE_MIN` (0.001), rounded to the 0.00001 lot;
- **the planted relationship**: a latent flow state ``m_b ~ N(0, 0.5²)``, i.i.d. per block ``b`` of
  ``block`` seconds, tilts each taker's side: ``P(buy) = 0.5 + 0.35·tanh(2·m_b)``. The log mid
  price moves each second by ``beta(t)·m_{b-1}·vol(t) + vol(t)·eps_t`` (``eps_t ~ N(0, 1)``), where
  ``m_{b-1}`` is the *previous* block's state (0 in the first block). So the signed order flow of a
  block predicts the next block's return with the sign of ``beta``; past returns do not (the states
  are independent): the signal is reachable only through order flow;
- **concept drift**: ``beta(t)`` follows ``concept`` — its strength and sign change at known times;
- **the book**: a one-tick spread (two ticks 10% of the time) around the mid; buys fill at the ask,
  sells at the bid; ``Poisson(1.5)`` quote updates (``bookTicker``) per taker order, the first at
  its instant, each with fresh lognormal sizes (median 0.3) at the best bid and ask. Behind the
  quotes, :mod:`~ares_stream.sim.book` keeps 20 price levels a side (makers refill, cancel and add
  levels; a quote's move removes the levels it crosses) and its 100 ms depth diffs; the quotes
  alone move the best levels, so ``bookTicker`` always agrees with the depth book;
- **the planted book effect** (``book_beta``, 0 by default): with ``I_{b-1}`` the top-of-book
  imbalance ``(bid lots − ask lots) / (bid lots + ask lots)`` at the end of block ``b-1`` (the
  last quote before it; 0 for the first block), each second of block ``b`` also moves the log mid
  by ``book_beta · I_{b-1} / block``: the next block's log return gains ``book_beta · I_{b-1}``
  (in log-return units: 5e-4 is 5 bps for a top all on the bid side). The quote sizes are drawn
  independently of the path, so the imbalance predicts the next block's return with slope
  ``book_beta`` and nothing else changes.
- **stress episodes** (``episodes``, none by default; :mod:`ares_stream.sim.scenarios` builds
  them): an :class:`Episode` is a stretch of whole seconds during which the log mid drifts by
  ``log_return`` spread evenly over its seconds (a crash: ``log(0.8)`` in an hour), the
  volatility is multiplied by ``vol`` (the trade rate follows it, as everywhere), the trade rate
  by ``rate``, the quoted spread by ``spread`` and the quote sizes by ``depth`` (book thinning:
  the bookTicker sizes and the depth book's best levels). Episodes change values, never the
  random draws: a spec without episodes gives the bytes it always gave.

Regime boundaries (``concept`` and ``vol_regimes`` fractions of ``seconds``) are rounded down to a
whole block, so a block never mixes two regimes. :func:`schedule_of` knows them before any frame
exists; :func:`frames` generates the market in chunks of at most an hour (bounded memory) and
yields ``(receive ns, stream, payload)``; :func:`write_recording` writes a replayable recording and
its schedule beside it; :func:`books` gives the depth book at every block's end. The same spec
gives the same bytes; the market does not depend on which ``streams`` are formatted (the depth
book, played only when a depth stream is selected, has its own random stream).

>>> sched = schedule_of(SimSpec(seconds=600))
>>> [(r.start_ns - sched.start_ns) // NS for r in sched.regimes], sched.regimes[2].beta
([0, 150, 300, 450], -0.8)
>>> [(ns - sched.start_ns) // NS for ns in sched.concept_drifts_ns]
[300]
>>> first = next(frames(SimSpec(seconds=60, seed=1)))
>>> first[1], first[2][:30]
('simusdt@aggTrade', b'{"e":"aggTrade","E":1735689600')
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from ares_stream.errors import AresError
from ares_stream.sim.book import GAP_PPM, Book
from ares_stream.sim.frames import NS, STREAMS, Chunk, ChunkFormatter

__all__ = [
    "NS", "STREAMS", "Episode", "Regime", "Schedule", "SimSpec", "SimSpecError", "books", "frames",
    "schedule_of", "write_recording",
]  # fmt: skip

VOL_HALF_LIFE_S = 600.0  # half-life of log-volatility shocks, seconds
VOL_OF_VOL = 0.3  # stationary sd of the log-volatility around its regime level
INTENSITY_POWER = 1.0  # trade intensity ∝ (vol / sigma) ** INTENSITY_POWER
SIZE_ALPHA = 2.2  # Pareto tail index of taker order sizes
SIZE_MIN = 0.001  # smallest taker order, base asset
FILLS_MEAN = 0.5  # extra fills per taker order (Poisson): trades per aggTrade = 1 + that
BOOK_MEAN = 1.5  # book updates per taker order (Poisson): the first at its instant, if any
FLOW_SD = 0.5  # sd of the latent flow state m
TICK = 0.01  # price tick, quote asset
LOT = 1e-5  # quantity step, base asset
CHUNK_S = 3_600  # chunks end on whole hours of the epoch (so on whole minutes: klines close)


class SimSpecError(AresError, ValueError):
    """A simulator spec that cannot be simulated (names the field)."""


@dataclass(frozen=True)
class Episode:
    """A stressed stretch ``[start_s, start_s + seconds)`` (seconds from the spec's start): what
    changes during it (module docstring). The neutral values change nothing."""

    start_s: int
    seconds: int
    log_return: float = 0.0  # total drift of the log mid over the episode (crash: log(0.8))
    vol: float = 1.0  # volatility multiplier (the trade rate follows the volatility)
    rate: float = 1.0  # trade rate multiplier on top of that
    spread: float = 1.0  # quoted spread multiplier (ticks, rounded; at least one)
    depth: float = 1.0  # quote size multiplier (book thinning; at least one lot)

    def check(self, total: int) -> None:
        """Raise :class:`SimSpecError` unless the episode lies in ``[0, total)`` seconds and its
        multipliers are positive and finite."""
        _check(self.start_s >= 0 and self.seconds >= 1 and self.start_s + self.seconds <= total,
               "episodes", f"{self}: must lie within the {total} simulated seconds")
        _check(math.isfinite(self.log_return), "episodes", f"{self}: log_return must be finite")
        for name in ("vol", "rate", "spread", "depth"):
            _check(0 < getattr(self, name) < math.inf, "episodes",
                   f"{self}: {name} must be positive and finite")


@dataclass(frozen=True)
class SimSpec:
    """What to simulate; validated on construction (:class:`SimSpecError` names the field)."""

    symbol: str = "SIMUSDT"
    seconds: int = 86_400  # simulated duration
    seed: int = 0
    start_ns: int = 1_735_689_600 * NS  # 2025-01-01 00:00:00 UTC; a whole second
    price0: float = 60_000.0
    block: int = 10  # seconds: the flow of a block predicts the next block's return
    trades_per_second: float = 2.0  # mean taker orders (aggTrades) per second at vol = sigma
    sigma: float = 1e-4  # base per-second volatility of the log price
    concept: tuple[tuple[float, float], ...] = ((0.0, 0.8), (0.5, -0.8))  # (start fraction, beta)
    vol_regimes: tuple[tuple[float, float], ...] = (
        (0.0, 1.0), (0.25, 2.0), (0.5, 1.0), (0.75, 2.0))  # (start fraction, vol multiplier)
    streams: tuple[str, ...] = ("aggTrade", "bookTicker")  # any of STREAMS
    book_beta: float = 0.0  # next block's log return per unit of top-of-book imbalance
    episodes: tuple[Episode, ...] = ()  # stressed stretches (crash, volatility, liquidity)

    def __post_init__(self) -> None:
        _check(self.seconds >= 1, "seconds", "must be at least 1")
        _check(1 <= self.block <= 86_400, "block", "must be 1 to 86,400 seconds")
        _check(self.start_ns >= 0 and self.start_ns % NS == 0, "start_ns",
               "must be a whole second since the epoch")
        for name in ("price0", "trades_per_second", "sigma"):
            value = getattr(self, name)
            _check(0 < value < math.inf, name, "must be positive and finite")
        _check(math.isfinite(self.book_beta), "book_beta", "must be finite")
        _check(self.price0 >= 100 * TICK, "price0", f"must be at least 100 ticks ({TICK})")
        _check(self.symbol.isalnum() and self.symbol.isupper(), "symbol",
               "must be upper-case letters and digits")
        _check_fractions(self.concept, "concept", lambda beta: math.isfinite(beta))
        _check_fractions(self.vol_regimes, "vol_regimes", lambda mult: 0 < mult < math.inf)
        for stream in self.streams:
            _check(stream in STREAMS, "streams", f"unknown stream {stream!r} "
                   f"(known: {', '.join(STREAMS)})")
        _check(0 < len(set(self.streams)) == len(self.streams), "streams",
               "must be one or more distinct streams")
        for episode in self.episodes:
            episode.check(self.seconds)


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise SimSpecError(f"SimSpec.{field} {message}")


def _check_fractions(pairs: tuple[tuple[float, float], ...], field: str, valid: Any) -> None:
    """``(start fraction, value)`` pairs: fractions in [0, 1), increasing, from 0; values valid."""
    fractions = [f for f, _ in pairs]
    _check(bool(pairs) and fractions[0] == 0.0, field, "must start at fraction 0.0")
    _check(all(a < b for a, b in pairwise(fractions)), field,
           "fractions must increase")
    _check(all(0.0 <= f < 1.0 for f in fractions), field, "fractions must lie in [0, 1)")
    _check(all(valid(v) for _, v in pairs), field, f"has an invalid value: {pairs}")


@dataclass(frozen=True)
class Regime:
    """One constant stretch of the market: ``beta`` and the volatility multiplier ``vol``."""

    start_ns: int
    end_ns: int
    beta: float
    vol: float


@dataclass
class Schedule:
    """What was planted: the regimes and when the concept and the volatility change (ns)."""

    spec: SimSpec
    frames: int = 0  # frames written (0 until a recording is written)
    regimes: list[Regime] = field(default_factory=list)
    concept_drifts_ns: list[int] = field(default_factory=list)  # beta changes
    volatility_switches_ns: list[int] = field(default_factory=list)  # the multiplier changes

    @property
    def start_ns(self) -> int:
        """The simulated market's first instant, ns since the epoch."""
        return self.spec.start_ns

    @property
    def seconds(self) -> int:
        """The simulated duration, in seconds."""
        return self.spec.seconds

    def to_json(self) -> bytes:
        """The schedule as JSON (with its spec), for ``<recording>.schedule.json``."""
        spec = asdict(self.spec)
        if not self.spec.episodes:  # the schedule of a spec without episodes stays as it was
            del spec["episodes"]
        data = {"spec": spec, "frames": self.frames, "start_ns": self.start_ns,
                "seconds": self.seconds, "regimes": [asdict(r) for r in self.regimes],
                "concept_drifts_ns": self.concept_drifts_ns,
                "volatility_switches_ns": self.volatility_switches_ns}
        return json.dumps(data, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Schedule:
        """Read back :meth:`to_json`.

        >>> s = schedule_of(SimSpec(seconds=100, seed=3))
        >>> Schedule.from_json(s.to_json()) == s
        True
        """
        raw = json.loads(data)
        spec = raw["spec"]
        for key in ("concept", "vol_regimes", "streams"):
            spec[key] = tuple(tuple(v) if isinstance(v, list) else v for v in spec[key])
        spec["episodes"] = tuple(Episode(**e) for e in spec.get("episodes", ()))
        return cls(SimSpec(**spec), raw["frames"], [Regime(**r) for r in raw["regimes"]],
                   raw["concept_drifts_ns"], raw["volatility_switches_ns"])


def schedule_of(spec: SimSpec) -> Schedule:
    """The regimes of ``spec``, known before any frame: boundaries rounded down to a block."""
    def starts(pairs: tuple[tuple[float, float], ...]) -> dict[int, float]:
        """Each pair's value keyed by its start offset in seconds, rounded down to a block."""
        out: dict[int, float] = {}
        for frac, value in pairs:  # boundaries that round to the same block: the later wins
            out[int(frac * spec.seconds) // spec.block * spec.block] = value
        return out

    betas, mults = starts(spec.concept), starts(spec.vol_regimes)
    sched = Schedule(spec)
    beta = mult = math.nan
    for s in sorted(set(betas) | set(mults)):
        new_beta, new_mult = betas.get(s, beta), mults.get(s, mult)
        at = spec.start_ns + s * NS
        if s and new_beta != beta:
            sched.concept_drifts_ns.append(at)
        if s and new_mult != mult:
            sched.volatility_switches_ns.append(at)
        if (new_beta, new_mult) != (beta, mult):
            if sched.regimes:
                sched.regimes[-1] = replace(sched.regimes[-1], end_ns=at)
            sched.regimes.append(Regime(at, spec.start_ns + spec.seconds * NS, new_beta, new_mult))
        beta, mult = new_beta, new_mult
    return sched


def frames(spec: SimSpec) -> Iterator[tuple[int, str, bytes]]:
    """``(receive ns, stream name, payload JSON)`` of every frame, receive times increasing."""
    for recv, streams, payloads in _chunks(spec):
        yield from zip(recv, streams, [p.encode() for p in payloads], strict=True)


def write_recording(
    path: str | Path, spec: SimSpec | None = None, **overrides: Any
) -> Schedule:
    """Write a recording of ``spec`` (with ``overrides``) and ``<path>.schedule.json``.

    One line per frame, ``<receive ns> {"stream":…,"data":…}``; gzip when ``path`` ends in
    ``.gz``. Returns the schedule with its frame count. With a depth stream the recording opens
    with the empty book the first diff (``U`` = 1) starts from, as the snapshot line
    ``<symbol>@depthSnapshot`` (``lastUpdateId`` 0) a daemon records: a replay syncs its book
    from the recording alone.
    """
    spec = replace(spec or SimSpec(), **overrides)
    sched = schedule_of(spec)
    path = Path(path)
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    kwargs = {"compresslevel": 1} if path.name.endswith(".gz") else {}
    with opener(path, "wt", encoding="ascii", **kwargs) as fh:
        if any(s.startswith("depth") for s in spec.streams):
            fh.write(f'{spec.start_ns} {{"stream":"{spec.symbol.lower()}@depthSnapshot",'
                     '"data":{"lastUpdateId":0,"bids":[],"asks":[]}}\n')
            sched.frames += 1
        for recv, streams, payloads in _chunks(spec):
            fh.writelines([f'{r} {{"stream":"{s}","data":{p}}}\n'
                           for r, s, p in zip(recv, streams, payloads, strict=True)])
            sched.frames += len(recv)
    Path(f"{path}.schedule.json").write_bytes(sched.to_json())
    return sched


def _chunks(spec: SimSpec) -> Iterator[tuple[list[int], list[str], list[str]]]:
    """Formatted frames, a chunk (at most an hour of market) at a time."""
    fmt = ChunkFormatter(spec.symbol, spec.streams)
    depth = any(s.startswith("depth") for s in spec.streams)
    for chunk in _market_chunks(_Market(spec, schedule_of(spec), depth=depth)):
        yield fmt.format(chunk)


def _market_chunks(market: _Market) -> Iterator[Chunk]:
    """The market's chunks: each ends on a whole hour of the epoch, or at the market's end."""
    spec = market.spec
    start_s = spec.start_ns // NS
    edge = start_s
    while edge < start_s + spec.seconds:
        end = min((edge // CHUNK_S + 1) * CHUNK_S, start_s + spec.seconds)
        yield market.chunk(edge - start_s, end - start_s)
        edge = end


def books(spec: SimSpec) -> Iterator[tuple[int, dict[int, int], dict[int, int]]]:
    """The simulator's own book at the end of every block: ``(ns, bids, asks)``, price (ticks)
    → lots, as the depth diffs of ``frames(spec)`` must rebuild it (whatever ``spec.streams``).

    >>> ns, bids, asks = next(books(SimSpec(seconds=60, seed=1)))
    >>> (ns - SimSpec().start_ns) // NS, len(bids), len(asks), max(bids) < min(asks)
    (10, 20, 20, True)
    """
    market = _Market(spec, schedule_of(spec), depth=True, record=True)
    for _ in _market_chunks(market):
        assert market.book is not None and market.book.recorded is not None
        yield from market.book.recorded
        market.book.recorded.clear()


class _Market:
    """The market's state between chunks and the generation of one chunk (numpy, vectorised).

    ``depth``: also play the :class:`~ares_stream.sim.book.Book` behind the quotes (its own
    random stream: nothing else depends on it); ``record``: keep its state at every block end.
    """

    def __init__(self, spec: SimSpec, sched: Schedule, *, depth: bool = False,
                 record: bool = False) -> None:
        self.spec = spec
        self._rng = np.random.default_rng(spec.seed)
        starts = [(r.start_ns - spec.start_ns) // NS for r in sched.regimes]
        self._starts = np.array(starts, dtype=np.int64)
        self._betas = np.array([r.beta for r in sched.regimes])
        self._mults = np.array([r.vol for r in sched.regimes])
        self._phi = 0.5 ** (1.0 / VOL_HALF_LIFE_S)
        self._x = 0.0  # log-volatility deviation at the end of the last chunk
        self._logp = math.log(spec.price0)  # log mid at the end of the last chunk
        self._m = np.zeros(2)  # flow states of blocks last_block - 1 and last_block
        self._last_block = -1
        self._next_agg = 1
        self._next_trade = 1
        self._next_u = 1
        self._close = round(spec.price0 / TICK)  # price (ticks) of the last trade
        book_rng = np.random.default_rng([spec.seed, 1])  # the book's own stream
        top = self._bid(np.full(2, self._logp), np.zeros(1, dtype=np.int64), np.ones(1))
        lots = 1 + np.round(book_rng.lognormal(math.log(0.3 / LOT), 1.0, 2)).astype(np.int64)
        self._imbalance = _TopImbalance(spec.block, float((lots[0] - lots[1]) / lots.sum()))
        self.book = None if not depth else Book(
            int(top[0]), int(top[0]) + 1, int(lots[0]), int(lots[1]), book_rng,
            start_ns=spec.start_ns, gap=max(1.0, spec.price0 / TICK * GAP_PPM * 1e-6),
            block_ns=spec.block * NS, record=record)

    def chunk(self, a: int, b: int) -> Chunk:
        """The market in seconds ``[a, b)`` (relative to the start). A measured hot path.

        Everything random is drawn first, in a fixed order (the draws do not depend on the
        price path), then the path (with the book's drift) and the prices."""
        n, rng, spec = b - a, self._rng, self.spec
        idx = np.searchsorted(self._starts, np.arange(a, b), side="right") - 1
        vol = spec.sigma * self._mults[idx] * np.exp(self._log_vol(n))
        stress = _Stress(spec.episodes, a, b) if spec.episodes else None
        if stress is not None:
            vol = vol * stress.vol
        m, m_prev = self._flow_states(a, b)
        steps = self._betas[idx] * m_prev * vol + vol * rng.standard_normal(n)
        rate = spec.trades_per_second * (vol / spec.sigma) ** INTENSITY_POWER
        if stress is not None:
            steps, rate = steps + stress.drift, rate * stress.rate
        counts = rng.poisson(rate)
        sec = np.repeat(np.arange(n), counts)
        t = np.sort(sec * NS + rng.integers(1, NS, sec.size))  # never on a whole second
        sec = t // NS
        buy = rng.random(t.size) < 0.5 + 0.35 * np.tanh(2.0 * m[sec])
        spread = 1 + (rng.random(t.size) < 0.1)
        lots = np.round(SIZE_MIN / LOT * (1.0 + rng.pareto(SIZE_ALPHA, t.size))).astype(np.int64)
        fills = np.minimum(1 + rng.poisson(FILLS_MEAN, t.size), lots)
        times, order, first, te, se, bid_lots, ask_lots = self._book_events(rng, t, spread, n)
        book_ns = times[order]
        if stress is not None:  # values only: every draw above is made as without episodes
            spread, se = stress.widen(spread, t), stress.widen(se, te)
            bid_lots, ask_lots = stress.thin(bid_lots, book_ns), stress.thin(ask_lots, book_ns)
        if spec.book_beta:
            drift = self._imbalance.per_second(a, b, book_ns, bid_lots, ask_lots) / spec.block
            steps = steps + spec.book_beta * drift
        logp = self._logp + np.concatenate(([0.0], np.cumsum(steps)))
        self._logp = float(logp[-1])
        bid = self._bid(logp, t, spread)
        price = np.where(buy, bid + spread, bid)
        bids = np.concatenate((bid[first], self._bid(logp, te, se)))
        asks = (bids + np.concatenate((spread[first], se)))[order]
        bids = bids[order]
        base = spec.start_ns + a * NS
        c = Chunk(start_ns=base, end_ns=base + n * NS, agg_ns=t + base, price=price, lots=lots,
                  buy=buy, fills=fills, first_agg=self._next_agg,
                  first_tid=self._next_trade + np.cumsum(fills) - fills, prev_close=self._close,
                  book_ns=book_ns + base, bid=bids, ask=asks, bid_lots=bid_lots,
                  ask_lots=ask_lots, first_u=self._next_u)
        if self.book is not None:
            c.depth = self.book.chunk(base, base + n * NS, (book_ns, bids, asks, bid_lots,
                                                            ask_lots), vol / spec.sigma)
        self._next_agg += t.size
        self._next_trade += int(fills.sum())
        self._next_u += c.book_ns.size
        self._close = int(price[-1]) if price.size else self._close
        return c

    def _log_vol(self, n: int) -> np.ndarray:
        """``n`` seconds of the AR(1) log-volatility deviation (closed form; phi^-n stays < 2^7)."""
        phi, sd = self._phi, VOL_OF_VOL * math.sqrt(1.0 - self._phi**2)
        k = np.arange(1, n + 1)
        x = phi**k * (self._x + np.cumsum(phi ** (-k) * sd * self._rng.standard_normal(n)))
        self._x = float(x[-1])
        return x

    def _flow_states(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Per second of ``[a, b)``: its block's flow state and the previous block's."""
        block = self.spec.block
        first, last = a // block, (b - 1) // block
        new = self._rng.normal(0.0, FLOW_SD, last - self._last_block)
        states = np.concatenate((self._m, new))  # blocks self._last_block - 1 … last
        self._m, self._last_block = states[-2:], last
        offset = first - (last - states.size + 1)
        rel = np.arange(a, b) // block - first + offset
        return states[rel], states[rel - 1]  # block -1 has state 0: no signal in the first

    def _bid(self, logp: np.ndarray, t: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """Best bid (ticks) at chunk times ``t`` (ns) for the given spreads (ticks)."""
        sec, frac = t // NS, (t % NS) / NS
        mid = np.exp(logp[sec] + frac * (logp[sec + 1] - logp[sec])) / TICK
        return np.floor(mid - (spread - 1) / 2).astype(np.int64)

    def _book_events(self, rng: np.random.Generator, t: np.ndarray, spread: np.ndarray,
                     n: int) -> tuple[np.ndarray, ...]:
        """Book updates, drawn before the price path: ``Poisson(BOOK_MEAN)`` per trade, the first
        one at the trade's instant (quoting its prices), the others before the next trade.

        Returns their times (the trades' ``first`` ones, then the others ``te`` with spreads
        ``se``), the ``order`` that sorts them, and their bid and ask lots in time order."""
        count = rng.poisson(BOOK_MEAN, t.size)
        first = count > 0
        owner = np.repeat(np.arange(t.size), np.maximum(count - 1, 0))
        nxt = np.append(t[1:], n * NS)[owner]
        te = t[owner] + (rng.random(owner.size) * (nxt - t[owner])).astype(np.int64)
        te = np.minimum(te, n * NS - 1)
        se = 1 + (rng.random(te.size) < 0.1)
        times = np.concatenate((t[first], te))
        order = np.argsort(times, kind="stable")
        qty = np.round(rng.lognormal(math.log(0.3 / LOT), 1.0, (2, times.size))).astype(np.int64)
        return times, order, first, te, se, 1 + qty[0], 1 + qty[1]


class _Stress:
    """The episodes' values per second of a chunk ``[a, b)`` (seconds from the start)."""

    def __init__(self, episodes: tuple[Episode, ...], a: int, b: int) -> None:
        n = b - a
        self.drift, self.vol, self.rate = np.zeros(n), np.ones(n), np.ones(n)
        self._spread, self._depth = np.ones(n), np.ones(n)
        for e in episodes:
            lo, hi = max(e.start_s, a) - a, min(e.start_s + e.seconds, b) - a
            if lo < hi:
                self.drift[lo:hi] += e.log_return / e.seconds
                for mult, value in ((self.vol, e.vol), (self.rate, e.rate),
                                    (self._spread, e.spread), (self._depth, e.depth)):
                    mult[lo:hi] *= value

    def widen(self, spread: np.ndarray, ns: np.ndarray) -> np.ndarray:
        """Spreads (ticks) quoted at chunk times ``ns``, times their second's multiplier."""
        wide = np.round(spread * self._spread[ns // NS]).astype(np.int64)
        return np.maximum(wide, 1)

    def thin(self, lots: np.ndarray, ns: np.ndarray) -> np.ndarray:
        """Quote sizes (lots) at chunk times ``ns``, times their second's multiplier."""
        return np.maximum(np.round(lots * self._depth[ns // NS]).astype(np.int64), 1)


class _TopImbalance:
    """The top-of-book imbalance ``(bid lots − ask lots) / (bid lots + ask lots)`` at the start
    of each block (the end of the one before), carried across chunks; 0 in the first block."""

    def __init__(self, block: int, initial: float) -> None:
        self._block = block
        self._last = initial  # the imbalance of the last quote so far (the initial book's)
        self._open = 0.0  # the value of the block open at the end of the last chunk

    def per_second(self, a: int, b: int, times: np.ndarray, bid_lots: np.ndarray,
                   ask_lots: np.ndarray) -> np.ndarray:
        """Per second of ``[a, b)``: the value of its block, from the quotes at ``times`` (ns
        from second ``a``, in time order) and those before."""
        ks = np.arange(a // self._block, b // self._block + 1)  # blocks to the one open at b
        starts = ks * self._block
        padded = np.append((bid_lots - ask_lots) / (bid_lots + ask_lots), self._last)
        at = padded[np.searchsorted(times, (starts - a) * NS, side="left") - 1]  # -1: carried
        if starts[0] < a:
            at[0] = self._open
        at[ks == 0] = 0.0
        self._open, self._last = float(at[-1]), float(padded[-2] if times.size else self._last)
        return at[np.arange(a, b) // self._block - ks[0]]
