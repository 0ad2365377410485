"""The heavy batch jobs, as plain top-level functions run in a worker process.

They take numpy arrays and booster blobs (UBJSON) and return plain data, so they pickle across a
process boundary and never hold the engine's GIL: XGBoost fits, and the walk-forward
re-validation (River is pure Python; in a thread it would stall the engine).

- :func:`train` continues the lineage (warm start or refresh) or refits on the window;
  every booster a job returns carries its importance per feature (gain share, mean |SHAP| on
  the window's rows, :mod:`ares_stream.learners.importance`) in ``meta["importance"]``;
- :func:`validate` runs the purged walk-forward over the buffer window for every candidate, picks
  the challenger, asks the promotion gate, and — when the winning challenger is the refit recipe —
  fits the model that will be promoted on the whole window. With a :class:`Tuned` search result
  the ``xgb_tuned`` recipe (the search's best parameters) competes too, and the gate charges it
  for every configuration the search tried (the deflated Sharpe, :mod:`ares_stream.batch.tuning`).

A model trained on everything up to now can only be judged on later data, so stored models are
scored as **policies by what they would really have predicted**: at each row, the lineage's
latest booster trained before it (minus the purge), and the champion in force at that row. Rows
where a policy had no model fall back to the fold's constant prior. Recipes — a fresh XGBoost
refit, the River learner, the baselines — are refit per fold and are out of sample by design.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ares_stream.config import Config
from ares_stream.learners import booster as bst
from ares_stream.learners import importance
from ares_stream.learners.online import make_model, model_options
from ares_stream.rule import Rule
from ares_stream.validation import promotion as gate
from ares_stream.validation import regimes, risk, splits, walkforward

NS_PER_YEAR = 365 * 86_400 * 10**9


@dataclass(frozen=True)
class Window:
    """A copy of a buffer window: what a job trains or validates on (``close``: each row's bar
    close, where validation trades the broker's rule; None or NaN where unknown)."""

    ts: np.ndarray
    X: np.ndarray
    y: np.ndarray
    fwd: np.ndarray
    features: tuple[str, ...]
    close: np.ndarray | None = None


@dataclass(frozen=True)
class Blob:
    """A booster crossing the process boundary: UBJSON plus the registry metadata."""

    data: bytes
    meta: dict[str, Any]
    model_id: int | None = None
    packed: bool = False  # ``data`` is zlib-compressed UBJSON: a booster held for later


def pack(blob: Blob) -> Blob:
    """``blob`` as a symbol holds it between uses (its lineage, its champions): the UBJSON
    compressed, ~3.6x smaller (zlib level 1, ~0.3 ms a booster); :func:`from_blob` reads both."""
    if blob.packed:
        return blob
    return Blob(zlib.compress(blob.data, 1), blob.meta, blob.model_id, True)


def to_blob(tb: bst.TrainedBooster, model_id: int | None = None) -> Blob:
    """The booster as a :class:`Blob`: its UBJSON and registry metadata, tagged ``model_id``."""
    meta = {"features": list(tb.features), "feature_hash": tb.feature_hash, "params": tb.params,
            "n_trees": tb.n_trees, "how": tb.how, "train_start": tb.train_start,
            "train_end": tb.train_end, "rows": tb.rows, "versions": tb.versions}
    return Blob(bst.to_ubjson(tb), meta, model_id)


def from_blob(blob: Blob) -> bst.TrainedBooster:
    """The booster a :class:`Blob` carries, rebuilt from its UBJSON and metadata."""
    return bst.from_ubjson(ubjson(blob), blob.meta)


def ubjson(blob: Blob) -> bytes:
    """The booster's UBJSON, packed or not."""
    return zlib.decompress(blob.data) if blob.packed else blob.data


def train(window: Window, since: int, parent: Blob | None, settings: bst.BoosterSettings,
          force_refit: bool) -> Blob:
    """Warm-start (or refresh) ``parent`` on the rows after ``since``, or refit on the window.
    The wall time of the fit is ``meta["fit_s"]``."""
    started = time.perf_counter()
    if parent is None:
        tb = bst.fit(window.X, window.y, window.ts, window.features, settings)
    else:
        new = window.ts > since
        tb = bst.update(from_blob(parent), window.X[new], window.y[new], window.ts[new],
                        window.features, settings, X_window=window.X, y_window=window.y,
                        ts_window=window.ts, force_refit=force_refit)
    blob = explained(tb, window)
    blob.meta["fit_s"] = time.perf_counter() - started
    return blob


def explained(tb: bst.TrainedBooster, window: Window) -> Blob:
    """The booster as a :class:`Blob` with its importance on the window's rows (at most
    :data:`~ares_stream.learners.importance.SAMPLE`, seeded); ``meta["explain_s"]``: its cost."""
    started = time.perf_counter()
    blob = to_blob(tb)
    blob.meta["importance"] = importance.booster_importance(tb, window.X)
    blob.meta["explain_s"] = time.perf_counter() - started
    return blob


@dataclass(frozen=True)
class ValidationSpec:
    """The walk-forward settings of a validation job (see :func:`spec_of`), plain to pickle."""
    horizon: int
    folds: int
    expanding: bool
    embargo: int
    margin: float
    n_boot: int
    rule: Rule  # the broker's trading rule: every candidate's fold PnL is after its costs
    confidence: float  # after-cost edge: this bootstrap CI of the mean fold PnL above 0
    river_model: str
    seed: int
    river_options: tuple[tuple[str, Any], ...] = ()  # make_model keyword options
    min_dsr: float = 0.95  # a tuned challenger's deflated Sharpe must reach this


@dataclass(frozen=True)
class Tuned:
    """The outcome of a hyperparameter search that validation tries as ``xgb_tuned``: its
    settings and what the deflated Sharpe needs (how many trials, their Sharpe ratios)."""
    settings: bst.BoosterSettings
    n_trials: int
    trial_sharpes: tuple[float, ...]
    study: str = ""


def settings_of(config: Config) -> bst.BoosterSettings:
    """The booster settings of a config's [batch] section."""
    b = config.batch
    return bst.BoosterSettings(rounds_refit=b.rounds_refit, rounds_update=b.rounds_update,
                               max_trees=b.max_trees, mode=b.mode)


def spec_of(config: Config) -> ValidationSpec:
    """The walk-forward specification of a config."""
    b = config.batch
    return ValidationSpec(
        horizon=config.labels.horizon, folds=b.folds, expanding=b.window == "expanding",
        embargo=b.embargo, margin=b.margin, n_boot=b.bootstrap,
        rule=Rule.from_config(config.trading), confidence=b.edge_confidence,
        river_model=config.learner.model, seed=config.learner.seed,
        river_options=tuple(model_options(config.learner).items()),
        min_dsr=config.tuning.min_dsr)


@dataclass(frozen=True)
class ValidationOutcome:
    """What a validation found: the gate's decision, the fold results, their table and summary."""
    decision: gate.Decision
    results: list[walkforward.FoldResult]
    table: str
    refit: Blob | None  # the refit recipe's model on the whole window
    summary: dict[str, dict[str, float]]
    edges: dict[str, gate.Edge]  # per candidate: does it make money after costs
    regimes: dict[str, list[regimes.RegimeRow]] | None = None  # per candidate, folds merged
    monte_carlo: dict[str, risk.MonteCarlo] | None = None  # per traded candidate
    tuned: Blob | None = None  # the tuned recipe's model on the whole window, when it won
    deflated: gate.Deflated | None = None  # the tuned challenger's deflated Sharpe
    selected: Any = None  # batch.selecting.Selected: the feature selection, when one ran


Timeline = list[tuple[int, Blob]]  # (event time the model came into force, the model)


def folds_of(n: int, spec: ValidationSpec) -> list[splits.Fold]:
    """The purged, embargoed walk-forward folds of a validation (and of every tuning trial) over
    ``n`` rows: test blocks over the last half of the window."""
    return splits.walk_forward(n, n_folds=spec.folds, test_size=n // (2 * spec.folds),
                               horizon=spec.horizon, embargo=spec.embargo,
                               expanding=spec.expanding,
                               max_train=None if spec.expanding else n // 2,
                               min_train=max(50, n // (4 * spec.folds)))


def refit_recipe(name: str, features: tuple[str, ...],
                 settings: bst.BoosterSettings) -> walkforward.RefitCandidate:
    """A fresh booster of ``settings`` fitted on each fold's rows: a walk-forward candidate."""

    def recipe(X: np.ndarray, y: np.ndarray) -> Any:
        tb = bst.fit(X, y, np.arange(len(y), dtype=np.int64), features, settings)
        return lambda Xt: bst.predict(tb, Xt)

    return walkforward.RefitCandidate(name, recipe)


def validate(window: Window, spec: ValidationSpec, settings: bst.BoosterSettings,
             champions: Timeline, lineage: Timeline,
             tuned: Tuned | None = None, extra: Sequence[Any] = ()) -> ValidationOutcome:
    """Walk-forward over the window: recipes refit per fold, stored models scored out of sample."""
    folds = folds_of(len(window.y), spec)
    cands = [*_candidates(window, spec, settings, champions, lineage), *extra]  # extra:
    # candidates of the caller's (feature selection's xgb_selected, batch/selecting.py)
    if tuned is not None:
        cands.append(refit_recipe("xgb_tuned", window.features, tuned.settings))
    close = window.close
    labels = (regimes.label(close) if close is not None and len(close)
              and np.isfinite(close).all() else None)
    results = walkforward.run_walk_forward(
        window.X, window.y, window.fwd, folds, cands, horizon=spec.horizon, rule=spec.rule,
        close=close, periods_per_year=bars_per_year(window.ts), regime_labels=labels)
    summary = walkforward.summary_by_candidate(results)
    edges = edges_of(results, confidence=spec.confidence, n_boot=spec.n_boot, seed=spec.seed)
    deflated = None
    if tuned is not None and "xgb_tuned" in summary:
        deflated = gate.deflated_sharpe(_returns(results, "xgb_tuned"), tuned.trial_sharpes,
                                        tuned.n_trials)
    decision = _decide(results, summary, spec, deflated)
    # the refit recipe's model on the whole window: promoted when it won, else the lineage's
    # next booster (a fresh fit every validation, as a daily refit on a trailing window)
    refit = explained(bst.fit(window.X, window.y, window.ts, window.features, settings), window)
    by_regime = {c: regimes.summary([r.regimes for r in results if r.candidate == c])
                 for c in dict.fromkeys(r.candidate for r in results)}
    mc = monte_carlo_of(results, bars_per_year(window.ts), spec.seed)
    table = walkforward.fold_table(results) + regime_table(by_regime) + monte_carlo_table(mc)
    fitted = None
    if tuned is not None and decision.promote and decision.challenger == "xgb_tuned":
        fitted = explained(bst.fit(window.X, window.y, window.ts, window.features,
                                   tuned.settings), window)
    return ValidationOutcome(decision, results, table, refit, summary, edges, by_regime, mc,
                             fitted, deflated)


def _returns(results: list[walkforward.FoldResult], candidate: str) -> np.ndarray:
    """A candidate's out-of-sample per-bar rule returns, its folds' test rows in order."""
    parts = [r.returns for r in results if r.candidate == candidate and r.returns is not None]
    return np.concatenate(parts) if parts else np.empty(0)


MC_CANDIDATES = ("river", "xgb_refit", "champion")  # the validation table's Monte Carlo rows
MC_PERIODS = 2_000  # at most this many periods resampled: longer series are compounded first
MC_PATHS = 200  # paths per candidate: a validation runs daily, a replay of years runs thousands


def monte_carlo_of(results: list[walkforward.FoldResult], periods_per_year: float,
                   seed: int) -> dict[str, risk.MonteCarlo]:
    """Per shown candidate, a block bootstrap of its out-of-sample returns (its folds' test
    rows, in order): the spread of what its walk-forward could have made. A series longer than
    :data:`MC_PERIODS` bars is compounded into that many periods of consecutive bars first (the
    same final returns and drawdowns between periods; a validation stays a few ms, not seconds)."""
    out = {}
    for c in MC_CANDIDATES:
        parts = [r.returns for r in results if r.candidate == c and r.returns is not None]
        if parts:
            r, k = _periods(np.concatenate(parts))
            out[c] = risk.monte_carlo(r, periods_per_year / k, n_paths=MC_PATHS, seed=seed)
    return out


def _periods(returns: np.ndarray) -> tuple[np.ndarray, int]:
    """``returns`` compounded over groups of ``k`` consecutive bars (k = 1 when short)."""
    k = max(1, -(-len(returns) // MC_PERIODS))
    if k == 1:
        return returns, 1
    n = len(returns) // k * k
    grouped = np.prod(1.0 + returns[:n].reshape(-1, k), axis=1) - 1.0
    tail = returns[n:]
    if tail.size:
        grouped = np.append(grouped, np.prod(1.0 + tail) - 1.0)
    return grouped, k


def monte_carlo_table(mc: dict[str, risk.MonteCarlo],
                      shown: tuple[str, ...] = ("river", "xgb_refit", "champion")) -> str:
    """The Monte Carlo lines of the validation table ("" when nothing was traded)."""
    lines = [f"{c:<10} {m.final_return[0]:>+8.4f} {m.final_return[2]:>+8.4f} "
             f"{m.final_return[4]:>+8.4f} {m.max_drawdown[2]:>7.4f} {m.max_drawdown[4]:>7.4f} "
             f"{m.p_loss:>6.1%} {m.block:>6}"
             for c in shown if (m := mc.get(c)) is not None and m.horizon]
    if not lines:
        return ""
    head = (f"\nmonte carlo (block bootstrap of the out-of-sample per-bar PnL, {MC_PATHS} "
            "paths)\n"
            f"{'candidate':<10} {'ret 5%':>8} {'ret 50%':>8} {'ret 95%':>8} {'dd 50%':>7} "
            f"{'dd 95%':>7} {'P loss':>6} {'block':>6}")
    return "\n".join([head, *lines])


def regime_table(by_regime: dict[str, list[regimes.RegimeRow]],
                 shown: tuple[str, ...] = ("prior", "river", "xgb_refit", "champion")) -> str:
    """The per-regime lines of the validation table ("" without regimes): each shown
    candidate's rows, log loss, hit rate and rule PnL per regime and at transitions."""
    lines = [f"{c:<10} {r.regime:<14} {r.n:>7,} {r.share:>6.1%} {r.log_loss:>8.4f} "
             f"{r.hit_rate:>6.2f} {r.pnl:>+9.4f}"
             for c in shown for r in by_regime.get(c, [])]
    if not lines:
        return ""
    head = (f"\nper regime (causal: volatility tercile x trend; {regimes.TRANSITION}: the bars "
            f"just after a change)\n{'candidate':<10} {'regime':<14} {'rows':>7} {'share':>6} "
            f"{'logloss':>8} {'hit':>6} {'pnl':>9}")
    return "\n".join([head, *lines])


def edges_of(results: list[walkforward.FoldResult], *, confidence: float, n_boot: int,
             seed: int) -> dict[str, gate.Edge]:
    """Each candidate's after-cost edge from its fold PnLs (:func:`gate.edge`)."""
    names = dict.fromkeys(r.candidate for r in results)
    return {name: gate.edge(walkforward.fold_pnls(results, name), confidence=confidence,
                            n_boot=n_boot, seed=seed) for name in names}


def _candidates(window: Window, spec: ValidationSpec, settings: bst.BoosterSettings,
                champions: Timeline, lineage: Timeline) -> list[Any]:

    cands: list[Any] = [
        walkforward.ConstantPrior(), walkforward.Persistence(),
        walkforward.RiverCandidate("river", lambda: make_model(  # the traded learner's recipe
            spec.river_model, seed=spec.seed, delay=spec.horizon, **dict(spec.river_options))),
        refit_recipe("xgb_refit", window.features, settings),
    ]
    cands.append(walkforward.Realized("champion", realized(window, champions, spec.horizon)))
    if champions:  # the champion model itself, re-measured wherever it is out of sample
        current = realized(window, champions[-1:], spec.horizon)
        cands.append(walkforward.Realized("current", current, fill_prior=False))
    if lineage:
        cands.append(walkforward.Realized("lineage", realized(window, lineage, spec.horizon)))
    return cands


def realized(window: Window, timeline: Timeline, horizon: int) -> np.ndarray:
    """Per row, the prediction of the model in force and out of sample there (NaN: none).

    A model is in force from the later of the row at which it came into force and the first
    row after its training end plus the horizon, until the next model takes over.
    """
    ts, n = window.ts, len(window.ts)
    starts = []
    for since, blob in timeline:
        tb = from_blob(blob)
        oos = int(np.searchsorted(ts, tb.train_end, side="right")) + horizon
        starts.append((max(oos, int(np.searchsorted(ts, since, side="left"))), tb))
    p = np.full(n, np.nan)
    for k, (start, tb) in enumerate(starts):
        later = [s for s, _ in starts[k + 1:]]
        end = min([n, *later])
        if start < end:
            p[start:end] = bst.predict(tb, window.X[start:end], window.features)  # by name
    return p


def _decide(results: list[walkforward.FoldResult], summary: dict[str, dict[str, float]],
            spec: ValidationSpec, deflated: gate.Deflated | None = None) -> gate.Decision:
    """Challenger: the best of the refit recipe, the booster lineage and the tuned recipe;
    incumbent: the champion policy (the prior where no champion was in force). A tuned
    challenger also needs its deflated Sharpe (``spec.min_dsr``)."""
    names = [c for c in ("xgb_refit", "lineage", "xgb_tuned", "xgb_selected") if c in summary]
    challenger = gate.pick_challenger(summary, names)
    return gate.decide(challenger, walkforward.fold_losses(results, challenger), "champion",
                       walkforward.fold_losses(results, "champion"), margin=spec.margin,
                       n_boot=spec.n_boot, seed=spec.seed,
                       challenger_pnls=walkforward.fold_pnls(results, challenger),
                       confidence=spec.confidence,
                       deflated=deflated if challenger == "xgb_tuned" else None,
                       min_dsr=spec.min_dsr)


def bars_per_year(ts: np.ndarray) -> float:
    """Bars per year, from the window's typical bar spacing."""
    if len(ts) < 2:
        return 1.0
    step = float(np.median(np.diff(ts)))
    return NS_PER_YEAR / max(step, 1.0)
