"""One stress scenario through the engine: the frozen champion, the paper broker and its kill
switches, and what the account went through (:class:`Outcome`).

:class:`FrozenChampion` is the engine's batch collaborator: the champion booster loaded once from
the registry answers every bar, traded as it is; nothing is trained, validated, promoted or
written. :class:`StressBroker` is the paper broker keeping its equity per bar, the first kill
switch to trip and the quote paid to slippage.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ares_stream.batch.learner import Blend
from ares_stream.config import Config, replace_values
from ares_stream.engine import Engine
from ares_stream.errors import AresError
from ares_stream.events import Bar
from ares_stream.features.bars import parse_interval
from ares_stream.feed import RawFrame
from ares_stream.learners import booster as bst
from ares_stream.learners.registry import Registry
from ares_stream.sim.scenarios import Scenario
from ares_stream.sim.simulator import frames
from ares_stream.trading.paper import PaperBroker

__all__ = ["Champion", "FrozenChampion", "Outcome", "StressBroker", "champions", "run_items",
           "run_simulated"]

NS = 1_000_000_000


@dataclass(frozen=True)
class Champion:
    """A symbol's champion booster, loaded, and the bar interval it was trained on."""

    symbol: str
    model_id: int
    booster: bst.TrainedBooster
    interval: str


def champions(registry: Registry, interval: str) -> list[Champion]:
    """Every symbol's champion booster (``interval``: the bar interval of the run that trained
    them); an :class:`AresError` saying what to do when there is none."""
    found = []
    for symbol in sorted({m.symbol for m in registry.list()}):
        rec = registry.champion(symbol)
        if rec is not None:
            found.append(Champion(symbol, rec.id, registry.load_booster(rec.id), interval))
    if not found:
        raise AresError("the database has no champion booster to stress: run a replay or the "
                        "daemon with batch learning until a booster is promoted "
                        "(`ares-stream models` lists them)")
    return found


class FrozenChampion:
    """The engine's batch collaborator for a stress run: the stored champion's probability on
    every bar, and nothing learned (module docstring)."""

    def __init__(self, champion: Champion) -> None:
        self.champion = champion
        self.counts: dict[str, int] = {}  # no boosters trained, no validations

    def blend(self, symbol: str, x: dict[str, float], p_online: float) -> Blend:
        """The champion's P(up) is the forecast and what trades."""
        p = bst.predict_one(self.champion.booster, x)
        return Blend(p, p, p, "")

    def tick(self, symbol: str, ts: int) -> None:
        """Nothing periodic: no training, no validation."""

    def apply_due(self, ts: int) -> None:
        """No jobs."""

    def on_sample(self, symbol: str, ts: int, x: dict[str, float], label: int,
                  forward_return: float, close: float) -> None:
        """Labelled samples are not buffered: the champion stays as stored."""

    def on_drift(self, symbol: str, ts: int) -> None:
        """No refit on drift."""

    def finish(self, ts: int) -> None:
        """No worker to stop."""

    def stop(self) -> None:
        """No worker to stop."""

    def flush(self) -> None:
        """Nothing buffered."""


class _NullSink:
    """The engine's results are not stored: a stress run writes nothing."""

    def __getattr__(self, name: str) -> Any:
        return _ignore


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


class StressBroker(PaperBroker):
    """The paper broker, also keeping the equity of every bar, the first kill switch to trip
    (and its event time) and the quote paid to slippage."""

    def __init__(self, config: Config) -> None:
        super().__init__(config.trading, None)
        self.curve: list[float] = []
        self.switch: tuple[str, int] | None = None
        self.slippage = 0.0

    def on_bar(self, bar: Bar, p: float, blocked: str = "") -> None:
        """The paper broker's bar, then its equity and a newly tripped switch noted."""
        super().on_bar(bar, p, blocked)
        self.curve.append(self.equity)
        if self.switch is None and self.risk.tripped:
            self.switch = (self.risk.tripped, bar.ts_event)

    def _fill(self, o: Any, ref: float, ts_event: int, price: float) -> None:
        pos = self.positions.get(o.symbol)
        before = pos.qty if pos is not None else 0.0
        super()._fill(o, ref, ts_event, price)
        self.slippage += abs(self.positions[o.symbol].qty - before) * abs(price - ref)


@dataclass
class Outcome:
    """What one scenario did to the account (or why it was skipped)."""

    name: str
    description: str
    symbol: str = ""
    start_ns: int = 0  # trading starts
    shock_ns: int | None = None  # the shock starts (simulated), or the peak (historical)
    end_ns: int = 0
    bars: int = 0
    fills: int = 0
    fees: float = 0.0
    slippage: float = 0.0
    ret: float = 0.0  # equity change / starting equity
    max_drawdown: float = 0.0
    switch: tuple[str, int] | None = None
    blocked: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # wall time
    skipped: str = ""  # why it did not run

    def passed(self, cfg: Config) -> bool:
        """Within ``[stress]`` max_loss and max_drawdown (a skipped scenario passes nothing)."""
        return (not self.skipped and -self.ret <= cfg.stress.max_loss
                and self.max_drawdown <= cfg.stress.max_drawdown)


