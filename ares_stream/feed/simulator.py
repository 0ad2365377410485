"""A small seeded market generator that writes a recording in Binance's wire format.

It produces ``@aggTrade`` and ``@bookTicker`` frames in the combined-stream wrapper, one per line
as ``<receive ns> <frame>``, with a planted, documented relationship so a learner has something to
find:

- a latent order-flow state ``m``, drawn afresh for every block of ``block`` seconds (i.i.d.
  normal, sd 0.5), tilts each trade's side: P(taker buy) = 0.5 + 0.35·tanh(2m);
- the log price moves each second by ``beta·m_prev·sigma + sigma·eps``, where ``m_prev`` is the
  previous block's state: while ``beta > 0`` the signed flow of a block predicts the next block's
  return, and past returns do not (the states are independent), so the only way to the signal is
  the order flow;
- **concept drift**: ``beta`` flips sign at half-time (flow then predicts the opposite move);
- **virtual drift**: ``sigma`` doubles during the second and fourth quarters.

The schedule is returned with the file, so tests can score against it. (The full simulator with
stochastic volatility and a local exchange comes with the simulator issue.)

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "s.gz"
>>> sched = write_recording(path, seconds=60, seed=1)
>>> sched.frames > 100, sched.concept_drifts_ns == [sched.start_ns + 30 * 10**9]
(True, True)
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NS = 1_000_000_000


@dataclass
class Schedule:
    """What was planted: where the concept and volatility regimes change (ns)."""

    start_ns: int
    seconds: int
    frames: int = 0
    concept_drifts_ns: list[int] = field(default_factory=list)
    volatility_switches_ns: list[int] = field(default_factory=list)


def write_recording(
    path: str | Path,
    *,
    seconds: int = 86_400,
    seed: int = 0,
    symbol: str = "SIMUSDT",
    trades_per_second: float = 2.0,
    sigma: float = 1e-4,
    beta: float = 0.8,
    block: int = 10,
    start_ns: int = 1_735_689_600 * NS,  # 2025-01-01 00:00:00 UTC
) -> Schedule:
    """Write a gzip recording of ``seconds`` of simulated market and return its schedule."""
    rng = np.random.default_rng(seed)
    sched = Schedule(start_ns=start_ns, seconds=seconds)
    m = np.repeat(rng.standard_normal(seconds // block + 1) * 0.5, block)[:seconds]
    m_prev = np.concatenate([np.zeros(block), m[:-block]])[:seconds]
    betas = np.where(np.arange(seconds) < seconds // 2, beta, -beta)
    sigmas = np.where((np.arange(seconds) * 4 // seconds) % 2 == 1, 2 * sigma, sigma)
    drift = betas * m_prev * sigmas
    logp = np.log(60_000.0) + np.cumsum(drift + sigmas * rng.standard_normal(seconds))
    sched.concept_drifts_ns = [start_ns + (seconds // 2) * NS]
    sched.volatility_switches_ns = [start_ns + (seconds * q // 4) * NS for q in (1, 2, 3)]
    lines = _frames(rng, symbol, start_ns, m, logp, trades_per_second)
    with gzip.open(path, "wt", encoding="ascii", compresslevel=1) as fh:
        fh.writelines(lines)
    sched.frames = len(lines)
    return sched


def _frames(rng: np.random.Generator, symbol: str, start_ns: int, m: np.ndarray,
            logp: np.ndarray, rate: float) -> list[str]:
    """Trade and book frames, second by second, in receive-time order."""
    stream = symbol.lower()
    counts = rng.poisson(rate, len(m))
    n = int(counts.sum())
    sec = np.repeat(np.arange(len(m)), counts)
    offsets = rng.integers(0, 1_000_000, n)  # µs inside the second
    order = np.lexsort((offsets, sec))
    sec, offsets = sec[order], offsets[order]
    buy = rng.random(n) < 0.5 + 0.35 * np.tanh(2 * m[sec])
    qty = np.round(rng.pareto(2.5, n) * 0.01 + 0.0001, 5)
    price = np.round(np.exp(logp[sec]) * (1 + np.where(buy, 5e-6, -5e-6)), 2)
    lines: list[str] = []
    recv = 0
    for i in range(n):  # string formatting per frame: the measured cost of the generator
        ts_ms = (start_ns // 1_000_000) + int(sec[i]) * 1000 + int(offsets[i]) // 1000
        recv = max(recv + 2, ts_ms * 1_000_000 + 2_000_000)  # receive times strictly increase
        lines.append(
            f'{recv} {{"stream":"{stream}@aggTrade","data":{{"e":"aggTrade","E":{ts_ms},'
            f'"s":"{symbol}","a":{i + 1},"p":"{price[i]:.2f}","q":"{qty[i]:.5f}",'
            f'"f":{i + 1},"l":{i + 1},"T":{ts_ms},"m":{"false" if buy[i] else "true"},'
            f'"M":true}}}}\n'
        )
        if i % 2 == 0:
            bid = price[i] - 0.01
            lines.append(
                f'{recv + 1} {{"stream":"{stream}@bookTicker","data":{{"u":{i + 1},'
                f'"s":"{symbol}","b":"{bid:.2f}","B":"{qty[i] * 3:.5f}",'
                f'"a":"{bid + 0.02:.2f}","A":"{qty[-i] * 3 + 0.001:.5f}"}}}}\n'
            )
    return lines
