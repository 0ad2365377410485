"""What a report shows, as plain arrays: the contract between loading (:mod:`.data`), the
figures (:mod:`.figures`) and the page (:mod:`.html`).

Times are ``datetime64[ns]`` arrays in UTC (naive); prices and money in the quote asset. Every
array of one table has the same length; an empty table has zero-length arrays, never ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ares_stream.validation.risk import MonteCarlo, TailRisk

__all__ = ["Drift", "Equity", "FeatureDrift", "Fills", "Health", "Importance", "Prices",
           "ReportData", "Risk", "RunInfo", "Scores", "Uses", "Validation"]


def _times() -> np.ndarray:
    return np.array([], dtype="datetime64[ns]")


def _floats() -> np.ndarray:
    return np.array([], dtype=np.float64)


@dataclass
class RunInfo:
    """The run a report covers: its mode, status, bar interval, symbols and wall-clock span."""
    id: int
    mode: str  # replay | paper | live
    status: str  # running | finished | failed | interrupted
    db_path: str
    interval: str  # bar interval, e.g. "1s", "1m"
    bar_ns: int
    symbols: list[str]
    started_at: int  # wall clock, ns
    ended_at: int | None
    since: np.datetime64 | None = None  # the report covers event times from here (None: all)
    sources: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)  # what SQLite's quick_check found wrong


@dataclass
class Equity:
    """One row per bar the broker marked: equity, drawdown from the running peak, fees so far."""

    time: np.ndarray = field(default_factory=_times)
    equity: np.ndarray = field(default_factory=_floats)
    drawdown: np.ndarray = field(default_factory=_floats)  # a fraction, >= 0
    fees: np.ndarray = field(default_factory=_floats)


@dataclass
class Prices:
    """Close of every predicted bar of one symbol, and the position held after each fill."""

    symbol: str
    time: np.ndarray = field(default_factory=_times)
    close: np.ndarray = field(default_factory=_floats)
    position_time: np.ndarray = field(default_factory=_times)  # step function: from this time…
    position: np.ndarray = field(default_factory=_floats)  # …the base-asset quantity held


@dataclass
class Fills:
    """Every fill in time order: symbol, side, quantity, price and fee (quote asset)."""
    time: np.ndarray = field(default_factory=_times)
    symbol: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    side: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))  # BUY | SELL
    qty: np.ndarray = field(default_factory=_floats)
    price: np.ndarray = field(default_factory=_floats)
    fee: np.ndarray = field(default_factory=_floats)
    client_id: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))  # order's


@dataclass
class Scores:
    """Labelled predictions in time order: the label and each model's P(label = 1).

    ``booster`` is NaN where no champion booster existed (or the database predates it);
    ``ensemble`` is the probability the broker traded on.
    """

    time: np.ndarray = field(default_factory=_times)
    label: np.ndarray = field(default_factory=_floats)
    river: np.ndarray = field(default_factory=_floats)
    booster: np.ndarray = field(default_factory=_floats)
    ensemble: np.ndarray = field(default_factory=_floats)
    symbol: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))  # per row;
    # empty: one symbol (older callers)


@dataclass
class Drift:
    """Drift events in time order: the symbol, the mean loss before and after the change (ADWIN);
    a "features" event holds the PSI threshold and the check's largest PSI there instead."""
    time: np.ndarray = field(default_factory=_times)
    symbol: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    mean_before: np.ndarray = field(default_factory=_floats)
    mean_after: np.ndarray = field(default_factory=_floats)
    detector: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))  # adwin…


@dataclass
class Validation:
    """One promotion decision and its walk-forward fold rows (``validations.fold_table``)."""

    time: np.datetime64
    symbol: str
    challenger: str
    incumbent: str
    improvement: float | None  # mean per-fold log-loss gain of the challenger
    promoted: bool
    reason: str
    folds: list[dict[str, Any]]  # fold, candidate, n, log_loss, brier, roc_auc, accuracy, ...


