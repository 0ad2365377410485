"""The report page: one self-contained HTML5 document, readable offline.

Figures are embedded as ``data:`` PNG URIs and the style is one inline ``<style>``: the page
fetches nothing (no script, no external link, no web font). Every string that comes from the
database — symbols, reasons, details, paths — goes through :func:`html.escape`.

>>> cell(0.012345, "pct"), cell(float("nan"), "ratio"), cell(float("inf"), "ratio")
('+1.23 %', 'n/a', '∞')
>>> cell(12345.678, "money"), cell(None, "num"), cell(7, "int")
('12,345.68', 'n/a', '7')
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

import ares_stream
from ares_stream.validation.risk import QUANTILES, MonteCarlo, TailRisk

from .figures import time_span
from .model import ReportData, Uses, Validation
from .summary import MIN_DAYS

__all__ = ["cell", "page", "reason", "regime_table", "stress_results"]

MAX_DECISIONS = 20  # rows of the recent decisions table
MAX_INCIDENTS = 20  # rows of the recent incidents table
MAX_DETAIL = 120  # characters of an incident's detail
MAX_FILLS = 50  # rows of the last fills table
MAX_DRIFTED = 30  # rows of the drifted features table
MAX_RANKED = 12  # features of a champion's ranking
WHY_TOP = 3  # contributions in a fill's "why"
FOLD_COLUMNS = ("fold", "candidate", "n", "log_loss", "brier", "roc_auc", "accuracy",
                "total_return", "sharpe", "max_drawdown", "hit_rate")
_FOLD_FORMAT = {"fold": "int", "n": "int", "candidate": "text", "sharpe": "ratio"}
_FIGURES = {  # key: (section id, heading, alt text, what to look for)
    "equity": ("equity", "Equity and drawdown", "Equity curve and drawdown over time",
               "Equity above the dashed start line is profit; the red area below is the "
               "distance from the running peak — look for shallow, short drawdowns."),
    "fan": ("risk", "Risk", "Fan chart of bootstrapped equity paths with the realised equity",
            "Block-bootstrapped paths of the strategy's own returns, as long as the run: the "
            "light band holds 90 % of them, the dark band half; a realised line near the "
            "band's edge is a run luckier (or unluckier) than its returns' distribution."),
    "price": ("price", "Price, position and fills", "Close price per symbol with buy and sell "
              "fills and the position held", "Green ▲ are buys, red ▼ sells; the strip below "
              "each symbol is the quantity held — look for buys before rises and sells before "
              "falls."),
    "learners": ("learners", "Learners: rolling log loss and accuracy", "Rolling log loss and "
                 "accuracy of the River learner, the booster and the ensemble",
                 "Lines below the dotted baseline beat guessing the base rate; red dashed lines "
                 "are detected drift, green lines model promotions."),
    "importance": ("uses", "What the models use", "Heatmap of each symbol's booster versions "
                   "by the mean |SHAP| share of their top features", "Each column is a booster "
                   "version, each row a feature; brighter cells carry more of the model's mean "
                   "|SHAP| — look for a stable top feature and for sudden reorderings."),
    "coefficients": ("uses", "What the models use", "The online learner's coefficients on "
                     "standardized inputs over time, per symbol", "Each line is a feature's "
                     "weight in the River learner; red dashed lines are loss drifts — a weight "
                     "that changes sign after one is the learner following a new relationship."),
    "drift_timeline": ("uses", "What the models use", "Timeline of drifted features and of loss "
                       "drifts", "Purple dots: a feature's recent window moved away from the "
                       "champion's training window (PSI); red dashed lines: the loss drifted "
                       "(ADWIN), dotted: a feature drift event asked for an early refit."),
    "feed_health": ("feed-health", "Feed health", "Cumulative feed gaps, reconnects and "
                    "rejected frames over time", "Flat lines mean a clean feed; each step is "
                    "an incident, and the strip below marks other notices."),
}
_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 color:#1d2430;background:#fafbfc;margin:0 auto;max-width:1240px;padding:0 16px 48px}
h1{font-size:1.6em;margin:24px 0 8px}h2{font-size:1.25em;margin:0 0 10px}
h3{font-size:1.02em;margin:18px 0 6px}
section,header{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:16px 20px;
 margin:16px 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}
dt{color:#5b6574}dd{margin:0}nav a{margin-right:14px}
table{border-collapse:collapse;margin:6px 0 10px;font-variant-numeric:tabular-nums}
th,td{padding:3px 10px;border-bottom:1px solid #e6e9ee;text-align:left;vertical-align:top}
th{background:#f1f3f6;font-weight:600}td.num{text-align:right;white-space:nowrap}
.muted,figcaption{color:#5b6574}pre{overflow-x:auto;font-size:13px}
tr.yes td{background:#eefaf0}img{max-width:100%;height:auto;display:block}
figure{margin:0}.status-failed,.status-interrupted{color:#b42318;font-weight:600}
.status-finished{color:#137333}.status-running{color:#1a56db}
"""


