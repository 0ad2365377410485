"""Batch learning beside the online learner: buffer, booster lineage, re-validation, champion.

Per symbol, labelled samples go to a :class:`~ares_stream.learners.buffer.SampleBuffer`. Jobs —
plain functions in :mod:`ares_stream.batch.jobs` — run in a worker process (which dies
with its parent, :mod:`ares_stream.batch.worker`):

- **update** every ``batch.update_rows`` new samples (or every ``batch.update_every`` of event
  time): continue the lineage's latest booster on the new rows (warm start, or refresh), refit on
  the window past the tree cap, after an upward drift of the online learner, or when the feature
  schema changed; the result is registered as a *candidate*;
- **validate** every ``batch.validate_every``: purged walk-forward over the buffer window; a
  challenger becomes *champion* only when the gate says it beats the incumbent;
- **tune** every ``tuning.every`` (``tuning.enabled``): a hyperparameter search on the same
  walk-forward (:mod:`ares_stream.batch.tuning`, recorded in the ``tuning`` table); its best
  configuration competes as ``xgb_tuned`` in the validations after it, and is promoted only with
  a deflated Sharpe of at least ``tuning.min_dsr`` for the trials it was chosen from. In replay
  the search is bounded by ``tuning.trials`` alone, so the replay stays deterministic.

Results come back between frames. In replay a result applies at the first bar at least
``batch.apply_delay`` of event time after its submission — waiting for the worker if needed — so
a replay is deterministic; live it applies as soon as it is done.

**Weights and edge.** Every validation re-measures each model on its own evidence; its *skill*
is its walk-forward log-loss gain over the constant prior: the online learner by the River
recipe's folds; the lineage's booster by the ``lineage`` policy — or, once a validation has fitted
the refit recipe on the whole window (every validation does, and that model continues the
lineage), by the recipe's folds; the champion by the challenger's folds in the validation that
promoted it, then by its own out-of-sample rows (the ``current`` candidate) once they span enough
folds. A champion that has not re-earned a positive skill within ``champion_max_validations``
validations or ``champion_max_age`` of event time gets weight 0.

The forecast (:meth:`BatchLearner.blend`) is the models by skill
(:func:`~ares_stream.learners.ensemble.ensemble`) until a refit exists, then the mix of the online
learner and that refit that scored best on their own live predictions
(:class:`~ares_stream.learners.ensemble.OnlinePool`, skill weights until it has enough labels).
What trades is narrower: with ``trading.require_edge`` (the default) only the weighted models
whose after-cost fold PnL, trading the broker's rule, has a bootstrap interval above 0
(:func:`~ares_stream.validation.promotion.edge`) make the broker's probability; with none the
symbol is flat and :meth:`BatchLearner.blocked` says why. A challenger is promoted champion only
with both the log-loss evidence and that edge.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import structlog

from ares_stream import logs
from ares_stream.batch import featuredrift, jobs, manual, selecting, tuning, worker
from ares_stream.clock import ReplayClock
from ares_stream.config import Config
from ares_stream.errors import AresError
from ares_stream.features.bars import parse_interval
from ares_stream.features.families import feature_names
from ares_stream.learners import booster as bst
from ares_stream.learners.buffer import SampleBuffer
from ares_stream.learners.ensemble import OnlinePool, ensemble
from ares_stream.learners.importance import TOP_K, Reason, contributions
from ares_stream.learners.registry import Registry
from ares_stream.store.buffer import BufferStore
from ares_stream.store.models import ModelPruned
from ares_stream.store.selection import insert as insert_selection
from ares_stream.store.tuning import insert as insert_tuning
from ares_stream.store.tuning import optuna_path
from ares_stream.store.validations import ValidationRow, insert, measured
from ares_stream.validation import walkforward
from ares_stream.validation.promotion import Edge

log = structlog.get_logger("ares_stream.batch")

_TIMELINE = 50  # models of a policy's history handed to a validation


def _ns(text: str) -> int:
    return 0 if text == "0s" else parse_interval(text)


@dataclass(frozen=True)
class Blend:
    """What the batch side makes of one bar's features (see :meth:`BatchLearner.blend`)."""

    forecast: float  # every model weighted by its own validated skill
    booster: float | None  # the champion's own probability (None: no champion)
    trade: float  # the models with a validated edge, by skill (NaN: none may trade)
    blocked: str  # why nothing may trade ("" when ``trade`` is a probability)


