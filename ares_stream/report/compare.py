"""``ares-stream compare A B``: two runs, or two models of a registry, side by side.

**Two runs**: A and B are each a database (its newest run) or ``PATH:RUN_ID``, in one file or
two. Each run is loaded as the report loads it (:func:`ares_stream.report.data.load`) and its
figures are the report's summary (:func:`ares_stream.report.summary.summary`): period and bars,
the log loss and accuracy of the online learner, the booster, the traded forecast and the prior,
the trading figures, drift events, validations and promotions; then the keys of the two runs'
configs whose values differ (dotted, ``trading.enter``).

**Two models** (``--db DB ID_A ID_B``): each record (its differing parameters apart), its stored
metrics, its top features (:data:`TOP`), every validation it took part in as challenger or
incumbent, and for every validation that holds both the fold table side by side: per fold each
one's log loss and after-cost rule PnL (``total_return``) and B − A. A model's rows are those of
the candidate the decision names it by (the challenger's recipe, or ``champion`` for the
incumbent: the champion policy the gate measured). Its trading figures are those of the run that
promoted it, from its promotion to that run's next promotion of the symbol (or the run's end):
the symbol's fills, fees and marked PnL, and that PnL over the equity at the promotion.

Bad input is a :class:`CompareError` (an :class:`~ares_stream.errors.AresError`): one line, exit 2.

JSON (``--json``), schema 1; times are ns since the epoch, absent or undefined values (NaN) are
``null``, ``diff`` is B − A where both are numbers::

    {"schema": 1, "what": "runs" | "models",
     "a": {"db": str, "run_id": int} | {"db": str, "model_id": int}, "b": {...},
     "rows": [{"section": str, "name": str, "fmt": "text" | "int" | "float" | "pct" | "time",
               "a": value, "b": value, "diff": number | null}],
     "notes": [str],
     # runs:
     "config_diff": [{"key": str, "a": value, "b": value}],   # null: the key is absent
     # models:
     "params_diff": [{"key": str, "a": value, "b": value}],
     "features": {"a": [{"feature", "gain", "shap", "coef"}], "b": [...]},
     "validations": {"a": [{"id", "run_id", "symbol", "ts_event_ns", "role": "challenger" |
                            "incumbent", "challenger", "challenger_id", "incumbent",
                            "incumbent_id", "folds", "challenger_loss", "incumbent_loss",
                            "improvement", "decision": "promoted" | "kept", "reason"}],
                     "b": [...]},
     "fold_tables": [{"validation_id", "run_id", "symbol", "ts_event_ns", "decision",
                      "a_candidate", "b_candidate",
                      "folds": [{"fold", "a_log_loss", "b_log_loss", "diff_log_loss",
                                 "a_pnl", "b_pnl", "diff_pnl"}]}],
     "champion": {"a": [{"run_id", "from_ns", "to_ns", "fills", "fees", "pnl", "return"}],
                  "b": [...]}}  # to_ns: the next promotion (excluded) or the run's last bar

>>> flat_diff({"a": 1, "t": {"x": 1, "y": [1]}}, {"a": 1, "t": {"x": 2, "y": [1]}, "n": 0})
[{'key': 'n', 'a': None, 'b': 0}, {'key': 't.x', 'a': 1, 'b': 2}]

Bought at 100 before the spell, marked at 101 when it starts, sold at 103 within it (fee 0.1):

>>> n, fees, pnl = champion_pnl(
...     np.array([10, 30]), np.array(["X", "X"], dtype=object),
...     np.array(["BUY", "SELL"], dtype=object), np.array([1.0, 1.0]), np.array([100.0, 103.0]),
...     np.array([0.1, 0.1]), np.array([0, 10, 20, 40]), np.array([99.0, 100.0, 101.0, 104.0]),
...     "X", 20, 50)
>>> n, fees, round(pnl, 6)
(1, 0.1, 1.9)
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ares_stream.errors import AresError
from ares_stream.report import parse_target
from ares_stream.report.data import load
from ares_stream.store import compare as sql
from ares_stream.store import history
from ares_stream.store.models import ModelRecord
from ares_stream.store.status import open_readonly
from ares_stream.validation.walkforward import FoldResult

__all__ = ["SCHEMA", "TOP", "CompareError", "champion_pnl", "compare_models", "compare_runs",
           "flat_diff", "format_comparison", "main_compare"]

SCHEMA = 1
TOP = 5  # features shown per model
_ABSENT = object()


class CompareError(AresError):
    """What to compare is missing, unknown, or a run mixed with a model."""


# -- two runs -------------------------------------------------------------------------------------

def compare_runs(a: str, b: str) -> dict[str, Any]:
    """Runs ``a`` and ``b`` (``PATH`` or ``PATH:RUN_ID``) side by side (module docstring)."""
    (meta_a, fig_a, cfg_a), (meta_b, fig_b, cfg_b) = _run(a), _run(b)
    rows = [_row(sec, name, fmt, fig_a[key], fig_b[key]) for sec, name, key, fmt in _RUN_ROWS]
    notes = [f"{w}: {n}" for w, f, g in (("A", fig_a, fig_b), ("B", fig_b, fig_a))
             for n in f["notes"] if n not in g["notes"]]
    notes += [f"A and B: {n}" for n in fig_a["notes"] if n in fig_b["notes"]]
    return _clean({"schema": SCHEMA, "what": "runs", "a": meta_a, "b": meta_b, "rows": rows,
                   "config_diff": flat_diff(cfg_a, cfg_b), "notes": notes})


_RUN_ROWS = [  # (section, row name, key of the run's figures, format)
    ("run", "mode", "mode", "text"), ("run", "status", "status", "text"),
    ("run", "bar interval", "period", "text"), ("run", "symbols", "symbols", "text"),
    ("run", "first bar", "first_bar", "time"), ("run", "last bar", "last_bar", "time"),
    ("run", "bars", "bars", "int"), ("run", "labelled predictions", "labelled", "int"),
    *[("log loss", label, f"log_loss.{m}", "float") for m, label in (
        ("river", "online learner"), ("booster", "booster"), ("ensemble", "forecast (traded)"),
        ("constant", "prior"))],
    *[("accuracy", label, f"accuracy.{m}", "pct") for m, label in (
        ("river", "online learner"), ("booster", "booster"), ("ensemble", "forecast (traded)"))],
    ("trading", "return", "return", "pct"), ("trading", "annual return", "annual_return", "pct"),
    ("trading", "Sharpe (daily, annualised)", "sharpe", "float"),
    ("trading", "Sharpe (per bar, indicative)", "sharpe_bar", "float"),
    ("trading", "max drawdown", "max_drawdown", "pct"), ("trading", "fills", "fills", "int"),
    ("trading", "round trips", "round_trips", "int"), ("trading", "hit rate", "hit_rate", "pct"),
    ("trading", "fees", "fees", "float"), ("trading", "turnover (per day)", "turnover", "float"),
    ("trading", "end equity", "end_equity", "float"),
    ("learning", "drift events", "drift_events", "int"),
    ("learning", "validations", "validations", "int"),
    ("learning", "promotions", "promotions", "int"),
]


def _run(target: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(who, figures by dotted key, config) of one run target."""
    path, run_id = parse_target(target)
    _exists(path)
    data = load(path, run_id)
    rid = data.run.id
    with open_readonly(path) as conn:
        validations, promotions = sql.validation_counts(conn, rid)
        run = history.find_run(conn, rid)
    times = [p.time for p in data.prices if p.time.size]
    span = np.concatenate(times).astype(np.int64) if times else np.array([], dtype=np.int64)
    s = data.summary
    figures = {k: v for k, v in s.items() if not isinstance(v, dict)}
    figures |= {f"{k}.{m}": v for k in ("log_loss", "accuracy") for m, v in s[k].items()}
    figures |= {"mode": data.run.mode, "status": data.run.status,
                "symbols": ",".join(data.run.symbols), "bars": int(span.size),
                "first_bar": int(span.min()) if span.size else None,
                "last_bar": int(span.max()) if span.size else None,
                "validations": validations, "promotions": promotions}
    return {"db": str(path), "run_id": rid}, figures, run["config"] if run else {}


