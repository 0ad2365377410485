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
  sells at the bid; ``Poisson(1.5)`` book updates per taker order, the first at its instant.

Regime boundaries (``concept`` and ``vol_regimes`` fractions of ``seconds``) are rounded down to a
whole block, so a block never mixes two regimes. :func:`schedule_of` knows them before any frame
exists; :func:`frames` generates the market in chunks of at most an hour (bounded memory) and
yields ``(receive ns, stream, payload)``; :func:`write_recording` writes a replayable recording and
its schedule beside it. The same spec gives the same bytes; the market does not depend on which
``streams`` are formatted.

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
from ares_stream.sim.frames import NS, STREAMS, Chunk, ChunkFormatter

__all__ = [
    "NS", "STREAMS", "Regime", "Schedule", "SimSpec", "SimSpecError", "frames", "schedule_of",
    "write_recording",
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

    def __post_init__(self) -> None:
        _check(self.seconds >= 1, "seconds", "must be at least 1")
        _check(1 <= self.block <= 86_400, "block", "must be 1 to 86,400 seconds")
        _check(self.start_ns >= 0 and self.start_ns % NS == 0, "start_ns",
               "must be a whole second since the epoch")
        for name in ("price0", "trades_per_second", "sigma"):
            value = getattr(self, name)
            _check(0 < value < math.inf, name, "must be positive and finite")
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
        data = {"spec": asdict(self.spec), "frames": self.frames, "start_ns": self.start_ns,
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
    ``.gz``. Returns the schedule with its frame count.
    """
    spec = replace(spec or SimSpec(), **overrides)
    sched = schedule_of(spec)
    path = Path(path)
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    kwargs = {"compresslevel": 1} if path.name.endswith(".gz") else {}
    with opener(path, "wt", encoding="ascii", **kwargs) as fh:
        for recv, streams, payloads in _chunks(spec):
            fh.writelines([f'{r} {{"stream":"{s}","data":{p}}}\n'
                           for r, s, p in zip(recv, streams, payloads, strict=True)])
            sched.frames += len(recv)
    Path(f"{path}.schedule.json").write_bytes(sched.to_json())
    return sched


def _chunks(spec: SimSpec) -> Iterator[tuple[list[int], list[str], list[str]]]:
    """Formatted frames, a chunk (at most an hour of market) at a time."""
    sched = schedule_of(spec)
    market = _Market(spec, sched)
    fmt = ChunkFormatter(spec.symbol, spec.streams)
    start_s = spec.start_ns // NS
    edge = start_s
    while edge < start_s + spec.seconds:
        end = min((edge // CHUNK_S + 1) * CHUNK_S, start_s + spec.seconds)
        yield fmt.format(market.chunk(edge - start_s, end - start_s))
        edge = end


class _Market:
    """The market's state between chunks and the generation of one chunk (numpy, vectorised)."""

    def __init__(self, spec: SimSpec, sched: Schedule) -> None:
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

    def chunk(self, a: int, b: int) -> Chunk:
        """The market in seconds ``[a, b)`` (relative to the start). A measured hot path."""
        n, rng, spec = b - a, self._rng, self.spec
        idx = np.searchsorted(self._starts, np.arange(a, b), side="right") - 1
        vol = spec.sigma * self._mults[idx] * np.exp(self._log_vol(n))
        m, m_prev = self._flow_states(a, b)
        steps = self._betas[idx] * m_prev * vol + vol * rng.standard_normal(n)
        logp = self._logp + np.concatenate(([0.0], np.cumsum(steps)))
        self._logp = float(logp[-1])
        rate = spec.trades_per_second * (vol / spec.sigma) ** INTENSITY_POWER
        counts = rng.poisson(rate)
        sec = np.repeat(np.arange(n), counts)
        t = np.sort(sec * NS + rng.integers(1, NS, sec.size))  # never on a whole second
        sec = t // NS
        buy = rng.random(t.size) < 0.5 + 0.35 * np.tanh(2.0 * m[sec])
        spread = 1 + (rng.random(t.size) < 0.1)
        bid = self._bid(logp, t, spread)
        price = np.where(buy, bid + spread, bid)
        lots = np.round(SIZE_MIN / LOT * (1.0 + rng.pareto(SIZE_ALPHA, t.size))).astype(np.int64)
        fills = np.minimum(1 + rng.poisson(FILLS_MEAN, t.size), lots)
        base = spec.start_ns + a * NS
        book_ns, bids, asks, bid_lots, ask_lots = self._book(rng, logp, t, spread, bid, n)
        c = Chunk(start_ns=base, end_ns=base + n * NS, agg_ns=t + base, price=price, lots=lots,
                  buy=buy, fills=fills, first_agg=self._next_agg,
                  first_tid=self._next_trade + np.cumsum(fills) - fills, prev_close=self._close,
                  book_ns=book_ns + base, bid=bids, ask=asks, bid_lots=bid_lots,
                  ask_lots=ask_lots, first_u=self._next_u)
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

    def _book(self, rng: np.random.Generator, logp: np.ndarray, t: np.ndarray,
              spread: np.ndarray, bid: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
        """Book updates: ``Poisson(BOOK_MEAN)`` per trade; the first one at the trade's instant
        (quoting its prices), the others before the next trade."""
        count = rng.poisson(BOOK_MEAN, t.size)
        first = count > 0
        owner = np.repeat(np.arange(t.size), np.maximum(count - 1, 0))
        nxt = np.append(t[1:], n * NS)[owner]
        te = t[owner] + (rng.random(owner.size) * (nxt - t[owner])).astype(np.int64)
        te = np.minimum(te, n * NS - 1)
        se = 1 + (rng.random(te.size) < 0.1)
        times = np.concatenate((t[first], te))
        bids = np.concatenate((bid[first], self._bid(logp, te, se)))
        asks = bids + np.concatenate((spread[first], se))
        order = np.argsort(times, kind="stable")
        qty = np.round(rng.lognormal(math.log(0.3 / LOT), 1.0, (2, times.size))).astype(np.int64)
        return times[order], bids[order], asks[order], 1 + qty[0], 1 + qty[1]