def page(data: ReportData, figures: dict[str, bytes], *,
         extra: Sequence[tuple[str, str, str]] = (), generated: datetime | None = None) -> str:
    """The whole HTML document of ``data`` with ``figures`` (PNG bytes by key) embedded;
    ``extra`` sections (id, title, plain text shown preformatted) open the page."""
    when = generated or datetime.now(UTC)
    title = f"ares-stream report: run {data.run.id}"
    opening = [(_slug(sid), heading, text) for sid, heading, text in extra]
    body = [_header(data, title, when), _nav([(sid, heading) for sid, heading, _ in opening]),
            *(_section(sid, heading, f"<pre>{_esc(text)}</pre>")
              for sid, heading, text in opening), _summary(data),
            _figure_section(figures, "equity"),
            _risk(data, figures, "<h3>Regimes</h3>", regime_table(data),
                  "<h3>Stress results</h3>", stress_results(data)),
            _figure_section(figures, "price"),
            _figure_section(figures, "learners"), _uses(data, figures),
            _validation(data.validations),
            _figure_section(figures, "feed_health", _health(data))]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def cell(value: Any, kind: str = "num") -> str:
    """``value`` as a person reads it: ``pct`` (signed), ``pct0`` (unsigned), ``ratio``,
    ``money``, ``int``, ``num`` (4 decimals), ``signed`` (4 decimals) or ``text``; None and NaN
    are ``n/a``, infinities ``∞`` and ``−∞``."""
    if kind == "text" or isinstance(value, str):
        return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "n/a" if value is None else str(value)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    spec = {"pct": "{:+.2%}", "pct0": "{:.2%}", "ratio": "{:.2f}", "money": "{:,.2f}",
            "int": "{:,}", "num": "{:.4f}", "signed": "{:+.4f}"}[kind]
    return spec.format(round(x) if kind == "int" else x).replace("%", " %")


# -- building blocks ---------------------------------------------------------------------------

def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(head: list[str], rows: list[list[str]], classes: list[str] | None = None,
           numeric: tuple[int, ...] = ()) -> str:
    """A table of plain-text cells, every one escaped here; ``numeric`` columns align right."""
    out = ["<table>", "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"]
    for i, row in enumerate(rows):
        css = f' class="{classes[i]}"' if classes and classes[i] else ""
        tds = " ".join(f'<td class="num">{_esc(c)}</td>' if j in numeric else f"<td>{_esc(c)}</td>"
                       for j, c in enumerate(row))
        out.append(f"<tr{css}>{tds}</tr>")
    return "\n".join([*out, "</table>"])


def _section(sid: str, heading: str, *parts: str) -> str:
    return "\n".join([f'<section id="{sid}">', f"<h2>{_esc(heading)}</h2>", *filter(None, parts),
                      "</section>"])


def _when(t: np.datetime64 | int | None) -> str:
    """A UTC time to the second (``int``: nanoseconds since the epoch)."""
    if t is None:
        return "n/a"
    t64 = np.asarray(t).astype("datetime64[ns]")  # an int is taken as nanoseconds
    if np.isnat(t64):
        return "n/a"
    return str(np.datetime_as_string(t64, unit="s")).replace("T", " ") + " UTC"