def flat_diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """The dotted keys of two nested dicts whose values differ (None: absent), sorted."""
    fa, fb = _flatten(a), _flatten(b)
    return [{"key": k, "a": fa.get(k), "b": fb.get(k)} for k in sorted(fa.keys() | fb.keys())
            if fa.get(k, _ABSENT) != fb.get(k, _ABSENT)]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


# -- two models -----------------------------------------------------------------------------------

def compare_models(db_path: str | Path, id_a: int, id_b: int) -> dict[str, Any]:
    """Models ``id_a`` and ``id_b`` of ``db_path`` side by side (module docstring)."""
    _exists(Path(db_path))
    with open_readonly(db_path) as conn:
        recs = [_model(conn, db_path, i) for i in (id_a, id_b)]
        vals = [sql.model_validations(conn, i) for i in (id_a, id_b)]
        tops = [sql.top_features(conn, i, TOP) for i in (id_a, id_b)]
        champ = [_champion_periods(conn, m, v) for m, v in zip(recs, vals, strict=True)]
    ra, rb = recs
    shared = [v for v in vals[0] if v["id"] in {w["id"] for w in vals[1]}]
    out = {"schema": SCHEMA, "what": "models", "a": {"db": str(db_path), "model_id": id_a},
           "b": {"db": str(db_path), "model_id": id_b},
           "rows": _model_rows(ra, rb), "params_diff": flat_diff(ra.params, rb.params),
           "features": {"a": tops[0], "b": tops[1]},
           "validations": {w: [_validation(v, i) for v in vs]
                           for w, i, vs in (("a", id_a, vals[0]), ("b", id_b, vals[1]))},
           "fold_tables": [_side_by_side(v, id_a, id_b) for v in shared],
           "champion": {"a": champ[0], "b": champ[1]}, "notes": _model_notes(ra, rb, shared)}
    return _clean(out)


