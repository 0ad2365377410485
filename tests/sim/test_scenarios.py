"""Stress episodes in the simulator and the scenarios built from them (crash, vol_spike,
liquidity)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ares_stream.errors import AresError
from ares_stream.sim.scenarios import SCENARIOS, SHOCK_S, scenario
from ares_stream.sim.simulator import (
    NS,
    Episode,
    Schedule,
    SimSpec,
    SimSpecError,
    frames,
    schedule_of,
    write_recording,
)


def _market(spec: SimSpec) -> tuple[np.ndarray, np.ndarray]:
    """Trade times (seconds from the start) and prices."""
    trades = [((d["T"] * 10**6 - spec.start_ns) / NS, float(d["p"]))
              for d in (json.loads(p) for _, s, p in frames(spec) if s.endswith("@aggTrade"))]
    return np.array(trades)[:, 0], np.array(trades)[:, 1]


def test_a_spec_without_episodes_writes_the_bytes_it_always_wrote(tmp_path: Path) -> None:
    """The default simulator's recording and schedule are pinned: episodes changed neither."""
    path = tmp_path / "rec.txt"
    write_recording(path, seconds=600, seed=3)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert digest == "9db81ba688ce92e2"  # as before episodes existed
    assert "episodes" not in json.loads(Path(f"{path}.schedule.json").read_bytes())["spec"]


def test_a_neutral_episode_changes_nothing() -> None:
    """Episodes change values, never the random draws: a neutral one gives the same frames."""
    spec = SimSpec(seconds=900, seed=4, streams=("trade", "aggTrade", "bookTicker", "depth"))
    neutral = SimSpec(seconds=900, seed=4, streams=spec.streams, episodes=(Episode(100, 500),))
    assert list(frames(spec)) == list(frames(neutral))


def test_a_crash_episode_moves_the_price_by_its_log_return() -> None:
    """An hour with log_return log(0.8) takes the price about 20 % down, and it stays there."""
    spec = SimSpec(seconds=3 * 3600, seed=1, concept=((0.0, 0.0),), vol_regimes=((0.0, 1.0),),
                   episodes=(Episode(3600, 3600, log_return=math.log(0.8)),))
    t, price = _market(spec)
    before, after = price[t < 3600][-1], price[t < 7200][-1]
    assert 0.75 < after / before < 0.85
    assert 0.7 < price[-1] / before < 0.9


def test_a_liquidity_episode_widens_the_spread_and_thins_the_market() -> None:
    """spread x20, rate /10, depth /10: wider quotes, fewer trades, smaller quote sizes."""
    spec = SimSpec(seconds=2 * 3600, seed=2, vol_regimes=((0.0, 1.0),),
                   episodes=(Episode(3600, 3600, spread=20.0, rate=0.1, depth=0.1),))
    t, _ = _market(spec)
    calm, thin = np.sum(t < 3600), np.sum(t >= 3600)
    assert 0.05 < thin / calm < 0.2
    spreads, sizes = _quotes_by_hour(spec)
    assert spreads[1] / spreads[0] > 15
    assert sizes[1] / sizes[0] < 0.2


def _quotes_by_hour(spec: SimSpec) -> tuple[list[float], list[float]]:
    """Mean spread and mean quote size of each hour's bookTicker frames."""
    spreads: list[list[float]] = [[], []]
    sizes: list[list[float]] = [[], []]
    for recv, stream, payload in frames(spec):
        if stream.endswith("@bookTicker"):
            d = json.loads(payload)
            hour = (recv - spec.start_ns) // (3600 * NS)
            if hour < 2:
                spreads[hour].append(float(d["a"]) - float(d["b"]))
                sizes[hour].append((float(d["B"]) + float(d["A"])) / 2)
    return [float(np.mean(s)) for s in spreads], [float(np.median(s)) for s in sizes]


def test_a_vol_spike_episode_multiplies_the_volatility() -> None:
    """vol x5: one-second returns about five times wider, and trades about five times more."""
    spec = SimSpec(seconds=2 * 3600, seed=5, concept=((0.0, 0.0),), vol_regimes=((0.0, 1.0),),
                   episodes=(Episode(3600, 3600, vol=5.0),))
    t, price = _market(spec)
    per_second = [np.diff(np.log(_last_per_second(t, price, lo))) for lo in (0, 3600)]
    ratio = np.std(per_second[1]) / np.std(per_second[0])
    assert 3.5 < ratio < 7.0
    assert 3.5 < np.sum(t >= 3600) / np.sum(t < 3600) < 7.0


def _last_per_second(t: np.ndarray, price: np.ndarray, lo: int) -> np.ndarray:
    """The last trade price of each whole minute of ``[lo, lo + 3600)`` (ticks smooth out)."""
    minute = (t // 60).astype(int)
    keep = (t >= lo) & (t < lo + 3600)
    last = {m: p for m, p in zip(minute[keep], price[keep], strict=True)}
    return np.array([last[m] for m in sorted(last)])


def test_episodes_are_checked_and_round_trip_through_the_schedule() -> None:
    """An episode past the end or with a zero multiplier is refused; the schedule keeps them."""
    with pytest.raises(SimSpecError, match="episodes"):
        SimSpec(seconds=100, episodes=(Episode(50, 100),))
    with pytest.raises(SimSpecError, match="spread must be positive"):
        SimSpec(seconds=100, episodes=(Episode(0, 10, spread=0.0),))
    sched = schedule_of(SimSpec(seconds=200, episodes=(Episode(10, 20, vol=2.0),)))
    assert Schedule.from_json(sched.to_json()) == sched


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_scenario_is_a_calm_lead_in_then_an_hour_of_shock(name: str) -> None:
    """A scenario warms up, trades calm for 30 minutes, then its one-hour episode begins."""
    s = scenario(name, bar_s=60)
    (episode,) = s.spec.episodes
    assert episode.start_s == s.shock_s and episode.seconds == SHOCK_S
    assert s.trade_from_s >= 100 * 60 and s.shock_s - s.trade_from_s == 1800
    assert s.shock_s % 60 == 0 and s.spec.seconds == s.shock_s + SHOCK_S + 1800


def test_an_unknown_scenario_names_the_known_ones() -> None:
    """A typo is one error naming the scenarios there are."""
    with pytest.raises(AresError, match="crash, vol_spike, liquidity"):
        scenario("crsh", bar_s=10)