@dataclass
class Health:
    """Feed incidents at their receive time: ``kind`` gap | rejected | disconnected | …;
    ``count`` is ids/bars missing (gap) or frames (rejected), 1 for a connection notice."""

    time: np.ndarray = field(default_factory=_times)
    kind: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    count: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))
    detail: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    totals: dict[str, int] = field(default_factory=dict)  # frames, rejected, gaps, reconnects…


@dataclass
class Importance:
    """One row per (booster, feature) of a symbol's boosters, oldest version first: the model's
    mean |SHAP| of the feature as a share of the model's total (rows of a model sum to 1)."""

    symbol: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    version: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))
    model_id: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))
    feature: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    share: np.ndarray = field(default_factory=_floats)  # mean |SHAP| / the model's sum
    gain: np.ndarray = field(default_factory=_floats)  # share of the booster's gain
    shap: np.ndarray = field(default_factory=_floats)  # mean |SHAP| (log-odds)


@dataclass
class FeatureDrift:
    """Features a scheduled drift check found drifted (PSI past its threshold), in time order."""

    time: np.ndarray = field(default_factory=_times)
    symbol: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    feature: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    psi: np.ndarray = field(default_factory=_floats)
    ks: np.ndarray = field(default_factory=_floats)
    threshold: np.ndarray = field(default_factory=_floats)  # the PSI it had to exceed


@dataclass
class Coefficients:
    """The online learner's weights on its standardized inputs, read on the feature check's
    clock, in time order."""

    time: np.ndarray = field(default_factory=_times)
    symbol: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    feature: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    coef: np.ndarray = field(default_factory=_floats)


@dataclass
class Uses:
    """What the models use: booster importance across versions, each symbol's champion booster
    (model id), drifted features, and why each order was sent (client id → ranked
    ``(feature, value, contribution)``)."""

    importance: Importance = field(default_factory=Importance)
    champions: dict[str, int] = field(default_factory=dict)
    feature_drift: FeatureDrift = field(default_factory=FeatureDrift)
    reasons: dict[str, list[tuple[str, float | None, float]]] = field(default_factory=dict)
    coefficients: Coefficients = field(default_factory=Coefficients)


@dataclass
class Risk:
    """The section "Risk" (:mod:`.risk`): the Monte Carlo of the strategy's returns on its
    ``basis`` period (``daily``, or an intraday grid for a short run) with the realised equity
    on that grid, and daily VaR/ES by series ("strategy", "<SYMBOL> buy-and-hold"); ``days``
    counts each series' daily returns, those with too few have no ``tails`` entry."""

    basis: str = ""  # "daily" | "20s" …: the period the Monte Carlo resampled
    intraday: bool = False  # True: a short run's grid, its annualised Sharpe is indicative
    time: np.ndarray = field(default_factory=_times)  # end of each period, the start first
    realised: np.ndarray = field(default_factory=_floats)  # equity sampled there
    monte_carlo: MonteCarlo | None = None
    tails: dict[str, list[TailRisk]] = field(default_factory=dict)
    days: dict[str, int] = field(default_factory=dict)
    why: str = "no equity"  # why there is no Monte Carlo


@dataclass
class ReportData:
    """Everything a report shows, as :mod:`.data` loads it for :mod:`.figures` and :mod:`.html`."""
    run: RunInfo
    equity: Equity
    prices: list[Prices]
    fills: Fills
    scores: Scores
    drifts: Drift
    promotions: list[Validation]  # the promoted decisions, in time order
    validations: list[Validation]  # the newest decisions (newest last), for the fold tables
    health: Health
    summary: dict[str, Any]  # see metrics.summary: return, sharpe, ... and how they were computed
    uses: Uses = field(default_factory=Uses)  # importance, feature drift, why each order
    risk: Risk = field(default_factory=Risk)  # Monte Carlo, VaR/ES (see report.risk.assess)
    regimes: dict[str, list[Any]] = field(default_factory=dict)  # symbol -> RegimeRow list
    stress: dict[str, Any] = field(default_factory=dict)  # the last `ares-stream stress` run