@dataclass
class Pending:
    """A job submitted to the worker; in replay it applies at ``apply_at`` (event time, ns)."""
    symbol: str
    kind: str  # "train" | "validate"
    future: Future[Any]
    submitted: int
    apply_at: int
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class SymbolBatch:
    """One symbol's batch state."""

    buffer: SampleBuffer
    lineage: list[jobs.Blob] = field(default_factory=list)  # the newest boosters, oldest first
    champion: jobs.Blob | None = None
    champion_tb: bst.TrainedBooster | None = None
    champion_since: list[tuple[int, jobs.Blob]] = field(default_factory=list)  # (since, model)
    trained_through: int = -1  # event time of the newest row the lineage has seen
    validated_through: int = -1  # event time of the newest row of the last validation
    force_refit: bool = False
    busy: set[str] = field(default_factory=set)
    newest_tb: tuple[int | None, bst.TrainedBooster] | None = None  # lineage[-1], loaded
    refit_tb: bst.TrainedBooster | None = None  # the last validation's whole-window refit
    refit_id: int | None = None  # its model id
    skill: dict[str, float] = field(default_factory=dict)  # river|champion|lineage -> LL gain
    edge: dict[str, Edge] = field(default_factory=dict)  # ... -> after-cost edge
    validations: int = 0  # validations applied
    earned: tuple[int, int] | None = None  # (validation, event time) the champion last earned
    pool: OnlinePool = field(default_factory=OnlinePool)  # online learner vs refit, learned live
    last_x: dict[str, float] | None = None  # the features of the last bar blended (reasons)
    tuned: jobs.Tuned | None = None  # the last search's best: xgb_tuned in validations
    decision: tuple[str, bool] | None = None  # the last validation's (challenger, promoted)


