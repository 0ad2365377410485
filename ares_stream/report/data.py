"""Load one run of a state database into a :class:`~.model.ReportData`.

The database is opened read-only (a running daemon's file is read through its WAL), the run is
the newest unless named, and ``since`` (event time, ns) restricts the report to a window — the
daemon's daily report covers the last day. Positions are rebuilt from every fill of the run, so a
window starts with the position it inherited. A file from a newer ares-stream is refused; one
that fails SQLite's ``quick_check`` is reported as far as it reads, and says so (``integrity``).

>>> position_steps(np.array([5, 9, 12]), np.array(["BUY", "SELL", "BUY"], dtype=object),
...                np.array([2.0, 0.5, 1.0]))
array([2. , 1.5, 2.5])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ares_stream.errors import AresError
from ares_stream.features.bars import parse_interval
from ares_stream.report import risk
from ares_stream.report import summary as metrics
from ares_stream.report.model import (
    Coefficients,
    Drift,
    Equity,
    FeatureDrift,
    Fills,
    Health,
    Importance,
    Prices,
    ReportData,
    RunInfo,
    Scores,
    Uses,
    Validation,
)
from ares_stream.report.regimes import by_regime, stress_results
from ares_stream.store import history
from ares_stream.store.status import integrity, open_readonly

__all__ = ["NoSuchRun", "integrity_warning", "load", "position_steps", "shap_shares"]

RECENT_VALIDATIONS = 20  # decisions listed in the report (newest last)
_COUNTED_KINDS = ("gap", "rejected", "disconnected", "connect_failed", "silence", "error_frame",
                  "lag", "server_shutdown", "rotated", "handover_failed")


class NoSuchRun(AresError):
    """The database has no runs, or not the one asked for."""


def load(db_path: str | Path, run_id: int | None = None, since: int | None = None,
         last: int | None = None) -> ReportData:
    """Everything the report of run ``run_id`` (newest: None) of ``db_path`` shows: event times
    from ``since`` (ns), or the ``last`` ns before the run's newest bar."""
    with open_readonly(db_path) as conn:
        run = history.find_run(conn, run_id)
        if run is None:
            known = ", ".join(str(r["id"]) for r in history.runs(conn)) or "none"
            what = f"no run {run_id}" if run_id is not None else "no runs yet"
            raise NoSuchRun(f"{db_path}: {what} (runs in this database: {known})")
        rid = int(run["id"])
        if last is not None:
            newest = history.newest_event(conn, rid)
            since = None if newest is None else newest - last
        lo = since or 0
        info = _info(run, str(db_path), since)
        eq, fl = history.equity(conn, rid, lo), history.fills(conn, rid)
        prices = _prices(history.closes(conn, rid, lo), fl, lo)
        sc, dr = history.scores(conn, rid, lo), history.drifts(conn, rid, lo)
        decisions = [_validation(v) for v in history.validations(conn, rid, lo)]
        hl, totals = history.health(conn, rid, lo), history.health_totals(conn, rid)
        uses = _uses(history.importance(conn, rid), history.features_drifted(conn, rid, lo),
                     history.order_reasons(conn, rid), history.coefficients(conn, rid, lo))
        info.integrity = integrity(conn)
    equity = Equity(_time(eq["ts_event"]), eq["equity"], eq["drawdown"], eq["fees"])
    keep = fl["ts_event"] >= lo
    fills = Fills(_time(fl["ts_event"][keep]), fl["symbol"][keep], fl["side"][keep],
                  fl["qty"][keep], fl["price"][keep], fl["fee"][keep], fl["client_id"][keep])
    scores = Scores(_time(sc["ts_event"]), sc["label"], sc["river"], sc["booster"],
                    sc["ensemble"], sc["symbol"])
    drift = Drift(_time(dr["ts_event"]), dr["symbol"], dr["mean_before"], dr["mean_after"],
                  dr["detector"])
    health = Health(_time(hl["ts"]), hl["kind"], hl["count"], hl["detail"],
                    _health_totals(hl, run.get("summary", {}).get("counts") or totals))
    promotions = [v for v in decisions if v.promoted]
    info.symbols = info.symbols or [p.symbol for p in prices]
    data = ReportData(info, equity, prices, fills, scores, drift, promotions,
                      decisions[-RECENT_VALIDATIONS:], health, {}, uses)
    data.summary = metrics.summary(data, run["config"])
    data.risk = risk.assess(data)
    data.regimes = by_regime(data)
    data.stress = stress_results(Path(db_path))
    if info.integrity:
        data.summary["notes"].insert(0, f"{integrity_warning(info)}.")
    return data


def integrity_warning(info: RunInfo) -> str:
    """One line saying that the database failed its integrity check, and how."""
    return (f"{info.db_path} fails SQLite's integrity check ({info.integrity[0]}); the report "
            "shows what could be read")