def run_config(config: Config, champion: Champion) -> Config:
    """``config`` for one symbol's stress run: its symbol and the champion's bar interval."""
    return replace_values(config, {"feed": {"symbols": [champion.symbol]},
                                   "bars": {"interval": champion.interval},
                                   "batch": {"enabled": False}},  # nothing is trained
                          source="stress")


def run_items(config: Config, champion: Champion, items: Iterable[Any], *, trade_from_ns: int,
              outcome: Outcome) -> Outcome:
    """Replay ``items`` (raw frames or events) through an engine trading the frozen champion
    from ``trade_from_ns`` on; fills ``outcome`` with what the account went through."""
    cfg = run_config(config, champion)
    broker = StressBroker(cfg)
    engine = Engine(cfg, _NullSink(), batch=FrozenChampion(champion), broker=broker)
    engine.gate.live_from[champion.symbol] = trade_from_ns
    started = time.perf_counter()
    feed = engine.feed
    for item in items:
        feed(item)
    return _filled(outcome, broker, cfg, engine.last_ts, time.perf_counter() - started)


def _filled(out: Outcome, broker: StressBroker, cfg: Config, end_ns: int,
            seconds: float) -> Outcome:
    start = cfg.trading.starting_cash
    return replace(out, end_ns=end_ns, bars=len(broker.curve), fills=broker.fills,
                   fees=broker.fees_paid, slippage=broker.slippage,
                   ret=broker.equity / start - 1.0, max_drawdown=max_drawdown(broker.curve,
                                                                            start),
                   switch=broker.switch, blocked=dict(broker.blocked), seconds=seconds)


def max_drawdown(curve: list[float], start: float) -> float:
    """The largest fall of equity below its running peak, as a fraction of that peak.

    >>> max_drawdown([10.0, 12.0, 9.0, 11.0, 13.0], 10.0)
    0.25
    """
    peak, worst = start, 0.0
    for equity in curve:
        peak = max(peak, equity)
        worst = max(worst, 1.0 - equity / peak if peak > 0 else 0.0)
    return worst


def run_simulated(config: Config, champion: Champion, scenario: Scenario) -> Outcome:
    """A simulated scenario (its spec made for the champion's symbol) through the engine."""
    spec = replace(scenario.spec, symbol=champion.symbol)
    items = _raw(frames(spec))
    out = Outcome(scenario.name, scenario.description, champion.symbol, scenario.trade_from_ns,
                  scenario.shock_ns)
    return run_items(config, champion, items, trade_from_ns=scenario.trade_from_ns, outcome=out)


def _raw(gen: Iterable[tuple[int, str, bytes]]) -> Iterator[RawFrame]:
    """Simulator frames as the combined-stream frames a recording replays."""
    for recv, stream, payload in gen:
        yield RawFrame(recv, b'{"stream":"%s","data":%s}' % (stream.encode(), payload))


def bar_seconds(interval: str) -> int:
    """A bar interval in whole seconds (``10s`` → 10)."""
    return max(1, parse_interval(interval) // NS)


def when(ts_ns: int, since_ns: int) -> str:
    """``ts_ns`` as UTC, and how far after ``since_ns`` (``+H:MM:SS``)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ns / NS))
    return f"{stamp} UTC ({_span(ts_ns - since_ns)} in)"


def _span(ns: int) -> str:
    s = round(ns / NS)
    sign = "-" if s < 0 else "+"
    s = abs(s)
    days, rest = divmod(s, 86_400)
    clock = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{sign}{days}d {clock}" if days else f"{sign}{clock}"


def format_outcome(out: Outcome, cfg: Config) -> str:
    """One scenario's lines of the report."""
    if out.skipped:
        return f"{out.name:<12} SKIPPED  {out.skipped}"
    verdict = "PASS" if out.passed(cfg) else "FAIL"
    head = (f"{out.name:<12} {verdict:<8} return {out.ret:+.2%}, max drawdown "
            f"{out.max_drawdown:.2%}, {out.fills:,} fills, fees {out.fees:,.2f}, slippage "
            f"{out.slippage:,.2f} ({out.bars:,} bars, {out.seconds:.1f} s)")
    lines = [head, f"{'':<13}{out.description}"]
    if out.switch is not None:
        lines.append(f"{'':<13}kill switch: {out.switch[0]} at {when(out.switch[1], out.start_ns)}")
    else:
        lines.append(f"{'':<13}kill switch: none fired")
    if out.blocked:
        refused = ", ".join(f"{k}: {v:,}" for k, v in sorted(out.blocked.items()))
        lines.append(f"{'':<13}orders refused: {refused}")
    return "\n".join(lines)

