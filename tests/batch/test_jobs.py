"""The validation job: every candidate traded through the broker's rule, the champion itself
re-measured out of sample, folds that give a challenger a fair share of the window."""

from __future__ import annotations

import math

import numpy as np

from ares_stream.batch import jobs
from ares_stream.config import Config, replace_values
from ares_stream.learners import booster as bst

FEATURES = ("f0", "f1", "f2")
MIN = 60 * 10**9
H = 5


def _window(n: int, seed: int = 0, signal: float = 0.004) -> jobs.Window:
    """Per-bar log returns driven by f0 of the bar before; a label over H bars at 0 bps."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + H, 3))
    r = signal * X[:, 0] + 0.002 * rng.standard_normal(n + H)  # the bar after row t
    close = 100.0 * np.exp(np.concatenate(([0.0], np.cumsum(r[:-1]))))
    fwd = np.log(close[H:] / close[:-H])
    return jobs.Window(np.arange(n) * MIN, X[:n], (fwd[:n] > 0).astype(np.int64), fwd[:n],
                       FEATURES, close[:n])


def _config(**batch: object) -> Config:
    return replace_values(Config(), {"labels": {"horizon": H, "threshold_bps": 0.0},
                                     "batch": {"folds": 4, "bootstrap": 300, **batch},
                                     "trading": {"fee_bps": 1.0, "candle_slippage_bps": 0.0}})


def test_every_candidate_has_after_cost_pnl_and_an_edge_verdict() -> None:
    cfg = _config()
    out = jobs.validate(_window(3000), jobs.spec_of(cfg), jobs.settings_of(cfg), [], [])
    assert set(out.edges) == set(out.summary)
    for name, s in out.summary.items():
        assert {"total_return", "gross_return", "fills", "exposure", "hit_rate"} <= set(s), name
    assert out.edges["xgb_refit"].ok and out.summary["xgb_refit"]["total_return"] > 0
    assert not out.edges["prior"].ok  # the constant never enters: no fills, no PnL


def test_the_test_blocks_are_the_last_half_of_the_window() -> None:
    """Fold k trains on at least half the window, so a fresh refit is not judged on a fold where
    it saw a sixth of what the champion saw."""
    cfg = _config()
    out = jobs.validate(_window(2000), jobs.spec_of(cfg), jobs.settings_of(cfg), [], [])
    n_test = {r.fold: r.n for r in out.results if r.candidate == "prior"}
    assert sorted(n_test) == [0, 1, 2, 3] and sum(n_test.values()) == 1000


def test_the_champion_itself_is_re_measured_where_it_is_out_of_sample() -> None:
    """``current`` scores the champion model only on rows after its training end + horizon."""
    cfg = _config()
    w = _window(3000)
    half = 1500
    tb = bst.fit(w.X[:half], w.y[:half], w.ts[:half], FEATURES, jobs.settings_of(cfg))
    champion = jobs.to_blob(tb, 1)
    out = jobs.validate(w, jobs.spec_of(cfg), jobs.settings_of(cfg), [(0, champion)], [])
    scored = sum(r.n for r in out.results if r.candidate == "current")
    assert scored == 3000 - (half + H)  # the test blocks are the last 1,500 rows
    assert out.summary["current"]["log_loss"] < out.summary["prior"]["log_loss"]
    assert not math.isnan(out.summary["current"]["total_return"])


def test_noise_has_no_edge_after_costs() -> None:
    """On a walk with no signal and the default costs, no candidate shows an edge."""
    cfg = replace_values(Config(), {"labels": {"horizon": H, "threshold_bps": 0.0},
                                    "batch": {"folds": 4, "bootstrap": 300}})
    out = jobs.validate(_window(3000, seed=3, signal=0.0), jobs.spec_of(cfg),
                        jobs.settings_of(cfg), [], [])
    assert not any(e.ok for e in out.edges.values()), {n: e.reason for n, e in out.edges.items()}
    assert not out.decision.promote


def test_the_refit_always_comes_back() -> None:
    """The validation returns the refit recipe's whole-window model even when it is not
    promoted: the lineage's next booster."""
    cfg = _config()
    out = jobs.validate(_window(3000, seed=3, signal=0.0), jobs.spec_of(cfg),
                        jobs.settings_of(cfg), [], [])
    assert not out.decision.promote
    assert out.refit is not None and jobs.from_blob(out.refit).rows == 3000


def test_a_validation_scores_every_candidate_per_market_regime() -> None:
    """With bar closes the validation labels every row's regime causally and prints, after the
    fold table, each candidate's rows, log loss, hit rate and PnL per regime."""
    cfg = _config()
    out = jobs.validate(_window(3000), jobs.spec_of(cfg), jobs.settings_of(cfg), [], [])
    assert out.regimes is not None and "per regime" in out.table
    rows = out.regimes["xgb_refit"]
    assert {r.regime for r in rows} >= {"transition"} and len(rows) >= 4
    assert all(r.n > 0 and 0.0 <= r.hit_rate <= 1.0 for r in rows)
    assert any(line.startswith("xgb_refit") for line in out.table.splitlines())


def test_a_validation_bootstraps_each_traded_candidates_out_of_sample_pnl() -> None:
    """Each traded candidate gets a Monte Carlo of its folds' per-bar returns: ordered
    quantiles, a block length, and a 5-95 % band around the walk-forward's own compounded
    return."""
    cfg = _config()
    out = jobs.validate(_window(3000), jobs.spec_of(cfg), jobs.settings_of(cfg), [], [])
    assert out.monte_carlo is not None and "monte carlo" in out.table
    mc = out.monte_carlo["xgb_refit"]
    assert list(mc.final_return) == sorted(mc.final_return) and mc.block >= 1
    returns = np.concatenate([r.returns for r in out.results
                              if r.candidate == "xgb_refit" and r.returns is not None])
    realised = float(np.prod(1.0 + returns) - 1.0)
    assert mc.final_return[0] < realised < mc.final_return[4]