def _time(ns: np.ndarray) -> np.ndarray:
    return ns.astype("datetime64[ns]")


def _info(run: dict[str, Any], db_path: str, since: int | None) -> RunInfo:
    config = run["config"]
    interval = str(config.get("bars", {}).get("interval", "1m"))
    symbols = [str(s).upper() for s in config.get("feed", {}).get("symbols", [])]
    return RunInfo(int(run["id"]), str(run["mode"]), str(run["status"]), db_path, interval,
                   parse_interval(interval), symbols, int(run["started_at"]), run["ended_at"],
                   None if since is None else np.datetime64(since, "ns"),
                   [str(s) for s in run["sources"]])


def _prices(closes: dict[str, np.ndarray], fills: dict[str, np.ndarray],
            since: int) -> list[Prices]:
    out = []
    for symbol in sorted(set(closes["symbol"]) | set(fills["symbol"])):
        at = closes["symbol"] == symbol
        mine = fills["symbol"] == symbol
        held = position_steps(fills["ts_event"][mine], fills["side"][mine], fills["qty"][mine])
        t = fills["ts_event"][mine]
        inside = t >= since
        before = held[~inside]
        if before.size:  # the position the window inherited, from its start
            t = np.concatenate(([since], t[inside]))
            held = np.concatenate((before[-1:], held[inside]))
        out.append(Prices(str(symbol), _time(closes["ts_event"][at]), closes["close"][at],
                          _time(t), held))
    return out


def position_steps(ts: np.ndarray, side: np.ndarray, qty: np.ndarray) -> np.ndarray:
    """The base quantity held after each fill (fills in time order, starting flat)."""
    signed = np.where(side == "BUY", qty, -qty).astype(np.float64)
    return np.cumsum(signed) if ts.size else np.array([], dtype=np.float64)


def _uses(imp: dict[str, np.ndarray], fd: dict[str, np.ndarray],
          why: dict[str, np.ndarray], coefs: dict[str, np.ndarray]) -> Uses:
    """The section "What the models use" from its four queries."""
    champions = {str(s): int(m) for s, m, c in zip(imp["symbol"], imp["model_id"],
                                                   imp["champion"], strict=True) if c}
    importance = Importance(imp["symbol"], imp["version"], imp["model_id"], imp["feature"],
                            shap_shares(imp["model_id"], imp["shap"]), imp["gain"], imp["shap"])
    drifted = FeatureDrift(_time(fd["ts_event"]), fd["symbol"], fd["feature"], fd["psi"],
                           fd["ks"], fd["threshold"])
    reasons: dict[str, list[tuple[str, float | None, float]]] = {}
    for cid, feature, value, contribution in zip(*why.values(), strict=True):
        reasons.setdefault(str(cid), []).append(
            (str(feature), None if np.isnan(value) else float(value), float(contribution)))
    river = Coefficients(_time(coefs["ts_event"]), coefs["symbol"], coefs["feature"],
                         coefs["coef"])
    return Uses(importance, champions, drifted, reasons, river)


def shap_shares(model_id: np.ndarray, shap: np.ndarray) -> np.ndarray:
    """Each row's mean |SHAP| as a share of its model's total (NaN where not measured).

    >>> shap_shares(np.array([1, 1, 2]), np.array([3.0, 1.0, np.nan]))
    array([0.75, 0.25,  nan])
    """
    finite = np.where(np.isfinite(shap), shap, 0.0)
    _, group = np.unique(model_id, return_inverse=True)
    totals = np.bincount(group, weights=finite) if group.size else np.array([])
    total = totals[group] if group.size else np.array([], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(shap) & (total > 0), shap / np.where(total > 0, total, 1),
                        np.nan)


def _validation(row: dict[str, Any]) -> Validation:
    return Validation(np.datetime64(int(row["ts_event"]), "ns"), str(row["symbol"]),
                      str(row["challenger"]), str(row["incumbent"]), row["improvement"],
                      bool(row["promoted"]), str(row["reason"]), list(row["folds"]))


def _health_totals(rows: dict[str, np.ndarray], counts: dict[str, Any]) -> dict[str, int]:
    """Incidents by kind in the window (gaps: items missing as well), and frames seen."""
    kinds, count = rows["kind"], rows["count"]
    out = {"frames": int(counts.get("frames", 0) or 0)}
    for kind in _COUNTED_KINDS:
        at = kinds == kind
        if kind == "rejected":
            out["rejected frames"] = int(count[at].sum())
        elif kind == "gap":
            out["gaps"], out["items missing"] = int(at.sum()), int(count[at].sum())
        elif at.any() or kind == "disconnected":
            out["reconnects" if kind == "disconnected" else kind.replace("_", " ")] = int(at.sum())
    return out