class BatchLearner:
    """The batch side of one shard (all its symbols)."""

    def __init__(self, config: Config, registry: Registry, *, features: tuple[str, ...],
                 replay: bool = True, executor: Executor | None = None,
                 buffer_store: BufferStore | None = None) -> None:
        self.config = config
        self.cfg = config.batch
        self.registry = registry
        self.features = features
        self.replay = replay
        self.executor = executor or _executor(config)
        self.buffer_store = buffer_store
        self.settings = jobs.settings_of(config)
        self.update_every = _ns(self.cfg.update_every)
        self.validate_every = _ns(self.cfg.validate_every)
        self.apply_delay = _ns(self.cfg.apply_delay)
        self.max_age = _ns(self.cfg.champion_max_age)
        self.feature_every = _ns(config.drift.feature_every)  # 0: no feature drift check
        self.tune_every = _ns(config.tuning.every) if config.tuning.enabled else 0
        self.watch = featuredrift.Watch()
        self.feature_psi: dict[tuple[str, str], float] = {}  # (symbol, feature) -> last PSI
        self.features_drifting: dict[str, int] = {}  # symbol -> drifted at the last check
        self.require_edge = config.trading.require_edge
        self.now = 0  # event time of the newest bar (submissions count apply_delay from it)
        self.symbols: dict[str, SymbolBatch] = {}
        self.pending: list[Pending] = []
        self.clock = ReplayClock() if replay else None  # live: a LiveClock calls periodic()
        self.counts: dict[str, int] = {"trained": 0, "refits": 0, "warm_starts": 0,
                                       "refreshes": 0, "validations": 0, "promotions": 0,
                                       "skipped_busy": 0, "feature_checks": 0,
                                       "feature_drifts": 0, "manual": 0}
        self.fits: deque[tuple[str, str, float]] = deque(maxlen=1000)  # (symbol, how, seconds)

    # -- inputs from the engine ---------------------------------------------------------------

    def on_sample(self, symbol: str, ts: int, x: dict[str, float], label: int,
                  fwd: float, close: float = math.nan) -> None:
        """Buffer one labelled sample; submit an update once ``update_rows`` new rows came."""
        sb = self._symbol(symbol)
        sb.buffer.add(ts, x, label, fwd, close)
        sb.pool.learn(ts, label)
        if len(sb.buffer) >= self.cfg.min_rows and (
                sb.buffer.added_since(sb.trained_through) >= self.cfg.update_rows):
            self.submit_update(symbol, ts)

    def on_drift(self, symbol: str, ts: int) -> None:
        """An upward drift of the online learner: the next update refits from scratch, now; the
        edge every model was validated with predates the change, so nothing trades until a
        validation, submitted now, measures it again."""
        sb = self._symbol(symbol)
        sb.force_refit = True
        self.submit_update(symbol, ts)
        if sb.edge:
            sb.edge = {}
            log.info("edge_suspended", symbol=symbol, ts_event=ts,
                     reason="drift: the validated edge predates the change")
        self.submit_validation(symbol, ts)

    def tick(self, symbol: str, ts: int) -> None:
        """Called at every bar: in replay the event-time clock runs the periodic jobs, then
        results that are due are applied. Live, a LiveClock calls :meth:`periodic`."""
        self._symbol(symbol)
        self.now = max(self.now, ts)
        if self.clock is not None:
            self.clock.advance(ts)
        self.apply_due(ts)

    def periodic(self, kind: str, now_ns: int) -> None:
        """The periodic job (``kind``: "train" | "validate"), for every symbol."""
        for symbol in list(self.symbols):
            self._timed(symbol, kind, now_ns)

    def _timed(self, symbol: str, kind: str, now_ns: int) -> None:
        """A period only triggers a job when enough new samples came since the last one
        (``update_rows / 4`` for an update, ``validate_rows`` for a validation): the same
        settings then suit 1-second and 1-hour bars. Cheap: a window copy and a submission."""
        sb = self.symbols[symbol]
        if len(sb.buffer) < self.cfg.min_rows:
            return
        at = sb.buffer.newest() or now_ns
        if kind == "train" and (
                sb.buffer.added_since(sb.trained_through) >= self.cfg.update_rows // 4):
            self.submit_update(symbol, at)
        elif kind == "validate" and (
                sb.buffer.added_since(sb.validated_through) >= self.cfg.validate_rows):
            self.submit_validation(symbol, at)
        elif kind == "features":
            self.submit_features(symbol, at)
        elif kind == "tune":
            self.submit_tuning(symbol, at)

    def proba(self, symbol: str, x: dict[str, float]) -> float | None:
        """The champion booster's P(label = 1) for ``x``; None without a champion."""
        sb = self.symbols.get(symbol)
        if sb is None or sb.champion_tb is None:
            return None
        return bst.predict_one(sb.champion_tb, x)

    def skills(self, symbol: str) -> tuple[float, float]:
        """The online learner's and the champion's weight in the ensemble: each one's own skill
        at its latest validation (the log-loss gain over the constant prior; 0.0 before one);
        an expired champion's is 0.0."""
        sb = self.symbols.get(symbol)
        if sb is None:
            return 0.0, 0.0
        weights = self._weights(sb)
        return weights["river"], weights["champion"]

    def blend(self, symbol: str, x: dict[str, float], p_online: float) -> Blend:
        """The forecast, the champion's probability, and what may trade: the weighted models
        with a validated edge after costs, or why none (module docstring)."""
        sb = self.symbols.get(symbol)
        booster = self.proba(symbol, x)
        if sb is not None:
            sb.last_x = x  # a reference: explained only if an order follows (:meth:`reasons`)
        if sb is None:
            return Blend(p_online, booster, p_online if not self.require_edge else math.nan,
                         self.blocked(symbol))
        weights = self._weights(sb)
        probs = {"river": p_online}
        if booster is not None:
            probs["champion"] = booster
        newest = self._newest(sb)
        if newest is not None:
            probs["lineage"] = (booster if newest is sb.champion_tb and booster is not None
                                else bst.predict_one(newest, x))
        members = [(probs[name], w) for name, w in weights.items() if name in probs]
        forecast = ensemble(members, p_online)
        if sb.refit_tb is not None and "lineage" in probs:
            sb.pool.record(self.now, p_online, probs["lineage"])
            w = sb.pool.weight()  # None: not enough labels yet, the skill weights stand
            if w is not None:
                forecast = w * p_online + (1.0 - w) * probs["lineage"]
        if not self.require_edge:
            return Blend(forecast, booster, forecast, "")
        edged = [(probs[name], w) for name, w in weights.items()
                 if name in probs and w > 0.0 and self._has_edge(sb, name)]
        if not edged:
            return Blend(forecast, booster, math.nan, self.blocked(symbol))
        return Blend(forecast, booster, ensemble(edged, forecast), "")

    def reasons(self, symbol: str, k: int = TOP_K) -> tuple[int | None, list[Reason]] | None:
        """Why the last blended bar of ``symbol`` predicted what it did: the booster's id and
        the ``k`` largest SHAP contributions of its prediction — the champion's, else the
        lineage booster the forecast used; None without one. Asked by the broker only when the
        bar sends an order (exact TreeSHAP on one row: a fraction of a millisecond)."""
        sb = self.symbols.get(symbol)
        if sb is None or sb.last_x is None:
            return None
        if sb.champion_tb is not None and sb.champion is not None:
            return sb.champion.model_id, contributions(sb.champion_tb, sb.last_x, k)
        newest = self._newest(sb)
        if newest is None:
            return None
        model_id = sb.refit_id if newest is sb.refit_tb else sb.lineage[-1].model_id
        return model_id, contributions(newest, sb.last_x, k)

    def _weights(self, sb: SymbolBatch) -> dict[str, float]:
        """Each model's weight: its skill (0 for an expired champion, or a model not there)."""
        champion = 0.0 if self._expired(sb) else sb.skill.get("champion", 0.0)
        lineage = sb.skill.get("lineage", 0.0) if self._newest(sb) is not None else 0.0
        return {"river": sb.skill.get("river", 0.0), "champion": champion, "lineage": lineage}

    def _newest(self, sb: SymbolBatch) -> bst.TrainedBooster | None:
        """The lineage's booster the forecast uses, if it has a skill: the last validation's
        whole-window refit — the recipe whose skill was measured, not a warm start on the few
        hundred rows since — else the lineage's newest when it is not the champion (cached)."""
        if not sb.lineage or sb.skill.get("lineage", 0.0) <= 0.0:
            return None
        if sb.refit_tb is not None:
            return sb.refit_tb
        blob = sb.lineage[-1]
        if sb.champion is not None and blob.model_id == sb.champion.model_id:
            return None  # weighted as the champion already
        if sb.newest_tb is None or sb.newest_tb[0] != blob.model_id:
            sb.newest_tb = (blob.model_id, jobs.from_blob(blob))
        return sb.newest_tb[1]

    def _has_edge(self, sb: SymbolBatch, name: str) -> bool:
        e = sb.edge.get(name)
        return e is not None and e.ok

    def blocked(self, symbol: str) -> str:
        """Why the symbol's signal may not reach the broker now ("" when it may): with
        ``trading.require_edge`` only weighted models with a validated edge after costs trade
        (:meth:`blend`)."""
        if not self.require_edge:
            return ""
        sb = self.symbols.get(symbol)
        if sb is None or not sb.validations:
            return "no walk-forward validation yet"
        if not sb.edge:
            return "a drift since the last validation: waiting for the next one"
        weights = self._weights(sb)
        if any(w > 0.0 and self._has_edge(sb, name) for name, w in weights.items()):
            return ""
        if not any(w > 0.0 for w in weights.values()):
            why = "no model beats the constant prior"
            if sb.champion is not None and self._expired(sb):
                why += f" (champion {sb.champion.model_id} {self._expiry(sb)})"
            return why
        lacking = [f"{name}: {sb.edge[name].reason if name in sb.edge else 'not measured'}"
                   for name, w in weights.items() if w > 0.0]
        return "no validated edge after costs (" + "; ".join(lacking) + ")"

    def _expired(self, sb: SymbolBatch) -> bool:
        """No champion, or it has not re-earned its place for too many validations or too long."""
        if sb.champion is None or sb.earned is None:
            return True
        n, ts = sb.earned
        return (sb.validations - n > self.cfg.champion_max_validations
                or self.now - ts > self.max_age)

    def _expiry(self, sb: SymbolBatch) -> str:
        if sb.earned is None:
            return "not validated since it was loaded"
        return (f"not re-earned since validation {sb.earned[0]} (limits: "
                f"{self.cfg.champion_max_validations} validations, {self.cfg.champion_max_age})")

    # -- jobs -----------------------------------------------------------------------------------

    def submit_update(self, symbol: str, ts: int) -> None:
        """Submit a training job continuing the lineage (a refit without a usable parent).
        Skipped, and counted in ``skipped_busy``, while the symbol's last one is still running."""
        sb = self._symbol(symbol)
        if "train" in sb.busy:
            self.counts["skipped_busy"] += 1
            return
        parent = sb.lineage[-1] if sb.lineage else None
        if parent is not None and parent.meta["feature_hash"] != sb.buffer.feature_hash:
            parent = None  # never warm start across a changed feature schema
        window = self._window(sb)
        since = int(parent.meta["train_end"]) if parent is not None else -1
        future = self.executor.submit(jobs.train, window, since, parent, self.settings,
                                      sb.force_refit)
        sb.force_refit = False
        self._pending(symbol, "train", future, ts, parent=parent)

    def submit_validation(self, symbol: str, ts: int) -> None:
        """Submit a walk-forward validation of the symbol's buffer window against its champion.
        Skipped while one is running or while the buffer holds fewer than ``min_rows`` samples."""
        sb = self._symbol(symbol)
        if "validate" in sb.busy or len(sb.buffer) < self.cfg.min_rows:
            self.counts["skipped_busy"] += "validate" in sb.busy
            return
        spec = jobs.spec_of(self.config)
        sb.validated_through = sb.buffer.newest() or ts
        lineage = [(int(b.meta["train_end"]), b) for b in sb.lineage[-_TIMELINE:]]
        sspec = selecting.spec_of(self.config)  # [selection]: the job selects features too
        job: Any = (jobs.validate if sspec is None
                    else functools.partial(selecting.validate, sspec))
        future = self.executor.submit(job, self._window(sb), spec, self.settings,
                                      sb.champion_since[-_TIMELINE:], lineage, sb.tuned)
        self._pending(symbol, "validate", future, ts, champion=sb.champion,
                      candidate=sb.lineage[-1] if sb.lineage else None)

    def submit_tuning(self, symbol: str, ts: int) -> None:
        """Submit a hyperparameter search on the buffer window (rows labelled by ``ts``), its
        study in ``<db>.optuna.db``. Skipped while one runs."""
        sb = self._symbol(symbol)
        if "tune" in sb.busy:
            return
        t = self.config.tuning
        how = tuning.SearchSpec(t.trials, None if self.replay else t.seconds, t.seed,
                                optuna_path(self.registry.db), f"{symbol}@{ts}")
        future = self.executor.submit(tuning.search, self._window(sb), ts,
                                      jobs.spec_of(self.config), self.settings, how)
        self._pending(symbol, "tune", future, ts)

    def _apply_tuning(self, sb: SymbolBatch, p: Pending, out: tuning.SearchOutcome) -> None:
        """Keep the search's best for the next validations; record the search."""
        sb.tuned = out.tuned() or sb.tuned
        insert_tuning(self.registry.db, tuning.row_of(out, self.registry.run_id, p.symbol))
        self.counts["searches"] = self.counts.get("searches", 0) + 1
        d = out.deflated
        log.info("tuning_finished", symbol=p.symbol, study=out.study, trials=len(out.trials),
                 pruned=out.pruned, best=out.best.value if out.best else None,
                 dsr=d.dsr if d else None)

    def submit_features(self, symbol: str, ts: int) -> None:
        """Submit a feature drift check: the newest ``drift.feature_window`` rows against the
        champion's (before one, the newest booster's) training rows
        (:mod:`ares_stream.batch.featuredrift`). Skipped while one runs or the windows are not
        there yet."""
        sb = self._symbol(symbol)
        ref = sb.champion or (sb.lineage[-1] if sb.lineage else None)
        if ("features" in sb.busy or ref is None or ref.model_id is None
                or ref.meta["feature_hash"] != sb.buffer.feature_hash):
            return
        w = featuredrift.windows(sb.buffer, int(ref.meta["train_start"]),
                                 int(ref.meta["train_end"]), self.config.drift.feature_window)
        if w is not None:
            future = self.executor.submit(featuredrift.check, w, sb.buffer.features,
                                          self.config.drift)
            self._pending(symbol, "features", future, ts, model_id=ref.model_id)

    def _pending(self, symbol: str, kind: str, future: Future[Any], ts: int,
                 **context: Any) -> None:
        self.symbols[symbol].busy.add(kind)
        at = max(ts, self.now)  # ``ts`` may be a sample's time, ``horizon`` bars in the past
        self.pending.append(Pending(symbol, kind, future, at, at + self.apply_delay, context))

    def _window(self, sb: SymbolBatch) -> jobs.Window:
        ts, X, y, fwd = sb.buffer.window()
        return jobs.Window(ts, X, y, fwd, sb.buffer.features, sb.buffer.closes())

    # -- results --------------------------------------------------------------------------------

    def apply_due(self, ts: int) -> None:
        """Apply finished jobs: replay at their event time (waiting if needed), live when done."""
        if not self.pending:
            return
        keep = []
        for p in self.pending:
            if (p.apply_at <= ts) if self.replay else p.future.done():
                self._apply(p, ts)
            else:
                keep.append(p)
        self.pending = keep

    def _apply(self, p: Pending, ts: int) -> None:
        sb = self.symbols[p.symbol]
        sb.busy.discard(p.kind)
        try:
            result = p.future.result()
        except Exception as exc:  # a failed job is logged and counted; the feed carries on
            self.counts[f"{p.kind}_failed"] = self.counts.get(f"{p.kind}_failed", 0) + 1
            log.error("job_failed", job=p.kind, symbol=p.symbol, error=repr(exc))
            return
        if p.kind == "tune":
            self._apply_tuning(sb, p, result)
        elif p.kind == "features":
            self._apply_features(sb, p, result, ts)
        else:
            (self._apply_train if p.kind == "train" else self._apply_validation)(sb, p, result, ts)

    def _apply_features(self, sb: SymbolBatch, p: Pending, results: Any, ts: int) -> None:
        """Store a feature drift check; enough drifted features make a drift event of detector
        "features" and an early refit, as an upward ADWIN drift does (:meth:`on_drift`)."""
        self.counts["feature_checks"] += 1
        self.feature_psi.update({(p.symbol, r.feature): r.psi for r in results})
        self.features_drifting[p.symbol] = sum(bool(r.drifted) for r in results)
        if featuredrift.record(self.registry.db, self.registry.run_id, p.symbol, p.submitted,
                               results, p.context["model_id"], self.config.drift,
                               self.watch):
            self.counts["feature_drifts"] += 1
            self.on_drift(p.symbol, ts)

    def _apply_train(self, sb: SymbolBatch, p: Pending, blob: jobs.Blob, ts: int) -> None:
        parent = p.context.get("parent")
        tb = jobs.from_blob(blob)
        rec = self.registry.add_booster(p.symbol, tb, created=ts,
                                        parent=parent.model_id if parent is not None else None,
                                        importance=blob.meta.get("importance"))
        _hold(sb.lineage, jobs.Blob(blob.data, blob.meta, rec.id))
        self.registry.prune(p.symbol, keep=self.cfg.keep_models)  # the champions stay
        sb.trained_through = tb.train_end
        how = {"refit": "refits", "warm_start": "warm_starts", "refresh": "refreshes"}[tb.how]
        self.counts["trained"] += 1
        self.counts[how] += 1
        self.fits.append((p.symbol, tb.how, float(blob.meta.get("fit_s", math.nan))))
        log.info("model_trained", symbol=p.symbol, model_id=rec.id, how=tb.how,
                 trees=tb.n_trees, rows=tb.rows)

    def _apply_validation(self, sb: SymbolBatch, p: Pending, out: jobs.ValidationOutcome,
                          ts: int) -> None:
        d = out.decision
        self.counts["validations"] += 1
        sb.validations += 1
        champ = p.context.get("champion")
        superseded = _id(champ) != _id(sb.champion)  # a manual decision came while it ran
        if superseded and d.promote:
            d = dataclasses.replace(d, promote=False, reason=d.reason + " (not applied: a "
                                    "manual decision changed the champion while it ran)")
        challenger_id = self._promote(sb, p, out, ts) if d.promote else None
        if d.promote and challenger_id is None:
            d = dataclasses.replace(d, promote=False,
                                    reason=d.reason + " (skipped: the candidate was pruned)")
        self._remeasure(sb, out.summary, out.edges, d.challenger, ts, promoted=d.promote,
                        champion=not superseded)
        if out.refit is not None and not (d.promote and d.challenger == "xgb_refit"):
            self._adopt_refit(sb, p.symbol, out, ts)
        row = ValidationRow(
            self.registry.run_id, p.symbol, ts, d.challenger, challenger_id, d.incumbent,
            champ.model_id if champ is not None else None, d.folds, _num(d.challenger_loss),
            _num(d.incumbent_loss), _num(d.improvement), _num(d.ci_low), _num(d.ci_high),
            d.margin, d.promote, d.reason, json.dumps([_fold_row(r) for r in out.results]))
        insert(self.registry.db, row)
        sb.decision = (d.challenger, bool(d.promote))
        if out.selected is not None:
            self._record_selection(p.symbol, out.selected, ts,
                                   challenger_id if d.challenger == "xgb_selected" else None)
        log.info("model_validated", symbol=p.symbol, challenger=d.challenger,
                 incumbent=d.incumbent, promoted=d.promote, reason=d.reason)

    def _record_selection(self, symbol: str, chosen: selecting.Selected, ts: int,
                          model_id: int | None) -> None:
        """Store a validation's feature selection and its evidence (store/selection.py)."""
        s = chosen.selection
        insert_selection(self.registry.db,
                         selecting.rows_of(s, self.registry.run_id, symbol, ts, model_id))
        log.info("features_selected", symbol=symbol, kept=list(s.kept), dropped=list(s.dropped),
                 folds=len(s.folds), seconds=round(chosen.seconds, 3))

    def _remeasure(self, sb: SymbolBatch, summary: dict[str, dict[str, float]],
                   edges: dict[str, Edge], challenger: str, ts: int, *, promoted: bool,
                   champion: bool = True) -> None:
        """Each traded model's own skill and edge from a validation (module docstring); the
        champion's only when it measured the champion there is now (``champion``)."""
        def gain(name: str) -> float:
            return _gain(summary, name)

        for name in ("river", "lineage"):  # recipes and policies measured afresh every time
            if name in edges:
                sb.skill[name], sb.edge[name] = gain(name), edges[name]
        if not champion:
            return
        if promoted:
            source = challenger
        elif sb.champion is not None and summary.get("current", {}).get("folds", 0.0) >= 3:
            source = "current"  # enough of its own out-of-sample rows: judged on them alone
        else:
            return  # not measurable yet: keeps its skill until it expires
        if source not in edges:
            return
        sb.skill["champion"], sb.edge["champion"] = gain(source), edges[source]
        if sb.skill["champion"] > 0.0:
            sb.earned = (sb.validations, ts)

    def _adopt_refit(self, sb: SymbolBatch, symbol: str, out: jobs.ValidationOutcome,
                     ts: int) -> None:
        """The refit recipe's whole-window model continues the lineage (warm starts go on from
        it), weighted by the recipe's validated skill: a fresh fit every validation."""
        assert out.refit is not None
        tb = sb.refit_tb = jobs.from_blob(out.refit)
        rec = self.registry.add_booster(symbol, tb, created=ts,
                                        importance=out.refit.meta.get("importance"))
        sb.refit_id = rec.id
        _hold(sb.lineage, jobs.Blob(out.refit.data, out.refit.meta, rec.id))
        sb.trained_through = max(sb.trained_through, tb.train_end)
        sb.skill["lineage"], sb.edge["lineage"] = _gain(out.summary, "xgb_refit"), out.edges[
            "xgb_refit"]
        self.registry.prune(symbol, keep=self.cfg.keep_models)

    def _promote(self, sb: SymbolBatch, p: Pending, out: jobs.ValidationOutcome,
                 ts: int) -> int | None:
        if out.decision.challenger == "xgb_refit" and out.refit is not None:
            tb = sb.refit_tb = jobs.from_blob(out.refit)
            rec = self.registry.add_booster(p.symbol, tb, created=ts,
                                            importance=out.refit.meta.get("importance"))
            sb.refit_id = rec.id
            blob = _hold(sb.lineage, jobs.Blob(out.refit.data, out.refit.meta, rec.id))
            sb.trained_through = tb.train_end
        elif out.decision.challenger == "xgb_tuned" and out.tuned is not None:
            rec = self.registry.add_booster(p.symbol, jobs.from_blob(out.tuned), created=ts,
                                            importance=out.tuned.meta.get("importance"))
            blob = _hold(sb.lineage, jobs.Blob(out.tuned.data, out.tuned.meta, rec.id))
            # same schema: warm starts may continue it
        elif out.decision.challenger == "xgb_selected" and out.selected is not None \
                and out.selected.model is not None:  # kept features only: not in the lineage
            tb = jobs.from_blob(out.selected.model)  # (its schema differs: no warm start)
            rec = self.registry.add_booster(p.symbol, tb, created=ts,
                                            importance=out.selected.model.meta.get("importance"))
            blob = jobs.pack(jobs.Blob(out.selected.model.data, out.selected.model.meta, rec.id))
        else:
            blob = p.context["candidate"]
        assert blob.model_id is not None
        try:
            self.registry.promote(blob.model_id)  # logs model_promoted
        except ModelPruned as exc:  # more than keep_models boosters came while it validated
            log.warning("promotion_skipped", symbol=p.symbol, model_id=blob.model_id,
                        reason=str(exc))
            return None
        sb.champion, sb.champion_tb = blob, jobs.from_blob(blob)
        _keep(sb.champion_since, (ts, blob))
        self.counts["promotions"] += 1
        return blob.model_id

    # -- plumbing -------------------------------------------------------------------------------

    def _symbol(self, symbol: str) -> SymbolBatch:
        sb = self.symbols.get(symbol)
        if sb is None:
            buffer = SampleBuffer(symbol, self.features, max_rows=self.cfg.buffer_rows,
                                  max_age_ns=int(self.cfg.buffer_days * 86_400e9),
                                  store=self.buffer_store)
            if self.buffer_store is not None:
                buffer.load()
            sb = self.symbols[symbol] = SymbolBatch(buffer)
            if self.clock is not None:
                for kind, every in (("train", self.update_every),
                                    ("validate", self.validate_every),
                                    ("features", self.feature_every),
                                    ("tune", self.tune_every)):
                    if every > 0:
                        self.clock.every(f"{kind}:{symbol}", every,
                                         functools.partial(self._timed, symbol, kind))
            champ = self.registry.champion(symbol)
            if champ is not None:
                tb = self.registry.load_booster(champ.id)
                sb.champion = _hold(sb.lineage, jobs.to_blob(tb, champ.id))
                sb.champion_tb = tb
                _keep(sb.champion_since, (champ.created, sb.champion))
                sb.trained_through = tb.train_end
            newest = [m for m in self.registry.list(symbol)
                      if m.kind == "xgboost" and not m.pruned]
            if newest and (champ is None or newest[-1].id != champ.id):  # the lineage goes on
                tb = self.registry.load_booster(newest[-1].id)
                _hold(sb.lineage, jobs.to_blob(tb, newest[-1].id))
                sb.trained_through = max(sb.trained_through, tb.train_end)
            self._resume_weights(sb, symbol)
        return sb

    def _resume_weights(self, sb: SymbolBatch, symbol: str) -> None:
        """After a restart: each model's skill and edge from the symbol's latest stored
        validation (its fold rows), as :meth:`_remeasure` found them — the signal does not wait a
        whole validation period to trade again."""
        v, manual_since = measured(self.registry.db, symbol)
        if v is None:
            return
        results = [walkforward.FoldResult.from_row(r) for r in json.loads(v.fold_table)]
        summary = walkforward.summary_by_candidate(results)
        edges = jobs.edges_of(results, confidence=self.cfg.edge_confidence,
                              n_boot=self.cfg.bootstrap, seed=self.config.learner.seed)
        promoted = v.promoted and sb.champion is not None and (
            v.challenger_id == sb.champion.model_id)
        sb.validations = 1
        self._remeasure(sb, summary, edges, v.challenger, v.ts_event, promoted=promoted,
                        champion=not manual_since)  # a manual champion: unmeasured yet

    def manual(self, d: manual.ManualDecision, ts: int) -> manual.Answer:
        """Apply a manual decision now (between frames): the champion changes in memory and in
        the registry, is recorded in ``validations``, trades on nothing until a validation
        measures it — one is submitted at once (:mod:`ares_stream.batch.manual`)."""
        try:
            choice = manual.choose(self.registry, d)
            tb = self.registry.load_booster(choice.model.id)
        except (manual.ManualError, AresError) as exc:
            return manual.Answer(False, str(exc))
        missing = sorted(set(tb.features) - set(self.features))
        if missing:
            return manual.Answer(False, f"model {choice.model.id} uses features this daemon "
                                 f"does not compute: {', '.join(missing)}")
        sb = self._symbol(choice.symbol)
        manual.apply(self.registry, d, choice, ts)
        blob = jobs.pack(jobs.to_blob(tb, choice.model.id))
        sb.champion, sb.champion_tb = blob, tb
        _keep(sb.champion_since, (ts, blob))
        sb.skill["champion"] = 0.0  # unmeasured: no weight, no edge until a validation
        sb.edge.pop("champion", None)
        sb.earned = None
        sb.decision = (f"manual_{d.action}", True)
        self.counts["manual"] += 1
        if not self.replay and "validate" not in sb.busy:
            self.submit_validation(choice.symbol, ts)
        return manual.Answer(True, f"model {choice.model.id} is the champion of "
                             f"{choice.symbol} (was {choice.replaced}); it trades once a "
                             "validation measures its edge", choice.model.id, choice.replaced)

    def flush(self) -> None:
        """Write every symbol's buffered samples."""
        for sb in self.symbols.values():
            sb.buffer.flush()

    def stop(self) -> None:
        """Stop the worker now: queued jobs are cancelled, a running one is not waited for."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    def finish(self, ts: int) -> None:
        """End of a replay: apply what is still running, then stop the worker."""
        for p in self.pending:
            self._apply(p, ts)
        self.pending = []
        for sb in self.symbols.values():
            sb.buffer.flush()
        self.executor.shutdown(wait=True, cancel_futures=True)


def _executor(config: Config) -> Executor:
    """The batch jobs' executor: the daemon's own worker process (``batch.executor =
    "process"``: it dies with us, logs as we do), or Ray tasks on a cluster (``"ray"``)."""
    if config.batch.executor == "ray":
        from ares_stream.batch.rayexec import RayExecutor

        return RayExecutor(config.batch.ray_address or None)
    return ProcessPoolExecutor(1, mp_context=get_context("spawn"),
                               initializer=worker.init_worker,
                               initargs=(os.getpid(), logs.worker_settings()))


def _hold(lineage: list[jobs.Blob], blob: jobs.Blob) -> jobs.Blob:
    """Append ``blob`` to a symbol's lineage as the symbol holds it (:func:`_keep`); the packed
    booster is returned."""
    blob = jobs.pack(blob)
    _keep(lineage, blob)
    return blob


def _keep(timeline: list[Any], item: Any) -> None:
    """Append to a symbol's lineage or champion history, keeping what a validation needs of it:
    the newest ``_TIMELINE`` entries (it hands no older one to a job), each booster packed
    (:func:`jobs.pack`: compressed until a job or a prediction reads it). What a symbol holds
    is bounded, at most ``2 * _TIMELINE`` packed boosters however long it runs."""
    timeline.append(item)
    del timeline[:-_TIMELINE]


def _id(blob: jobs.Blob | None) -> int | None:
    return None if blob is None else blob.model_id


def _gain(summary: dict[str, dict[str, float]], name: str) -> float:
    """A candidate's walk-forward log-loss gain over the prior, floored at 0 (0 if unscored)."""
    prior = summary.get("prior", {}).get("log_loss", math.nan)
    loss = summary.get(name, {}).get("log_loss", math.nan)
    return 0.0 if math.isnan(prior - loss) else max(0.0, prior - loss)


def _num(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _fold_row(r: Any) -> dict[str, Any]:
    """A fold result as JSON-safe data (NaN -> null)."""
    return {k: _num(v) if isinstance(v, float) else v for k, v in r.row().items()}


def for_run(config: Config, store: Any, *, replay: bool) -> BatchLearner | None:
    """The batch learner of a run (replay or live) when the config enables it, else None."""
    if not config.batch.enabled or config.learner.task != "classification":
        return None
    return BatchLearner(config, Registry(store.db, run_id=store.run_id),
                        features=feature_names(config), replay=replay,
                        buffer_store=BufferStore(store.db))
