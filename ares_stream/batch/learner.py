"""Batch learning beside the online learner: buffer, booster lineage, re-validation, champion.

Per symbol, labelled samples go to a :class:`~ares_stream.learners.buffer.SampleBuffer`. Jobs —
plain functions in :mod:`ares_stream.batch.jobs` — run in a worker process:

- **update** every ``batch.update_rows`` new samples (or every ``batch.update_every`` of event
  time): continue the lineage's latest booster on the new rows (warm start, or refresh), refit on
  the window past the tree cap, after an upward drift of the online learner, or when the feature
  schema changed; the result is registered as a *candidate*;
- **validate** every ``batch.validate_every``: purged walk-forward over the buffer window; a
  challenger becomes *champion* only when the gate says it beats the incumbent.

Results come back between frames. In replay a result applies at the first bar at least
``batch.apply_delay`` of event time after its submission — waiting for the worker if needed — so
a replay is deterministic; live it applies as soon as it is done.

The traded probability is an ensemble (see :func:`ensemble`).
"""

from __future__ import annotations

import functools
import json
import math
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import structlog

from ares_stream import logs
from ares_stream.batch import jobs
from ares_stream.clock import ReplayClock
from ares_stream.config import Config
from ares_stream.features.bars import parse_interval
from ares_stream.features.pipeline import feature_set
from ares_stream.learners import booster as bst
from ares_stream.learners.buffer import SampleBuffer
from ares_stream.learners.registry import Registry
from ares_stream.store.buffer import BufferStore
from ares_stream.store.validations import ValidationRow, insert

log = structlog.get_logger("ares_stream.batch")

_TIMELINE = 50  # models of a policy's history handed to a validation


