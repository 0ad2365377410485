"""Hyperparameter search of the booster recipe, scored by the promotion gate's own walk-forward.

Optuna's TPE sampler proposes a configuration from :data:`SPACE` (tree depth, learning rate,
number of trees of a fresh fit, row and column subsampling, minimum child weight, L2 and L1
penalties); each trial refits it on every training block of **the same purged, embargoed
walk-forward folds the gate uses** (:func:`ares_stream.batch.jobs.folds_of`) and scores it on
the test block after. The running mean of the fold log losses is reported after every fold, so a
:class:`optuna.pruners.MedianPruner` stops a trial that is worse than the median of the earlier
trials at the same fold. A trial's value is its mean fold log loss; its Sharpe ratio (per bar,
the broker's rule traded over its folds' test rows) feeds the deflated Sharpe ratio.

The search runs at an event time ``at`` on the rows whose label was known then
(:func:`known_at`): rows after it, rewritten or not, change nothing. It is seeded
(``TPESampler(seed)``), single-threaded and XGBoost is seeded too, so with ``seconds=None``
(bounded by trials alone, as in replay) the same window gives the same trials. The study lives
in Optuna's own SQLite file (``storage``, beside the state database), or in memory.

**Selection bias.** The best of N trials looks better than it is. :attr:`SearchOutcome.deflated`
is the best trial's deflated Sharpe ratio (:func:`~ares_stream.validation.promotion.
deflated_sharpe`) against the N trials; validation charges the ``xgb_tuned`` candidate the same
way (:class:`~ares_stream.batch.jobs.Tuned`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ares_stream.batch import jobs
from ares_stream.learners import booster as bst
from ares_stream.validation import promotion as gate
from ares_stream.validation import walkforward

__all__ = ["SPACE", "SearchOutcome", "SearchSpec", "Trial", "known_at", "search",
           "settings_from"]

# name: (low, high, log scale, integer); "rounds" is the number of trees of a fresh fit
SPACE: dict[str, tuple[float, float, bool, bool]] = {
    "max_depth": (2, 8, False, True),
    "eta": (0.01, 0.3, True, False),
    "rounds": (20, 300, True, True),
    "subsample": (0.5, 1.0, False, False),
    "colsample_bytree": (0.5, 1.0, False, False),
    "min_child_weight": (1.0, 100.0, True, False),
    "lambda": (1e-3, 10.0, True, False),
    "alpha": (1e-3, 10.0, True, False),
}


@dataclass(frozen=True)
class SearchSpec:
    """How long and where a search runs (plain data: it pickles into the worker)."""
    trials: int = 50
    seconds: float | None = 600.0  # None: bounded by ``trials`` alone (deterministic)
    seed: int = 0
    storage: str | None = None  # path of Optuna's SQLite file; None: in memory
    study: str = "ares-tune"  # an existing study of that name is replaced


@dataclass(frozen=True)
class Trial:
    """One configuration tried, as the search left it."""
    number: int
    state: str  # COMPLETE | PRUNED
    value: float  # mean fold log loss over the folds it reached
    folds: int  # folds scored before it ended
    sharpe: float  # per bar, the rule traded over those folds' test rows (NaN: not traded)
    params: dict[str, Any]


@dataclass(frozen=True)
class SearchOutcome:
    """A finished search: every trial, the best, and the best one's deflated Sharpe."""
    study: str
    at: int  # event time of the search (ns)
    rows: int  # rows searched on (labels known at ``at``)
    trials: tuple[Trial, ...]
    best: Trial | None  # None: no trial completed
    deflated: gate.Deflated | None
    seconds: float  # wall time
    base: bst.BoosterSettings = field(default_factory=bst.BoosterSettings)

    @property
    def pruned(self) -> int:
        return sum(t.state == "PRUNED" for t in self.trials)

    def tuned(self) -> jobs.Tuned | None:
        """What validation tries as ``xgb_tuned`` (None without a completed trial)."""
        if self.best is None:
            return None
        sharpes = tuple(t.sharpe for t in self.trials if t.state == "COMPLETE")
        return jobs.Tuned(settings_from(self.best.params, self.base), len(self.trials),
                          sharpes, self.study)