def _model(conn: Any, db_path: str | Path, model_id: int) -> ModelRecord:
    rec = sql.model(conn, model_id)
    if rec is None:
        raise CompareError(f"no model with id {model_id} in {db_path}")
    return rec


def _model_rows(a: ModelRecord, b: ModelRecord) -> list[dict[str, Any]]:
    fields = [("symbol", "text"), ("kind", "text"), ("version", "int"), ("status", "text"),
              ("how", "text"), ("n_trees", "int"), ("rows", "int"), ("train_start", "time"),
              ("train_end", "time"), ("created", "time"), ("run_id", "int"),
              ("parent", "int"), ("ever_champion", "text"), ("pruned", "text")]
    rows = [_row("model", name.replace("_", " "), fmt, getattr(a, name), getattr(b, name))
            for name, fmt in fields]
    rows.append(_row("model", "features", "int", len(a.features), len(b.features)))
    ma, mb = _flatten(a.metrics), _flatten(b.metrics)
    rows += [_row("metrics", k, "float" if _number(ma.get(k, mb.get(k))) else "text",
                  ma.get(k), mb.get(k)) for k in sorted(ma.keys() | mb.keys())]
    return rows


def _model_notes(a: ModelRecord, b: ModelRecord, shared: list[dict[str, Any]]) -> list[str]:
    notes = []
    if a.kind != b.kind:
        notes.append(f"models of different kinds ({a.kind} vs {b.kind}): compared as they are")
    if a.symbol != b.symbol:
        notes.append(f"models of different symbols ({a.symbol} vs {b.symbol})")
    if not shared:
        notes.append("no validation holds both models: no fold table side by side")
    return notes


def _role(v: dict[str, Any], model_id: int) -> tuple[str, str]:
    """(role, candidate name in the fold table) of ``model_id`` in decision ``v``."""
    if v["challenger_id"] == model_id:
        return "challenger", str(v["challenger"])
    return "incumbent", str(v["incumbent"])


