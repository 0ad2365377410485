"""Stress scenarios for the simulator: a calm market, then one hour of crash, volatility or
illiquidity (``ares-stream stress``, ``docs/stress.md``).

Each scenario is a :class:`~ares_stream.sim.simulator.SimSpec` with one
:class:`~ares_stream.sim.simulator.Episode`, laid out for bars of ``bar_s`` seconds:

1. **warm-up** (at least ``warmup_bars`` bars, and 30 minutes): the features warm up; nothing
   trades;
2. **calm** (30 minutes, at least 3 bars): the champion trades the calm market, so a position may
   be open when the shock comes;
3. **the shock** (:data:`SHOCK_S`, an hour): ``crash`` — the mid falls 20 % (``log(0.8)`` spread
   over the hour); ``vol_spike`` — volatility ×5 (and with it the trade rate, as always in the
   simulator); ``liquidity`` — spread ×20, trade rate ÷10, quote sizes ÷10 (a thin book);
4. **after** (30 minutes, at least 3 bars): the market is calm again.

The planted relationship is the simulator's first regime throughout (``beta`` +0.8, volatility
×1): what changes is the shock alone.

>>> s = scenario("crash", bar_s=10)
>>> s.spec.seconds, s.trade_from_s, s.shock_s, s.spec.episodes[0].seconds
(9000, 1800, 3600, 3600)
>>> round(math.exp(s.spec.episodes[0].log_return), 2)
0.8
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ares_stream.errors import AresError
from ares_stream.sim.simulator import NS, Episode, SimSpec

__all__ = ["SCENARIOS", "SHOCK_S", "Scenario", "scenario"]

SHOCK_S = 3_600  # the shock lasts an hour
CALM_S = 1_800  # calm trading before the shock, and calm after it
_SHOCKS = {
    "crash": ("the price falls 20 % within an hour", {"log_return": math.log(0.8)}),
    "vol_spike": ("volatility x5 (and the trade rate with it) for an hour", {"vol": 5.0}),
    "liquidity": ("spread x20, trade rate /10, quote sizes /10 for an hour",
                  {"spread": 20.0, "rate": 0.1, "depth": 0.1}),
}
SCENARIOS = tuple(_SHOCKS)


@dataclass(frozen=True)
class Scenario:
    """A simulated stress scenario: its spec, and when trading and the shock start (seconds
    from the spec's start)."""

    name: str
    description: str
    spec: SimSpec
    trade_from_s: int  # the warm-up ends: the broker trades from here
    shock_s: int  # the episode starts here

    @property
    def trade_from_ns(self) -> int:
        """Event time from which the broker trades, ns."""
        return self.spec.start_ns + self.trade_from_s * NS

    @property
    def shock_ns(self) -> int:
        """Event time the shock starts, ns."""
        return self.spec.start_ns + self.shock_s * NS


def scenario(name: str, *, bar_s: int, symbol: str = "SIMUSDT", seed: int = 0,
             streams: tuple[str, ...] = ("aggTrade", "bookTicker"),
             warmup_bars: int = 100) -> Scenario:
    """The scenario ``name`` (one of :data:`SCENARIOS`) for bars of ``bar_s`` seconds."""
    if name not in _SHOCKS:
        raise AresError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    description, shock = _SHOCKS[name]
    step = math.lcm(bar_s, 10)  # whole bars and whole simulator blocks
    warmup = _round_up(max(warmup_bars * bar_s, CALM_S), step)
    calm = _round_up(max(CALM_S, 3 * bar_s), step)
    start = warmup + calm
    seconds = start + SHOCK_S + calm
    spec = SimSpec(symbol=symbol, seconds=seconds, seed=seed, concept=((0.0, 0.8),),
                   vol_regimes=((0.0, 1.0),), streams=streams,
                   episodes=(Episode(start, SHOCK_S, **shock),))
    return Scenario(name, description, spec, warmup, start)


def _round_up(seconds: int, step: int) -> int:
    return -(-seconds // step) * step