def _slug(text: str) -> str:
    """A safe section id: letters, digits, ``-`` and ``_`` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "extra"


def _nav(first: list[tuple[str, str]]) -> str:
    links = [*first, ("summary", "Summary"), ("equity", "Equity"), ("risk", "Risk"),
             ("price", "Price"),
             ("learners", "Learners"), ("uses", "Models use"), ("validation", "Validation"),
             ("feed-health", "Feed")]
    return "<nav>" + "".join(f'<a href="#{i}">{_esc(t)}</a>' for i, t in links) + "</nav>"


# -- header and summary ------------------------------------------------------------------------

def _header(data: ReportData, title: str, generated: datetime) -> str:
    run, span = data.run, time_span(data)
    covered = f"{_when(span[0])} → {_when(span[1])}" if span else "no events"
    rows = [("Mode", run.mode), ("Status", run.status), ("Database", run.db_path),
            ("Bar interval", run.interval), ("Symbols", ", ".join(run.symbols) or "none"),
            ("Covered", covered)]
    if run.since is not None:
        rows.append(("Window", f"events from {_when(run.since)}"))
    if run.sources:
        rows.append(("Sources", ", ".join(run.sources)))
    rows += [("Run started", _when(run.started_at)),
             ("Run ended", _when(run.ended_at) if run.ended_at else "still running"),
             ("Generated", generated.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
             ("ares-stream", ares_stream.__version__)]
    items = "".join(f"<dt>{_esc(k)}</dt><dd{_status_class(k, v)}>{_esc(v)}</dd>"
                    for k, v in rows)
    return f"<header>\n<h1>{_esc(title)}</h1>\n<dl>{items}</dl>\n</header>"


def _status_class(key: str, value: str) -> str:
    return f' class="status-{_esc(value)}"' if key == "Status" else ""


def _why(s: dict[str, Any], key: str) -> str:
    """Why a summary figure is undefined, where that is known."""
    if not s.get("has_equity", True):
        return "no broker"
    if not s.get("traded", True) and key != "max_drawdown":
        return "no trades"
    if key == "hit_rate" and not s.get("round_trips"):
        return "no closed round trips"
    if key in ("sharpe", "sortino", "volatility") and s.get("daily_returns", 0) < MIN_DAYS:
        return f"run shorter than {MIN_DAYS} days"
    return "no drawdown" if key == "calmar" and s.get("max_drawdown") == 0 else ""


def _daily_note(s: dict[str, Any], key: str) -> str:
    """How a daily ratio was computed and its interval; for a short run, the per-bar figure
    labelled for what it is (see :mod:`.summary`)."""
    days = s.get("daily_returns", 0)
    kind = "pct0" if key == "volatility" else "ratio"
    lo, hi = s.get(f"{key}_ci") or (math.nan, math.nan)
    if isinstance(s.get(key), float) and math.isfinite(s[key]):
        return (f"from {cell(days, 'int')} daily returns ×√365; 90 % CI {cell(lo, kind)} … "
                f"{cell(hi, kind)} (block bootstrap)")
    bar = s.get(f"{key}_bar")
    if not isinstance(bar, float) or not math.isfinite(bar):
        return ""
    return (f"per-bar, indicative only: {cell(bar, kind)} on {s.get('period', '?')} returns "
            f"×√{cell(s.get('periods_per_year'), 'int')} (intraday autocorrelation biases it)")


def _value(s: dict[str, Any], key: str, kind: str) -> str:
    text = cell(s.get(key), kind)
    reason = _why(s, key) if text == "n/a" else ""
    return f"n/a ({reason})" if reason else text


def _summary(data: ReportData) -> str:
    s = data.summary
    duration = s.get("max_drawdown_duration") or ""
    equity = f"{cell(s.get('start_equity'), 'money')} → {cell(s.get('end_equity'), 'money')}"
    rows = [["Return", _value(s, "return", "pct"), "" if "n/a" in equity else equity],
            ["Sharpe (annualised)", _value(s, "sharpe", "ratio"), _daily_note(s, "sharpe")],
            ["Sortino (annualised)", _value(s, "sortino", "ratio"), _daily_note(s, "sortino")],
            ["Volatility (annualised)", _value(s, "volatility", "pct0"),
             _daily_note(s, "volatility")],
            ["Max drawdown", _value(s, "max_drawdown", "pct0"),
             f"lasted {duration}" if duration else ""],
            ["Calmar", _value(s, "calmar", "ratio"), "annualised return / max drawdown"],
            ["Hit rate", _value(s, "hit_rate", "pct0"),
             f"of {cell(s.get('round_trips', 0), 'int')} closed round trips, after fees"],
            ["Turnover", _value(s, "turnover", "ratio"), "traded notional / mean equity, per day"],
            ["Fees paid", _value(s, "fees", "money"), f"{cell(s.get('fills', 0), 'int')} fills"],
            ["Length covered", _length(s.get("days")), ""]]
    notes = "".join(f"<li>{_esc(n)}</li>" for n in s.get("notes") or [])
    return _section("summary", "Summary", _traded(s),
                    _table(["Metric", "Value", "Note"], rows, numeric=(1,)),
                    f'<ul class="muted">{notes}</ul>' if notes else "", _models(s))


def _length(days: Any) -> str:
    """Days, or hours under a day."""
    if not isinstance(days, int | float) or not math.isfinite(days):
        return "n/a"
    return f"{days:,.2f} days" if days >= 1 else f"{days * 24:.2f} hours"


def _traded(s: dict[str, Any]) -> str:
    """A plain sentence when the run did not trade (or had no broker to trade with)."""
    if not s.get("has_equity", True):
        return "<p><strong>No trades in this run: it had no broker.</strong></p>"
    return "" if s.get("traded", True) else "<p><strong>No trades in this run.</strong></p>"


def _count(n: int, noun: str) -> str:
    """``1 drift event``, ``2 drift events``."""
    return f"{cell(n, 'int')} {noun}{'' if n == 1 else 's'}"


def _models(s: dict[str, Any]) -> str:
    loss, acc, scored = s.get("log_loss") or {}, s.get("accuracy") or {}, s.get("scored") or {}
    rows = [[name, cell(loss.get(name)), cell(acc.get(name), "pct0"),
             cell(scored.get(name), "int") if name in scored else ""]
            for name in ("river", "booster", "ensemble")]
    rows.append(["constant baseline", cell(loss.get("constant")), "",
                 cell(scored.get("constant"), "int") if "constant" in scored else ""])
    facts = " · ".join(_count(s.get(key, 0), noun) for key, noun in (
        ("labelled", "labelled prediction"), ("drift_events", "drift event"),
        ("promotions", "promotion")))
    return ("<h3>Models</h3>\n"
            + _table(["Model", "Log loss", "Accuracy", "Predictions scored"], rows,
                     numeric=(1, 2, 3))
            + "\n<p class=\"muted\">Each model is scored on the labelled predictions where it "
              "had a probability: the booster only once a champion existed.</p>"
            + f"\n<p>{_esc(facts)}</p>")


# -- figures, validation, feed health ----------------------------------------------------------

def _figure_section(figures: dict[str, bytes], key: str, *after: str) -> str:
    sid, heading, _, _ = _FIGURES[key]
    return _section(sid, heading, _figure(figures, key), *after)


def _figure(figures: dict[str, bytes], key: str) -> str:
    _, _, alt, caption = _FIGURES[key]
    png = figures.get(key)
    if png is None:
        return '<p class="muted">Figure not available.</p>'
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<figure><img id="fig-{key}" alt="{_esc(alt)}" src="{uri}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


# -- risk --------------------------------------------------------------------------------------

def _risk(data: ReportData, figures: dict[str, bytes], *parts: str) -> str:
    """The section "Risk": the fan chart, the Monte Carlo's distributions, daily VaR/ES, then
    ``parts`` (HTML: the regime table and stress results, see :func:`regime_table`)."""
    r = data.risk
    mc = r.monte_carlo
    return _section("risk", "Risk", "<h3>Bootstrapped equity paths</h3>",
                    _figure(figures, "fan") if mc is not None
                    else _none_yet(f"Monte Carlo paths ({r.why})"),
                    "<h3>Monte Carlo distribution</h3>",
                    _monte_carlo(mc, r.basis, r.intraday) if mc is not None
                    else _none_yet("Monte Carlo distribution"),
                    "<h3>Daily value at risk and expected shortfall</h3>", _tails(r.tails, r.days),
                    *parts)


def _monte_carlo(mc: MonteCarlo, basis: str, intraday: bool) -> str:
    head = ["Over the horizon", *(f"{q:.0%}".replace("%", " %") for q in QUANTILES)]
    rows = [[name, *(cell(v, kind) for v in values)] for name, values, kind in (
        ("Final return", mc.final_return, "pct"), ("Max drawdown", mc.max_drawdown, "pct0"),
        ("Sharpe (annualised)", mc.sharpe, "ratio"))]
    note = (f"P(loss) over the horizon: {cell(mc.p_loss, 'pct0')}. {mc.n_paths:,} paths of "
            f"{mc.horizon:,} {basis} returns, circular blocks of {mc.block} (Politis–White)."
            + (" Intraday returns (a run shorter than 30 days): the annualised Sharpe is "
               "indicative only." if intraday else ""))
    return (_table(head, rows, numeric=tuple(range(1, len(head))))
            + f'\n<p class="muted">{_esc(note)}</p>')


def _tails(tails: dict[str, list[TailRisk]], days: dict[str, int]) -> str:
    """VaR and ES of each series at each level with their intervals; n/a for a short series."""
    rows = []
    for name, n in days.items():
        if name not in tails:
            rows.append([name, "", f"n/a ({n} daily returns, needs {MIN_DAYS})", "", "", "",
                         cell(n, "int")])
            continue
        rows += [[name, f"{t.level:.0%}".replace("%", " %"), cell(t.var, "pct0"),
                  _ci(t.var_ci), cell(t.es, "pct0"), _ci(t.es_ci), cell(t.n, "int")]
                 for t in tails[name]]
    if not rows:
        return _none_yet("Value at risk")
    return (_table(["Series", "Level", "VaR (1 day)", "90 % CI", "ES (1 day)", "90 % CI",
                    "Days"], rows, numeric=(2, 3, 4, 5, 6))
            + '\n<p class="muted">Historical, as losses of a day: VaR is the loss not exceeded '
              "on that share of days, ES the mean of the worst days beyond it; intervals are "
              "percentiles of the block bootstrap.</p>")


def _ci(interval: tuple[float, float]) -> str:
    return f"{cell(interval[0], 'pct0')} … {cell(interval[1], 'pct0')}"


def regime_table(data: ReportData) -> str:
    """Per symbol and market regime (causal, :mod:`.regimes`), and at regime transitions: the
    labelled bars, the traded probability's log loss and hit rate, the account's return."""
    rows = [[str(symbol), r.regime, cell(r.n, "int"), cell(r.share, "pct0"),
             cell(r.log_loss), cell(r.hit_rate, "pct0"), cell(r.pnl, "pct")]
            for symbol, table in sorted(data.regimes.items()) for r in table]
    if not rows:
        return _none_yet("Regime table (labelled bars with a known regime)")
    note = ('<p class="muted">Regimes from past data only: the volatility tercile (60 bars, '
            "against earlier bars' volatilities) and the 60-bar trend; transition: the 10 bars "
            "after a change. The return is the whole account's over those bars.</p>")
    return "<h3>By market regime</h3>\n" + note + _table(
        ["Symbol", "Regime", "Bars", "Share", "Log loss", "Hit rate", "Account return"], rows,
        numeric=(2, 3, 4, 5, 6))


def stress_results(data: ReportData) -> str:
    """The last ``ares-stream stress`` run on this database (kept beside it), as it was."""
    s = data.stress
    if not s:
        return _none_yet("Stress results (run `ares-stream stress --db …`)")
    rows = [[str(x.get("symbol", "")), str(x.get("scenario", "")), str(x.get("verdict", "")),
             cell(x.get("return"), "pct"), cell(x.get("max_drawdown"), "pct0"),
             cell(x.get("fills"), "int"), cell(x.get("fees"), "money"),
             cell(x.get("slippage"), "money"),
             (f"{x['kill_switch']} at {_when(int(x['kill_switch_at']))}"
              if x.get("kill_switch") and x.get("kill_switch_at") is not None
              else str(x.get("skipped") or "none"))]
            for x in s["scenarios"] if isinstance(x, dict)]
    head = (f"<h3>Stress scenarios</h3>\n<p class=\"muted\">{_esc(str(s.get('summary', '')))} "
            f"— ran {_esc(_when(int(s.get('ran_at') or 0)))}</p>")
    return head + _table(["Symbol", "Scenario", "Verdict", "Return", "Max drawdown", "Fills",
                          "Fees", "Slippage", "Kill switch (or why skipped)"], rows,
                         numeric=(3, 4, 5, 6, 7))


# -- what the models use -----------------------------------------------------------------------

def _none_yet(what: str) -> str:
    return f'<p class="muted">{_esc(what)}: none yet.</p>'


def _uses(data: ReportData, figures: dict[str, bytes]) -> str:
    u = data.uses
    has_importance = bool(np.isfinite(u.importance.share).any())
    has_drift = bool(u.feature_drift.time.size or data.drifts.time.size)
    has_coefs = bool(u.coefficients.time.size)
    return _section("uses", "What the models use",
                    "<h3>Importance across booster versions</h3>",
                    _figure(figures, "importance") if has_importance
                    else _none_yet("Booster importance"), _champions(u),
                    "<h3>The online learner's coefficients over time</h3>",
                    _figure(figures, "coefficients") if has_coefs
                    else _none_yet("Online learner coefficients"),
                    "<h3>Drifted features and loss drifts</h3>",
                    _figure(figures, "drift_timeline") if has_drift else "",
                    _drifted(data), f"<h3>Last {MAX_FILLS} fills and why (newest first)</h3>",
                    _fills(data))


def _champions(u: Uses) -> str:
    """Each symbol's champion booster: its features by mean |SHAP|, with gain share."""
    imp, parts = u.importance, []
    for symbol, model_id in sorted(u.champions.items()):
        at = imp.model_id == model_id
        head = f"{symbol}: champion booster v{int(imp.version[at][0])} (model {model_id})"
        rows = [[cell(i, "int"), str(f), cell(sh, "pct0"), cell(s), cell(g, "pct0")]
                for i, (f, sh, s, g) in enumerate(zip(
                    imp.feature[at], imp.share[at], imp.shap[at], imp.gain[at], strict=True), 1)]
        parts.append(f"<h3>{_esc(head)}</h3>\n" + _table(
            ["Rank", "Feature", "|SHAP| share", "Mean |SHAP|", "Gain share"],
            rows[:MAX_RANKED], numeric=(0, 2, 3, 4)))
    return "\n".join(parts) if parts else _none_yet("Champion booster ranking")


