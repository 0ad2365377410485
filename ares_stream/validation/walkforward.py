"""Walk-forward evaluation: every candidate model scored on every fold, on the same rows.

A candidate turns a fold's data into P(y=1) for each test row (:class:`Candidate`). Labels are
delayed: the label of row *i* is known from row *i + horizon* on, so a candidate may use
``y_test[j]`` only from test row ``j + horizon`` (prequential learners) and never for row *j*.
Rows in the purge/embargo gap between a fold's train and test blocks are not handed to candidates.

The candidates:

- :class:`ConstantPrior` — the training base rate; the naive floor every model must beat.
- :class:`Persistence` — the last label known at row *j* (that of row *j − horizon*, or the last
  training label while *j − horizon* lies before the test block), shrunk halfway to the prior:
  ``0.5 × prior + 0.5 × label``. Unshrunk, a 0/1 forecast would score an unbounded log loss.
- :class:`RiverCandidate` — a River classifier learning all training rows, then the test rows
  prequentially in River's ``progressive_val_score(delay=horizon)`` order: at row *j* it first
  learns row *j − horizon* (if in the test block), then predicts row *j*. The engine does the same.
- :class:`FixedModel` — a model trained elsewhere (the champion); only scored on test rows *j*
  with ``j > trained_until + horizon`` (out of sample for it); its other rows are NaN.
- :class:`RefitCandidate` — a recipe re-fit on each fold's training rows (the fresh XGBoost).

Rows where a candidate's prediction is NaN are left out of its metrics (``FoldResult.n`` counts
the scored rows). Any candidate with a ``trained_until`` attribute is masked like FixedModel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ares_stream.rule import Rule
from ares_stream.validation import metrics, regimes
from ares_stream.validation.splits import Fold

__all__ = [
    "Candidate",
    "ConstantPrior",
    "FixedModel",
    "FoldResult",
    "Persistence",
    "Realized",
    "RefitCandidate",
    "RiverCandidate",
    "fold_losses",
    "fold_pnls",
    "fold_table",
    "run_walk_forward",
    "summary_by_candidate",
]

_CLASSIFICATION = ("log_loss", "brier", "roc_auc", "accuracy")


class Candidate(Protocol):
    """A model to validate: P(y=1) for every test row of a fold, honouring delayed labels."""

    name: str

    def fit_predict(
        self, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
        horizon: int,
    ) -> np.ndarray:
        """P(y=1) per test row; ``y_test[j]`` may only be used from test row ``j + horizon``."""
        ...


def _prior(y_train: np.ndarray) -> float:
    """Training base rate clipped to [0.01, 0.99]; 0.5 without training rows."""
    return min(max(float(np.mean(y_train)), 0.01), 0.99) if len(y_train) else 0.5


@dataclass
class ConstantPrior:
    """P(y=1) = the training base rate, on every test row.

    >>> ConstantPrior().fit_predict(np.zeros((4, 1)), np.array([1, 1, 1, 0]), np.zeros((2, 1)),
    ...                             np.array([0, 0]), 1).tolist()
    [0.75, 0.75]
    """

    name: str = "prior"

    def fit_predict(
        self, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
        horizon: int,
    ) -> np.ndarray:
        """The prior, repeated for every test row."""
        return np.full(len(X_test), _prior(y_train))


@dataclass
class Persistence:
    """The last known label, shrunk halfway to the training prior (see the module docstring).

    >>> Persistence().fit_predict(np.zeros((4, 1)), np.array([1, 0, 0, 1]), np.zeros((4, 1)),
    ...                           np.array([0, 1, 1, 0]), 2).tolist()
    [0.75, 0.75, 0.25, 0.75]
    """

    name: str = "persistence"

    def fit_predict(
        self, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
        horizon: int,
    ) -> np.ndarray:
        """``0.5 × prior + 0.5 × y[j − horizon]`` (last training label before that row is known)."""
        prior = _prior(y_train)
        last = float(y_train[-1]) if len(y_train) else prior
        known = np.concatenate((np.full(min(horizon, len(y_test)), last),
                                np.asarray(y_test[: max(len(y_test) - horizon, 0)], dtype=float)))
        return 0.5 * prior + 0.5 * known


@dataclass
class RiverCandidate:
    """A fresh River classifier per fold: learns the train rows, then the test rows prequentially.

    ``factory`` returns an unfitted classifier (e.g. ``lambda: make_model("logreg")``);
    ``features`` names the columns of X (default ``x0, x1, …``).
    """

    name: str
    factory: Callable[[], Any]
    features: Sequence[str] | None = None

    def fit_predict(
        self, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
        horizon: int,
    ) -> np.ndarray:
        """Learn-then-predict with the label delay; a measured hot loop (River's per-row API)."""
        model, names = self.factory(), self._names(np.shape(X_train)[1])
        for x, y in zip(X_train.tolist(), y_train.tolist(), strict=True):
            model.learn_one(_present(names, x), int(y))
        xs = [_present(names, x) for x in X_test.tolist()]
        ys = [int(v) for v in y_test.tolist()]
        out = np.empty(len(xs))
        for j, x in enumerate(xs):
            if j >= horizon:
                model.learn_one(xs[j - horizon], ys[j - horizon])
            proba = model.predict_proba_one(x)
            out[j] = proba.get(1, 0.0) if proba else 0.5
        return out

    def _names(self, k: int) -> list[str]:
        return list(self.features) if self.features is not None else [f"x{i}" for i in range(k)]


@dataclass
class FixedModel:
    """A model trained elsewhere, scored only where it is out of sample (module docstring).

    ``trained_until`` is the row index of its last training row (-1: trained on none of them).
    """

    name: str
    predict: Callable[[np.ndarray], np.ndarray]
    trained_until: int = -1

    def fit_predict(
        self, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
        horizon: int,
    ) -> np.ndarray:
        """The model's predictions on every test row (run_walk_forward masks in-sample rows)."""
        return np.asarray(self.predict(X_test), dtype=np.float64)


def _present(names: Sequence[str], x: Sequence[float]) -> dict[str, float]:
    """A River input: the features with a value (a NaN means absent, as in the engine)."""
    return {n: v for n, v in zip(names, x, strict=True) if v == v}


@dataclass
class Realized:
    """What a deployed policy actually predicted at each row of the window (precomputed).

    ``realized[j]`` is NaN where the policy had no model in force out of sample; with
    ``fill_prior`` those rows get the fold's constant prior (what trading without the model
    amounts to), so the policy is scored on every row, paired with the other candidates.
    """

    name: str
    realized: np.ndarray
    fill_prior: bool = True

    def fit_predict(
        self, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
        horizon: int,
    ) -> np.ndarray:
        """Unused: :func:`run_walk_forward` reads ``realized`` by row index."""
        raise TypeError("Realized candidates are scored by run_walk_forward from their rows")


@dataclass
class RefitCandidate:
    """A training recipe: ``fit(X, y)`` returns a predictor ``X -> P(y=1)``, re-fit per fold."""

    name: str
    fit: Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]

    def fit_predict(
        self, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
        horizon: int,
    ) -> np.ndarray:
        """Fit on the training rows, predict the test rows."""
        return np.asarray(self.fit(X_train, y_train)(X_test), dtype=np.float64)