def settings_from(params: dict[str, Any], base: bst.BoosterSettings) -> bst.BoosterSettings:
    """``base`` with a trial's parameters: ``rounds`` trees per fresh fit, the rest XGBoost's.

    >>> s = settings_from({"rounds": 40, "max_depth": 3}, bst.BoosterSettings())
    >>> s.rounds_refit, s.param_dict["max_depth"], s.param_dict["eta"]
    (40, 3, 0.05)
    """
    rounds = int(params.get("rounds", base.rounds_refit))
    xgb = {k: v for k, v in params.items() if k != "rounds"}
    return dataclasses.replace(base, params=base.param_dict | xgb, rounds_refit=rounds,
                               max_trees=max(base.max_trees, rounds))


def known_at(window: jobs.Window, at: int, horizon: int) -> jobs.Window:
    """The rows of ``window`` whose label was known at event time ``at``: a row's label needs
    the close ``horizon`` bars later (the bar spacing: the median step of those rows)."""
    ts = window.ts
    early = ts[ts <= at]
    step = int(np.median(np.diff(early))) if len(early) > 1 else 0
    keep = ts + horizon * step <= at
    return jobs.Window(ts[keep], window.X[keep], window.y[keep], window.fwd[keep],
                       window.features,
                       None if window.close is None else window.close[keep])