def _drifted(data: ReportData) -> str:
    """Drifted features (newest first) beside the run's drift events."""
    fd, dr = data.uses.feature_drift, data.drifts
    threshold = fd.threshold if fd.threshold.size == fd.time.size else np.full(fd.time.size,
                                                                                np.nan)
    rows = [[_when(fd.time[i]), str(fd.symbol[i]), "feature drifted", str(fd.feature[i]),
             f"PSI {cell(fd.psi[i])} > {cell(threshold[i])}, KS {cell(fd.ks[i])}"]
            for i in range(len(fd.time))]
    detector = dr.detector if dr.detector.size == dr.time.size else np.full(dr.time.size, "adwin")
    rows += [[_when(dr.time[i]), str(dr.symbol[i]), f"drift event ({detector[i]})", "",
              _event_detail(str(detector[i]), dr.mean_before[i], dr.mean_after[i])]
             for i in range(len(dr.time))]
    if not rows:
        return _none_yet("Feature drift and loss drift")
    rows.sort(key=lambda r: r[0], reverse=True)
    return _table(["Time", "Symbol", "What", "Feature", "Measure"], rows[:MAX_DRIFTED])


def _event_detail(detector: str, before: float, after: float) -> str:
    if detector == "features":
        return f"largest PSI {cell(after)} (threshold {cell(before)})"
    return f"mean loss {cell(before)} → {cell(after)}"