def _ns(text: str) -> int:
    return 0 if text == "0s" else parse_interval(text)


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
    lineage: list[jobs.Blob] = field(default_factory=list)  # every trained booster, oldest first
    champion: jobs.Blob | None = None
    champion_tb: bst.TrainedBooster | None = None
    champion_since: list[tuple[int, jobs.Blob]] = field(default_factory=list)  # (since, model)
    trained_through: int = -1  # event time of the newest row the lineage has seen
    validated_through: int = -1  # event time of the newest row of the last validation
    force_refit: bool = False
    busy: set[str] = field(default_factory=set)
    skill: dict[str, float] = field(default_factory=dict)  # candidate -> improvement over prior


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
        self.executor = executor or ProcessPoolExecutor(
            1, mp_context=get_context("spawn"), initializer=logs.configure_worker,
            initargs=(logs.worker_settings(),))  # the worker logs as we do (level, redaction)
        self.buffer_store = buffer_store
        self.settings = jobs.settings_of(config)
        self.update_every = _ns(self.cfg.update_every)
        self.validate_every = _ns(self.cfg.validate_every)
        self.apply_delay = _ns(self.cfg.apply_delay)
        self.symbols: dict[str, SymbolBatch] = {}
        self.pending: list[Pending] = []
        self.clock = ReplayClock() if replay else None  # live: a LiveClock calls periodic()
        self.counts: dict[str, int] = {"trained": 0, "refits": 0, "warm_starts": 0,
                                       "refreshes": 0, "validations": 0, "promotions": 0,
                                       "skipped_busy": 0}
        self.fits: deque[tuple[str, str, float]] = deque(maxlen=1000)  # (symbol, how, seconds)

    # -- inputs from the engine ---------------------------------------------------------------

    def on_sample(self, symbol: str, ts: int, x: dict[str, float], label: int,
                  fwd: float) -> None:
        """Buffer one labelled sample; submit an update once ``update_rows`` new rows came."""
        sb = self._symbol(symbol)
        sb.buffer.add(ts, x, label, fwd)
        if len(sb.buffer) >= self.cfg.min_rows and (
                sb.buffer.added_since(sb.trained_through) >= self.cfg.update_rows):
            self.submit_update(symbol, ts)

    def on_drift(self, symbol: str, ts: int) -> None:
        """An upward drift of the online learner: the next update refits from scratch, now."""
        sb = self._symbol(symbol)
        sb.force_refit = True
        self.submit_update(symbol, ts)

    def tick(self, symbol: str, ts: int) -> None:
        """Called at every bar: in replay the event-time clock runs the periodic jobs, then
        results that are due are applied. Live, a LiveClock calls :meth:`periodic`."""
        self._symbol(symbol)
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

    def proba(self, symbol: str, x: dict[str, float]) -> float | None:
        """The champion booster's P(label = 1) for ``x``; None without a champion."""
        sb = self.symbols.get(symbol)
        if sb is None or sb.champion_tb is None:
            return None
        return bst.predict_one(sb.champion_tb, x)

    def skills(self, symbol: str) -> tuple[float, float]:
        """The online learner's and the champion's skill at the last validation (0.0 before one).
        Skill: the log-loss improvement over the constant prior, floored at 0."""
        sb = self.symbols.get(symbol)
        if sb is None:
            return 0.0, 0.0
        return sb.skill.get("river", 0.0), sb.skill.get("champion", 0.0)

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
        future = self.executor.submit(jobs.validate, self._window(sb), spec, self.settings,
                                      sb.champion_since[-_TIMELINE:], lineage)
        self._pending(symbol, "validate", future, ts, champion=sb.champion,
                      candidate=sb.lineage[-1] if sb.lineage else None)

    def _pending(self, symbol: str, kind: str, future: Future[Any], ts: int,
                 **context: Any) -> None:
        self.symbols[symbol].busy.add(kind)
        self.pending.append(Pending(symbol, kind, future, ts, ts + self.apply_delay, context))

    def _window(self, sb: SymbolBatch) -> jobs.Window:
        ts, X, y, fwd = sb.buffer.window()
        return jobs.Window(ts, X, y, fwd, sb.buffer.features)

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
        (self._apply_train if p.kind == "train" else self._apply_validation)(sb, p, result, ts)

    def _apply_train(self, sb: SymbolBatch, p: Pending, blob: jobs.Blob, ts: int) -> None:
        parent = p.context.get("parent")
        tb = jobs.from_blob(blob)
        rec = self.registry.add_booster(p.symbol, tb, created=ts,
                                        parent=parent.model_id if parent is not None else None)
        sb.lineage.append(jobs.Blob(blob.data, blob.meta, rec.id))
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
        prior = out.summary.get("prior", {}).get("log_loss", math.nan)
        sb.skill = {name: max(0.0, prior - s.get("log_loss", math.nan))
                    for name, s in out.summary.items() if not math.isnan(s.get("log_loss", 0))}
        challenger_id = self._promote(sb, p, out, ts) if d.promote else None
        champ = p.context.get("champion")
        row = ValidationRow(
            self.registry.run_id, p.symbol, ts, d.challenger, challenger_id, d.incumbent,
            champ.model_id if champ is not None else None, d.folds, _num(d.challenger_loss),
            _num(d.incumbent_loss), _num(d.improvement), _num(d.ci_low), _num(d.ci_high),
            d.margin, d.promote, d.reason, json.dumps([_fold_row(r) for r in out.results]))
        insert(self.registry.db, row)
        log.info("model_validated", symbol=p.symbol, challenger=d.challenger,
                 incumbent=d.incumbent, promoted=d.promote, reason=d.reason)

    def _promote(self, sb: SymbolBatch, p: Pending, out: jobs.ValidationOutcome,
                 ts: int) -> int | None:
        if out.decision.challenger == "xgb_refit" and out.refit is not None:
            tb = jobs.from_blob(out.refit)
            rec = self.registry.add_booster(p.symbol, tb, created=ts)
            blob = jobs.Blob(out.refit.data, out.refit.meta, rec.id)
            sb.lineage.append(blob)
            sb.trained_through = tb.train_end
        else:
            blob = p.context["candidate"]
        assert blob.model_id is not None
        self.registry.promote(blob.model_id)  # logs model_promoted
        sb.champion, sb.champion_tb = blob, jobs.from_blob(blob)
        sb.champion_since.append((ts, blob))
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
                                    ("validate", self.validate_every)):
                    self.clock.every(f"{kind}:{symbol}", every,
                                     functools.partial(self._timed, symbol, kind))
            champ = self.registry.champion(symbol)
            if champ is not None:
                tb = self.registry.load_booster(champ.id)
                sb.champion = jobs.to_blob(tb, champ.id)
                sb.champion_tb = tb
                sb.lineage.append(sb.champion)
                sb.champion_since.append((champ.created, sb.champion))
                sb.trained_through = tb.train_end
        return sb

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
                        features=feature_set(config).names, replay=replay,
                        buffer_store=BufferStore(store.db))