def _validation(v: dict[str, Any], model_id: int) -> dict[str, Any]:
    keep = ("id", "run_id", "symbol", "challenger", "challenger_id", "incumbent",
            "incumbent_id", "folds", "challenger_loss", "incumbent_loss", "improvement")
    return {**{k: v[k] for k in keep}, "ts_event_ns": v["ts_event"],
            "role": _role(v, model_id)[0],
            "decision": "promoted" if v["promoted"] else "kept", "reason": v["reason"]}


def _side_by_side(v: dict[str, Any], id_a: int, id_b: int) -> dict[str, Any]:
    """Per fold, A's and B's log loss and rule PnL in decision ``v``, and B − A."""
    name_a, name_b = _role(v, id_a)[1], _role(v, id_b)[1]
    results = [FoldResult.from_row(r) for r in v["fold_rows"]]
    mine = [{r.fold: r for r in results if r.candidate == n} for n in (name_a, name_b)]
    folds = []
    for f in sorted(mine[0].keys() | mine[1].keys()):
        ra, rb = mine[0].get(f), mine[1].get(f)
        la, lb = (math.nan if r is None else r.log_loss for r in (ra, rb))
        pa, pb = (math.nan if r is None else r.trading.get("total_return", math.nan)
                  for r in (ra, rb))
        folds.append({"fold": f, "a_log_loss": la, "b_log_loss": lb, "diff_log_loss": lb - la,
                      "a_pnl": pa, "b_pnl": pb, "diff_pnl": pb - pa})
    return {"validation_id": v["id"], "run_id": v["run_id"], "symbol": v["symbol"],
            "ts_event_ns": v["ts_event"], "decision": "promoted" if v["promoted"] else "kept",
            "a_candidate": name_a, "b_candidate": name_b, "folds": folds}