def _fills(data: ReportData) -> str:
    f, why = data.fills, data.uses.reasons
    if not f.time.size:
        return _none_yet("Fills")
    cids = f.client_id if f.client_id.size == f.time.size else np.full(f.time.size, "")
    last = range(len(f.time) - 1, max(-1, len(f.time) - 1 - MAX_FILLS), -1)
    rows = [[_when(f.time[i]), str(f.symbol[i]), str(f.side[i]), cell(f.qty[i], "num"),
             cell(f.price[i], "money"), cell(f.fee[i], "num"), reason(why.get(str(cids[i])))]
            for i in last]
    return _table(["Time", "Symbol", "Side", "Qty", "Price", "Fee", "Why (top SHAP)"], rows,
                  numeric=(3, 4, 5))


def reason(contributions: list[tuple[str, float | None, float]] | None) -> str:
    """A fill's "why": its order's top contributions as ``feature=value (+contribution)``.

    >>> reason([("flow_imb", 0.79, 1.3136), ("ret_1", None, -0.25)])
    'flow_imb=0.79 (+1.314), ret_1=n/a (-0.250)'
    >>> reason(None)
    'no reasons stored'
    """
    if not contributions:
        return "no reasons stored"
    return ", ".join(f"{name}={'n/a' if v is None else f'{v:.4g}'} ({c:+.3f})"
                     for name, v, c in contributions[:WHY_TOP])