@dataclass
class FoldResult:
    """One candidate's scores on one fold (NaN where nothing was scored)."""

    fold: int
    candidate: str
    n: int  # scored test rows
    log_loss: float
    brier: float
    roc_auc: float
    accuracy: float
    trading: dict[str, float] = field(default_factory=dict)
    regimes: tuple[regimes.RegimeRow, ...] = ()  # per market regime (not in the stored row)
    returns: np.ndarray | None = field(default=None, compare=False, repr=False)  # the rule's
    # per-bar returns on the fold (not stored)

    def row(self) -> dict[str, Any]:
        """A flat dict (fold, candidate, n, metrics...): one row of ``validations.fold_table``."""
        base = {k: getattr(self, k) for k in ("fold", "candidate", "n", *_CLASSIFICATION)}
        return base | self.trading

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FoldResult:
        """Back from :meth:`row` (after a JSON round trip: null is NaN)."""
        num = {k: math.nan if v is None else float(v) for k, v in row.items()
               if k not in ("fold", "candidate", "n")}
        trading = {k: v for k, v in num.items() if k not in _CLASSIFICATION}
        return cls(int(row["fold"]), str(row["candidate"]), int(row["n"]), num["log_loss"],
                   num["brier"], num["roc_auc"], num["accuracy"], trading)


def run_walk_forward(
    X: np.ndarray, y: np.ndarray, fwd: np.ndarray, folds: Sequence[Fold],
    candidates: Sequence[Candidate], *, horizon: int, rule: Rule,
    close: np.ndarray | None = None, periods_per_year: float = math.nan,
    regime_labels: np.ndarray | None = None,
) -> list[FoldResult]:
    """Score every candidate on every fold; results ordered by fold, then candidate.

    ``fwd`` is each row's forward log return. With ``close`` (each row's bar close) every
    candidate's probabilities are also traded through ``rule`` — the broker's rule — over the
    test rows (:func:`metrics.rule_metrics`, ``periods_per_year`` bars a year); a fold whose test
    rows miss a close gets NaN trading metrics (nothing validated). With ``regime_labels``
    (each row's causal regime, :func:`ares_stream.validation.regimes.label`) every result also
    holds its scores and rule PnL per regime and at regime transitions.
    """
    X, y, fwd = np.asarray(X, dtype=np.float64), np.asarray(y), np.asarray(fwd, dtype=np.float64)
    closes = None if close is None else np.asarray(close, dtype=np.float64)
    if not len(X) == len(y) == len(fwd) or (closes is not None and len(closes) != len(y)):
        lengths = [len(X), len(y), len(fwd)] + ([] if closes is None else [len(closes)])
        raise ValueError(f"X, y, fwd (, close) lengths differ: {lengths}")
    results = []
    for fold in folds:
        tr, te = fold.train, fold.test
        c_te = None if closes is None else closes[te]
        for c in candidates:
            if isinstance(c, Realized):
                p = _realized(c, y[tr], te)
            else:
                p = np.array(c.fit_predict(X[tr], y[tr], X[te], y[te], horizon),
                             dtype=np.float64)
            if p.shape != te.shape:
                raise ValueError(f"{c.name}: {p.shape[0]} predictions for {te.size} test rows")
            until = getattr(c, "trained_until", None)
            if until is not None:
                p[te <= until + horizon] = np.nan
            lab = None if regime_labels is None else regime_labels[te]
            results.append(_score(fold.index, c.name, y[te], p, c_te, rule, periods_per_year,
                                  lab))
    return results