def search(window: jobs.Window, at: int, spec: jobs.ValidationSpec,
           base: bst.BoosterSettings, how: SearchSpec,
           progress: Callable[[int, float], None] | None = None) -> SearchOutcome:
    """Search :data:`SPACE` on the rows of ``window`` known at ``at`` (module docstring).
    ``progress(trials done, best value so far)`` is called after every trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    w = known_at(window, at, spec.horizon)
    folds = jobs.folds_of(len(w.y), spec)
    returns: dict[int, np.ndarray] = {}
    study = _study(optuna, how)

    def objective(trial: Any) -> float:
        settings = settings_from({k: _suggest(trial, k, *b) for k, b in SPACE.items()}, base)
        return _score(trial, w, folds, spec, settings, returns)

    def report(study: Any, trial: Any) -> None:
        if progress is not None:
            progress(len(study.trials), _best_value(study))

    study.optimize(objective, n_trials=how.trials, timeout=how.seconds, callbacks=[report])
    return _outcome(study, how, at, len(w.y), returns, base, time.perf_counter() - started)


def _study(optuna: Any, how: SearchSpec) -> Any:
    """A fresh study: TPE seeded, median pruning from the second fold on."""
    storage = None if how.storage is None else f"sqlite:///{how.storage}"
    if storage is not None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if how.study in names:
            optuna.delete_study(study_name=how.study, storage=storage)
    return optuna.create_study(
        study_name=how.study, storage=storage, direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=how.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))


def _suggest(trial: Any, name: str, low: float, high: float, log: bool, integer: bool) -> Any:
    if integer:
        return trial.suggest_int(name, int(low), int(high), log=log)
    return trial.suggest_float(name, low, high, log=log)


def _score(trial: Any, w: jobs.Window, folds: list[Any], spec: jobs.ValidationSpec,
           settings: bst.BoosterSettings, returns: dict[int, np.ndarray]) -> float:
    """The trial's walk-forward, fold by fold: each running mean reported, pruned when weak."""
    import optuna

    cand = jobs.refit_recipe("xgb_tuned", w.features, settings)
    ppy = jobs.bars_per_year(w.ts)
    losses: list[float] = []
    rets: list[np.ndarray] = []
    for step, fold in enumerate(folds):
        [r] = walkforward.run_walk_forward(w.X, w.y, w.fwd, [fold], [cand],
                                           horizon=spec.horizon, rule=spec.rule, close=w.close,
                                           periods_per_year=ppy)
        losses.append(r.log_loss)
        if r.returns is not None:
            rets.append(r.returns)
        returns[trial.number] = np.concatenate(rets) if rets else np.empty(0)
        trial.set_user_attr("folds", step + 1)
        trial.set_user_attr("sharpe", _sharpe(returns[trial.number]))
        trial.report(float(np.nanmean(losses)), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return float(np.nanmean(losses))


def _sharpe(r: np.ndarray) -> float:
    """Mean over standard deviation of per-bar returns (NaN: fewer than 2, or no variation)."""
    if r.size < 2 or not r.std() > 0:
        return math.nan
    return float(r.mean() / r.std(ddof=1))


def _best_value(study: Any) -> float:
    done = [t.value for t in study.trials if t.value is not None]
    return min(done) if done else math.nan


def _outcome(study: Any, how: SearchSpec, at: int, rows: int, returns: dict[int, np.ndarray],
             base: bst.BoosterSettings, seconds: float) -> SearchOutcome:
    trials = tuple(
        Trial(t.number, t.state.name,
              t.value if t.value is not None else _last(t.intermediate_values),
              int(t.user_attrs.get("folds", 0)), float(t.user_attrs.get("sharpe", math.nan)),
              dict(t.params))
        for t in study.trials if t.state.name in ("COMPLETE", "PRUNED"))
    complete = [t for t in trials if t.state == "COMPLETE"]
    best = min(complete, key=lambda t: (t.value, t.number)) if complete else None
    deflated = None
    if best is not None:
        deflated = gate.deflated_sharpe(returns.get(best.number, np.empty(0)),
                                        [t.sharpe for t in complete], len(trials))
    return SearchOutcome(how.study, at, rows, trials, best, deflated, seconds, base)


def _last(values: dict[int, float]) -> float:
    return float(values[max(values)]) if values else math.nan


def row_of(outcome: SearchOutcome, run_id: int | None, symbol: str) -> Any:
    """The search as a row of the ``tuning`` table (:mod:`ares_stream.store.tuning`)."""
    import json

    from ares_stream.store.tuning import TuningRow

    best, d = outcome.best, outcome.deflated
    return TuningRow(run_id, symbol, outcome.at, outcome.study, outcome.rows, len(outcome.trials),
                     outcome.pruned, _num(best.value) if best else None,
                     json.dumps(best.params if best else {}, sort_keys=True),
                     _num(d.sharpe) if d else None, _num(d.sr0) if d else None,
                     _num(d.dsr) if d else None, outcome.seconds)


def _num(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def table(outcome: SearchOutcome, top: int = 5) -> str:
    """The best ``top`` completed trials (value, parameters), the counts and the deflated Sharpe.

    >>> t = Trial(3, "COMPLETE", 0.6812, 4, 0.05, {"eta": 0.1, "rounds": 40})
    >>> print(table(SearchOutcome("s", 0, 1000, (t,), t, None, 2.0)))
    trial   logloss  sharpe/bar  params
        3    0.6812      0.0500  eta=0.1 rounds=40
    1 trials (0 pruned) on 1,000 rows in 2 s
    """
    done = sorted((t for t in outcome.trials if t.state == "COMPLETE"),
                  key=lambda t: (t.value, t.number))[:top]
    lines = [f"{'trial':>5} {'logloss':>9} {'sharpe/bar':>11}  params"]
    lines += [f"{t.number:>5} {t.value:>9.4f} {t.sharpe:>11.4f}  "
              + " ".join(f"{k}={_short(v)}" for k, v in t.params.items()) for t in done]
    lines.append(f"{len(outcome.trials)} trials ({outcome.pruned} pruned) on {outcome.rows:,} "
                 f"rows in {outcome.seconds:.0f} s")
    if outcome.deflated is not None:
        lines.append(outcome.deflated.reason)
    return "\n".join(lines)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
