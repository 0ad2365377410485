"""``ares-stream stress``: the current champions and the trading rule through stress scenarios.

Each scenario replays a stretch of market through the real engine — bars, features, the online
learner — with the paper broker, its risk limits and kill switches (``[trading]`` of the
database's latest run, or ``--config``) and reports the return, the maximum drawdown, fills, fees
and slippage, the kill switch that fired and when, and PASS/FAIL against ``[stress]`` ``max_loss``
and ``max_drawdown`` (``docs/stress.md``).

**The champion is frozen** (:class:`~ares_stream.stress.runner.FrozenChampion`): each symbol's
champion booster is loaded from the registry once and its probability is what trades, on every
bar; nothing is trained, validated or promoted, and the database is only read. The edge gate
(``trading.require_edge``) is not applied: the question is what the champion's signal does to the
account when it trades.

Scenarios: ``crash``, ``vol_spike`` and ``liquidity`` (:mod:`ares_stream.sim.scenarios`),
simulated at the champion's bar interval, and ``historical``: the worst peak-to-trough windows of
a candle file (:mod:`ares_stream.stress.history`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ares_stream.config import Config, from_stored
from ares_stream.errors import AresError
from ares_stream.features.bars import parse_interval
from ares_stream.learners.registry import Registry
from ares_stream.report.regimes import save_stress
from ares_stream.sim.scenarios import SCENARIOS, scenario
from ares_stream.store.history import run_config
from ares_stream.stress import history
from ares_stream.stress.runner import (
    Champion,
    Outcome,
    bar_seconds,
    champions,
    format_outcome,
    run_items,
    run_simulated,
)

__all__ = ["ALL", "DEFAULT_CANDLES", "main_stress"]

ALL = (*SCENARIOS, "historical")
DEFAULT_CANDLES = Path("/work/shared/data/klines/BTCUSDT-1h-2017-08-17_2024-04-21.csv.gz")


def main_stress(db: Any, config: Config, names: Sequence[str] | None, candles: Path | None,
                out: Callable[[str], None] = print, db_path: Path | None = None) -> int:
    """Run the scenarios ``names`` (default: all) for every champion of ``db``; print each as it
    ends and a summary line. Returns 0 when all ran scenarios pass, 1 when any fails. With
    ``db_path`` the results are kept beside it for the report (``<db>.stress.json``)."""
    wanted = _names(names)
    found = _champions(db, config)
    results: list[Outcome] = []
    for champ in found:
        out(f"{champ.symbol}: champion booster {champ.model_id}, {champ.interval} bars; limits: "
            f"loss {config.stress.max_loss:.1%}, drawdown {config.stress.max_drawdown:.1%}")
        for name in wanted:
            for result in _run(name, config, champ, candles):
                out(format_outcome(result, config))
                results.append(result)
    line = summary(results, config)
    out(line)
    if db_path is not None:
        save_stress(db_path, {"ran_at": time.time_ns(), "summary": line,
                              "max_loss": config.stress.max_loss,
                              "max_drawdown": config.stress.max_drawdown,
                              "scenarios": [_kept(r, config) for r in results]})
    return 1 if "FAILED" in line else 0


def _kept(r: Outcome, config: Config) -> dict[str, Any]:
    """One outcome as the report shows it (plain JSON values)."""
    verdict = "SKIPPED" if r.skipped else ("PASS" if r.passed(config) else "FAIL")
    return {"symbol": r.symbol, "scenario": r.name, "verdict": verdict, "return": r.ret,
            "max_drawdown": r.max_drawdown, "fills": r.fills, "fees": r.fees,
            "slippage": r.slippage, "kill_switch": r.switch[0] if r.switch else "",
            "kill_switch_at": r.switch[1] if r.switch else None, "start_ns": r.start_ns,
            "description": r.description, "skipped": r.skipped}


def _names(names: Sequence[str] | None) -> list[str]:
    for name in names or ():
        if name not in ALL:
            raise AresError(f"unknown scenario {name!r} (known: {', '.join(ALL)})")
    return list(dict.fromkeys(names)) if names else list(ALL)


def _champions(db: Any, config: Config) -> list[Champion]:
    """Every champion, with the bar interval of the run that trained it (else the config's)."""
    registry = Registry(db)
    out = []
    for champ in champions(registry, config.bars.interval):
        stored = run_config(db.conn, registry.get(champ.model_id).run_id)
        interval = stored.get("bars", {}).get("interval") if stored else None
        if interval:
            interval = from_stored({"bars": {"interval": interval}}, "the champion's run") \
                .bars.interval
        out.append(Champion(champ.symbol, champ.model_id, champ.booster,
                            interval or config.bars.interval))
    return out


def _run(name: str, config: Config, champ: Champion, candles: Path | None) -> list[Outcome]:
    if name == "historical":
        return historical(config, champ, candles)
    s = scenario(name, bar_s=bar_seconds(champ.interval), seed=config.stress.seed,
                 warmup_bars=config.stress.warmup_bars)
    return [run_simulated(config, champ, s)]


def historical(config: Config, champ: Champion, path: Path | None) -> list[Outcome]:
    """The worst ``stress.windows`` windows of the candle file, each its own scenario."""
    skip = Outcome("historical", "the worst peak-to-trough windows of a candle file")
    if path is None:
        if not DEFAULT_CANDLES.exists():
            return [_skip(skip, f"no candle file: pass --candles PATH ({DEFAULT_CANDLES} is "
                                "not here)")]
        path = DEFAULT_CANDLES
    if not path.exists():
        raise AresError(f"--candles {path}: no such file")
    candles = history.load_candles(path)
    step = parse_interval(champ.interval)
    if candles.step_ns != step:
        if candles.step_ns > step or step % candles.step_ns:
            return [_skip(skip, f"{path.name} has {_dur(candles.step_ns)} candles; the champion "
                                f"trades {champ.interval} bars, which coarser candles cannot make")]
        candles = history.resample(candles, step)
    max_bars = max(1, int(config.stress.window_days * 86_400e9 // step))
    windows = history.worst_windows(candles.ohlcv[:, 3], config.stress.windows,
                                    max_bars=max_bars)
    return [_window(config, champ, candles, w, path) for w in windows]


def _window(config: Config, champ: Champion, candles: history.Candles, w: history.Window,
            path: Path) -> Outcome:
    lo = max(0, w.peak - config.stress.warmup_bars)
    klines = history.to_klines(candles, champ.symbol, champ.interval, lo, w.trough)
    peak_end = int(candles.open_ns[w.peak]) + candles.step_ns
    stamp = time.strftime("%Y-%m-%d", time.gmtime(peak_end / 1e9))
    out = Outcome(f"historical {stamp}", f"{path.name}: the close fell {w.fall:.1%} in "
                  f"{w.trough - w.peak:,} bars after {stamp}", champ.symbol, peak_end, peak_end)
    return run_items(config, champ, klines, trade_from_ns=peak_end - candles.step_ns,
                     outcome=out)


def _skip(out: Outcome, why: str) -> Outcome:
    out.skipped = why
    return out


def _dur(ns: int) -> str:
    s = ns // 1_000_000_000
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def summary(results: Sequence[Outcome], config: Config) -> str:
    """The last line: how many ran, passed, failed (which, and why) and were skipped."""
    ran = [r for r in results if not r.skipped]
    failed = [r for r in ran if not r.passed(config)]
    skipped = len(results) - len(ran)
    tail = f", {skipped} skipped" if skipped else ""
    if failed:
        why = "; ".join(f"{r.name}: loss {-r.ret:.2%}, drawdown {r.max_drawdown:.2%}"
                        for r in failed)
        return (f"stress: FAILED — {len(failed)} of {len(ran)} scenarios past the limits "
                f"(max_loss {config.stress.max_loss:.1%}, max_drawdown "
                f"{config.stress.max_drawdown:.1%}): {why}{tail}")
    return f"stress: all {len(ran)} scenarios passed{tail}"