def _realized(c: Realized, y_train: np.ndarray, te: np.ndarray) -> np.ndarray:
    p = np.array(c.realized[te], dtype=np.float64)
    if c.fill_prior:
        prior = float(np.clip(y_train.mean(), 0.01, 0.99)) if len(y_train) else 0.5
        p[np.isnan(p)] = prior
    return p


def _score(fold: int, name: str, y: np.ndarray, p: np.ndarray, close: np.ndarray | None,
           rule: Rule, ppy: float, labels: np.ndarray | None = None) -> FoldResult:
    """The metrics of the rows with a prediction; the rule traded over every test row (a row
    without a prediction holds, as the broker does on a NaN)."""
    ok = ~np.isnan(p)
    trading: dict[str, float] = {}
    returns = None
    if ok.any() and close is not None and not np.isnan(close).any():
        sim = rule.simulate(p, close)
        trading, returns = metrics.rule_metrics(sim, ppy), sim.returns
    if not ok.any():
        return FoldResult(fold, name, 0, math.nan, math.nan, math.nan, math.nan, trading)
    by_regime = () if labels is None else tuple(regimes.table(labels, y, p, returns))
    y, p = y[ok], p[ok]
    return FoldResult(fold, name, int(ok.sum()), metrics.log_loss(y, p), metrics.brier(y, p),
                      metrics.roc_auc(y, p), metrics.accuracy(y, p), trading, by_regime,
                      returns)


def fold_losses(results: Sequence[FoldResult], candidate: str) -> list[float]:
    """The candidate's log loss on every fold present in ``results`` (NaN where absent), by fold.

    Two candidates' lists are paired fold by fold: the input of :func:`gate.decide`.
    """
    folds = sorted({r.fold for r in results})
    mine = {r.fold: r.log_loss for r in results if r.candidate == candidate}
    return [mine.get(f, math.nan) for f in folds]


def fold_pnls(results: Sequence[FoldResult], candidate: str) -> list[float]:
    """The candidate's rule PnL after costs (fraction of cash) on every fold, by fold (NaN where
    it was not traded): the evidence of after-cost edge."""
    folds = sorted({r.fold for r in results})
    mine = {r.fold: r.trading.get("total_return", math.nan) for r in results
            if r.candidate == candidate}
    return [mine.get(f, math.nan) for f in folds]


def summary_by_candidate(results: Sequence[FoldResult]) -> dict[str, dict[str, float]]:
    """Per candidate, the mean of each metric over the folds where it is defined, and ``folds``."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.candidate for r in results):
        rows = [r.row() for r in results if r.candidate == name]
        keys = [k for k in dict.fromkeys(k for row in rows for k in row)
                if k not in ("fold", "candidate", "n")]
        out[name] = {k: _mean([row.get(k, math.nan) for row in rows]) for k in keys}
        out[name]["folds"] = float(sum(not math.isnan(row["log_loss"]) for row in rows))
    return out


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


_COLUMNS = (("log_loss", "logloss", ".4f"), ("roc_auc", "auc", ".4f"),
            ("gross_return", "gross", ".4f"),
            ("total_return", "net", ".4f"), ("fills", "fills", ".0f"), ("hit_rate", "hit", ".2f"),
            ("turnover", "turnover", ".2f"), ("max_drawdown", "maxdd", ".4f"))


def fold_table(results: Sequence[FoldResult]) -> str:
    """A fixed-width text table, one line per fold × candidate.

    >>> print(fold_table([FoldResult(0, "xgb_refit", 10, 0.6931, 0.25, 0.55, 0.5,
    ...                              {"gross_return": 0.012, "total_return": 0.004, "fills": 6.0,
    ...                               "hit_rate": 2 / 3, "turnover": 0.6, "max_drawdown": 0.01})]))
    fold candidate       n  logloss      auc    gross      net    fills      hit turnover    maxdd
       0 xgb_refit      10   0.6931   0.5500   0.0120   0.0040        6     0.67     0.60   0.0100
    """
    width = max([9, *(len(r.candidate) for r in results)])
    lines = [f"{'fold':>4} {'candidate':<{width}} {'n':>7}"
             + "".join(f" {label:>8}" for _, label, _ in _COLUMNS)]
    for r in results:
        row = r.row()
        cells = "".join(f" {row.get(key, math.nan):>8{fmt}}" for key, _, fmt in _COLUMNS)
        lines.append(f"{r.fold:>4} {r.candidate:<{width}} {r.n:>7}{cells}")
    return "\n".join(lines)