def _validation(decisions: list[Validation]) -> str:
    if not decisions:
        return _section("validation", "Walk-forward validation", "<p>No walk-forward validation "
                        "in this run (batch learning off or not yet due).</p>")
    recent = decisions[::-1][:MAX_DECISIONS]
    rows = [[_when(v.time), v.symbol, v.challenger, v.incumbent, cell(v.improvement, "signed"),
             "yes" if v.promoted else "no", v.reason] for v in recent]
    table = _table(["Time", "Symbol", "Challenger", "Incumbent", "Log-loss gain", "Promoted",
                    "Reason"], rows, ["yes" if v.promoted else "" for v in recent],
                   numeric=(4,))
    newest = {v.symbol: v for v in decisions}  # the last decision of each symbol wins
    folds = [_folds(newest[sym]) for sym in sorted(newest)]
    return _section("validation", "Walk-forward validation", "<h3>Recent decisions (newest "
                    "first)</h3>", table, *folds)


def _folds(v: Validation) -> str:
    verdict = "promoted" if v.promoted else "kept the incumbent"
    head = f"{v.symbol}: {v.challenger} vs {v.incumbent} at {_when(v.time)} ({verdict})"
    rows = [[cell(r[k], _FOLD_FORMAT.get(k, "num")) if k in r else "" for k in FOLD_COLUMNS]
            for r in v.folds]
    numeric = tuple(i for i, k in enumerate(FOLD_COLUMNS) if k != "candidate")
    return f"<h3>{_esc(head)}</h3>\n" + _table(list(FOLD_COLUMNS), rows, numeric=numeric)


def _health(data: ReportData) -> str:
    h = data.health
    totals = (_table(["Total", "Count"], [[k, cell(v, "int")] for k, v in h.totals.items()],
                     numeric=(1,))
              if h.totals else '<p class="muted">No totals recorded.</p>')
    last = range(len(h.time) - 1, max(-1, len(h.time) - 1 - MAX_INCIDENTS), -1)
    rows = [[_when(h.time[i]), str(h.kind[i]), cell(int(h.count[i]), "int"),
             _truncate(str(h.detail[i]))] for i in last]
    incidents = (_table(["Time", "Kind", "Count", "Detail"], rows, numeric=(2,)) if rows
                 else '<p class="muted">No incidents recorded.</p>')
    return "\n".join(["<h3>Totals</h3>", totals,
                      f"<h3>Last {MAX_INCIDENTS} incidents (newest first)</h3>", incidents])


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