def _champion_periods(conn: Any, m: ModelRecord,
                      vals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model's spells as champion in the runs that promoted it, and their trading."""
    out = []
    for v in vals:
        if not (v["promoted"] and v["challenger_id"] == m.id):
            continue
        rid, start = v["run_id"], int(v["ts_event"])
        later = [t for t, mid in sql.run_promotions(conn, rid, m.symbol)
                 if t > start or (t == start and mid != m.id)]
        end = later[0] if later else (history.newest_event(conn, rid) or start) + 1
        fl, cl, eq = history.fills(conn, rid), history.closes(conn, rid), history.equity(conn, rid)
        at = cl["symbol"] == m.symbol
        n, fees, pnl = champion_pnl(fl["ts_event"], fl["symbol"], fl["side"], fl["qty"],
                                    fl["price"], fl["fee"], cl["ts_event"][at], cl["close"][at],
                                    m.symbol, start, end)
        before = eq["equity"][eq["ts_event"] <= start]
        equity0 = float(before[-1]) if before.size else math.nan
        out.append({"run_id": rid, "from_ns": start, "to_ns": end if later else end - 1,
                    "fills": n, "fees": fees,
                    "pnl": pnl, "return": pnl / equity0 if equity0 > 0 else math.nan})
    return out


def champion_pnl(ts: np.ndarray, symbol: np.ndarray, side: np.ndarray, qty: np.ndarray,
                 price: np.ndarray, fee: np.ndarray, close_ts: np.ndarray, close: np.ndarray,
                 which: str, start: int, end: int) -> tuple[int, float, float]:
    """(fills, fees, marked PnL) of ``which`` from ``start`` to ``end`` (ns, end excluded): the
    cash of the fills in between plus the position marked at the last close before ``end``,
    less the inherited position marked at the last close at or before ``start``."""
    mine = symbol == which
    signed = np.where(side == "BUY", qty, -qty).astype(np.float64)
    inside = mine & (ts >= start) & (ts < end)
    held0 = float(signed[mine & (ts < start)].sum())
    held1 = held0 + float(signed[inside].sum())
    cash = float(np.sum(-signed[inside] * price[inside] - fee[inside]))
    pnl = cash + _mark(held1, close_ts, close, end - 1) - _mark(held0, close_ts, close, start)
    return int(inside.sum()), float(fee[inside].sum()), pnl


def _mark(held: float, close_ts: np.ndarray, close: np.ndarray, at: int) -> float:
    if held == 0.0:
        return 0.0
    k = int(np.searchsorted(close_ts, at, side="right")) - 1
    return held * float(close[k]) if k >= 0 else math.nan


# -- shared ---------------------------------------------------------------------------------------

def _exists(path: Path) -> None:
    if not path.is_file():
        raise CompareError(f"{path}: no such database")


def _number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


def _row(section: str, name: str, fmt: str, a: Any, b: Any) -> dict[str, Any]:
    a, b = _clean(a), _clean(b)
    diff = b - a if fmt in ("int", "float", "pct") and _number(a) and _number(b) else None
    return {"section": section, "name": name, "fmt": fmt, "a": a, "b": b, "diff": diff}


def _clean(x: Any) -> Any:
    """JSON-ready: NaN and infinities are None, numpy scalars Python numbers, tuples lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# -- text -----------------------------------------------------------------------------------------

def format_comparison(c: dict[str, Any]) -> str:
    """The comparison as aligned text: a table of A, B and B − A, then the lists."""
    a, b = c["a"], c["b"]
    if c["what"] == "runs":
        head = f"compare runs: A = {a['db']} run {a['run_id']}, B = {b['db']} run {b['run_id']}"
        extra = _diff_lines("config (keys that differ)", c["config_diff"])
    else:
        head = f"compare models of {a['db']}: A = model {a['model_id']}, B = model {b['model_id']}"
        extra = (_diff_lines("params (keys that differ)", c["params_diff"])
                 + _feature_lines(c["features"]) + _validation_lines(c["validations"])
                 + _fold_lines(c["fold_tables"]) + _champion_lines(c["champion"]))
    notes = [f"note: {n}" for n in c["notes"]]
    return "\n".join([head, "", *_table(c["rows"]), *extra, *(["", *notes] if notes else [])])


def _table(rows: list[dict[str, Any]]) -> list[str]:
    body: list[list[str]] = []
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            body.append([section, "", "", ""])
        body.append(["  " + r["name"], _cell(r["a"], r["fmt"]), _cell(r["b"], r["fmt"]),
                     "" if r["diff"] is None else _cell(r["diff"], r["fmt"], signed=True)])
    return _grid(["", "A", "B", "B-A"], body)


def _cell(x: Any, fmt: str, signed: bool = False) -> str:
    if x is None:
        return "-"
    sign = "+" if signed else ""
    if fmt == "pct" and _number(x):
        return f"{x * 100:{sign}.2f} " + ("pp" if signed else "%")  # a difference: points
    if fmt == "float" and _number(x):
        return f"{x:{sign},.4f}"
    if fmt == "int" and _number(x):
        return f"{x:{sign},}"
    if fmt == "time" and _number(x):
        return datetime.fromtimestamp(x / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(x)


def _grid(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in [head, *body]]


def _diff_lines(title: str, diff: list[dict[str, Any]]) -> list[str]:
    if not diff:
        return ["", f"{title}: none"]
    body = [[d["key"], _value(d["a"]), _value(d["b"])] for d in diff]
    return ["", f"{title}:", *_grid(["key", "A", "B"], body)]


def _value(x: Any) -> str:
    return "(absent)" if x is None else json.dumps(x) if isinstance(x, list | dict) else str(x)


def _feature_lines(features: dict[str, list[dict[str, Any]]]) -> list[str]:
    def name(rows: list[dict[str, Any]], i: int) -> str:
        """Rank ``i``'s feature and its measure, or blank."""
        if i >= len(rows):
            return ""
        r = rows[i]
        measure = next(((k, r[k]) for k in ("shap", "gain", "coef") if r[k] is not None), None)
        return r["feature"] + ("" if measure is None else f" ({measure[0]} {measure[1]:.4f})")
    n = max(len(features["a"]), len(features["b"]))
    if not n:
        return ["", "top features: none stored"]
    body = [[str(i + 1), name(features["a"], i), name(features["b"], i)] for i in range(n)]
    return ["", "top features:", *_grid(["rank", "A", "B"], body)]


def _validation_lines(vals: dict[str, list[dict[str, Any]]]) -> list[str]:
    out = []
    for who in ("a", "b"):
        out += ["", f"validations of {who.upper()}: " + ("none" if not vals[who] else "")]
        out += [f"  #{v['id']} run {v['run_id']} {_cell(v['ts_event_ns'], 'time')} "
                f"{v['role']}: {v['challenger']} {_cell(v['challenger_loss'], 'float')} vs "
                f"{v['incumbent']} {_cell(v['incumbent_loss'], 'float')}, improvement "
                f"{_cell(v['improvement'], 'float', signed=True)}, {v['decision']}"
                for v in vals[who]]
    return [line.rstrip() for line in out]


def _fold_lines(tables: list[dict[str, Any]]) -> list[str]:
    out = []
    for t in tables:
        out += ["", f"fold table of validation #{t['validation_id']} (run {t['run_id']}, "
                f"{t['symbol']}, {t['decision']}): A = {t['a_candidate']}, "
                f"B = {t['b_candidate']}"]
        body = [[str(f["fold"]), *(_cell(f[k], "float", signed=k.startswith("diff"))
                                   for k in ("a_log_loss", "b_log_loss", "diff_log_loss")),
                 *(_cell(f[k], "pct", signed=k.startswith("diff"))
                   for k in ("a_pnl", "b_pnl", "diff_pnl"))] for f in t["folds"]]
        out += _grid(["fold", "A logloss", "B logloss", "B-A", "A pnl", "B pnl", "B-A"], body)
    return out


def _champion_lines(champ: dict[str, list[dict[str, Any]]]) -> list[str]:
    out = [""]
    for who in ("a", "b"):
        spells: list[dict[str, Any] | None] = [*champ[who]] or [None]
        for s in spells:
            out.append(f"{who.upper()} as champion: never" if s is None else
                       f"{who.upper()} as champion: run {s['run_id']} from "
                       f"{_cell(s['from_ns'], 'time')} to {_cell(s['to_ns'], 'time')}: "
                       f"{s['fills']} fills, fees {_cell(s['fees'], 'float')}, PnL "
                       f"{_cell(s['pnl'], 'float', signed=True)} "
                       f"({_cell(s['return'], 'pct', signed=True)})")
    return out


# -- the command ----------------------------------------------------------------------------------

def main_compare(a: str, b: str, db: str | Path | None, as_json: bool) -> int:
    """The body of ``ares-stream compare``: print the comparison; bad input: CompareError."""
    models = _models(a, b, db)
    c = compare_models(db, int(a), int(b)) if models and db is not None else compare_runs(a, b)
    sys.stdout.write((json.dumps(c, indent=2) if as_json else format_comparison(c)) + "\n")
    return 0


def _models(a: str, b: str, db: str | Path | None) -> bool:
    """Whether A and B are two model ids (with ``--db``) or two runs; anything else refused."""
    ids = [x.isdigit() for x in (a, b)]
    if ids[0] != ids[1]:
        run, model = (b, a) if ids[0] else (a, b)
        raise CompareError(f"cannot compare a run ({run}) with a model ({model}): give two "
                           "runs (PATH or PATH:RUN_ID) or two model ids with --db DB")
    if ids[0] and db is None:
        raise CompareError(f"{a} and {b} are model ids: name their database with --db DB "
                           "(a run is PATH or PATH:RUN_ID)")
    if not ids[0] and db is not None:
        raise CompareError("--db is for two model ids; runs are named PATH or PATH:RUN_ID")
    return ids[0]

