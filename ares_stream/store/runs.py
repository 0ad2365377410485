"""The run store: a batched writer of predictions, outcomes, drift events and feed health.

It is the engine's sink. Rows wait in memory lists and go to SQLite in one ``executemany``
transaction when ``flush_rows`` rows are waiting (and, live, at each checkpoint, with the rows a
restart writes again identically every ``store.flush_seconds``: :meth:`RunStore.flush_early`),
so a crash loses at most the rows after the checkpoint, which the restart writes again, and never
corrupts the file (WAL).

>>> from ares_stream.store.db import open_db
>>> store = RunStore(open_db(":memory:"), mode="replay", config={}, sources=["x.gz"])
>>> store.prediction(Prediction("BTCUSDT", 60, 61, "logreg", 1, 0.4, 0.4, 100.0))
>>> store.outcome(Outcome("BTCUSDT", 60, 61, 120, 0.01, 1, 0.92))
>>> store.flush()
>>> store.db.execute("select proba, label, loss from predictions").fetchall()
[(0.4, 1, 0.92)]
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from typing import Any

import sqlite_utils

from ares_stream import __version__
from ares_stream.events import DriftDetected, Gap, Outcome, Prediction
from ares_stream.store.db import write_batches

# OR REPLACE: after a restart the daemon predicts the bars after its checkpoint again, identically
_INSERT_PREDICTION = (
    "INSERT OR REPLACE INTO predictions (run_id, symbol, ts_event, ts_init, model, horizon, "
    "proba, value, close, booster) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_OUTCOME = (
    "UPDATE predictions SET ts_label = ?, forward_return = ?, label = ?, loss = ? "
    "WHERE run_id = ? AND symbol = ? AND ts_event = ?"
)
_INSERT_DRIFT = (
    "INSERT INTO drift_events (run_id, symbol, ts_event, ts_init, detector, mean_before, "
    "mean_after, samples_seen, action) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_COEF = ("INSERT INTO learner_coefficients (run_id, symbol, ts_event, feature, coef) "
               "VALUES (?, ?, ?, ?, ?)")
_INSERT_HEALTH = (
    "INSERT INTO feed_health (run_id, symbol, ts_event, ts_init, kind, count, first_missing, "
    "last_missing, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class RunStore:
    """One run's rows, written in batches. ``close()`` flushes and marks the run ended."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        *,
        mode: str,
        config: dict[str, Any],
        sources: list[str],
        flush_rows: int = 2000,
        resume: int | None = None,
    ) -> None:
        self.db = db
        self.flush_rows = flush_rows
        self._predictions: list[tuple[Any, ...]] = []
        self._outcomes: list[tuple[Any, ...]] = []
        self._other: list[tuple[str, tuple[Any, ...]]] = []
        self.run_id = self._resume(resume) if resume else self._start_run(mode, config, sources)

    def _resume(self, run_id: int) -> int:
        """Continue a run that did not end cleanly (the daemon after a crash)."""
        with self.db.conn:
            self.db.conn.execute("UPDATE runs SET status = 'running', ended_at = NULL "
                                 "WHERE id = ?", (run_id,))
        return run_id

    def _start_run(self, mode: str, config: dict[str, Any], sources: list[str]) -> int:
        cur = self.db.conn.execute(
            "INSERT INTO runs (mode, config, code_version, sources, started_at, status) "
            "VALUES (?, ?, ?, ?, ?, 'running')",
            (mode, json.dumps(config, sort_keys=True), __version__, json.dumps(sources),
             time.time_ns()),
        )
        return int(cur.lastrowid or 0)

    def prediction(self, p: Prediction) -> None:
        """Queue one prediction row (a NaN probability is stored as NULL)."""
        proba = None if math.isnan(p.proba_up) else p.proba_up
        booster = None if math.isnan(p.booster) else p.booster
        self._predictions.append((self.run_id, p.symbol, p.ts_event, p.ts_init, p.model,
                                  p.horizon, proba, p.value, p.close, booster))
        self._maybe_flush()

    def outcome(self, o: Outcome) -> None:
        """Queue a prediction's label and loss, written into its row at the next flush."""
        self._outcomes.append((o.ts_label, o.forward_return, o.label, o.loss, self.run_id,
                               o.symbol, o.ts_event))
        self._maybe_flush()

    def drift(self, d: DriftDetected) -> None:
        """Queue one drift event, written at the next flush."""
        self._other.append((_INSERT_DRIFT, (self.run_id, d.symbol, d.ts_event, d.ts_init,
                                            d.detector, d.mean_before, d.mean_after,
                                            d.samples_seen, d.action)))

    def coefficients(self, symbol: str, ts_event: int, coefs: dict[str, float]) -> None:
        """Queue the online learner's standardized coefficients, read at ``ts_event``."""
        self._other.extend((_INSERT_COEF, (self.run_id, symbol, ts_event, f, c))
                           for f, c in coefs.items())

    def gap(self, g: Gap, count: int | None = None) -> None:
        """Record a gap; ``count`` is the number of missing items (ids, or bars for time gaps)."""
        self.health(g.symbol, g.ts_event, g.ts_init, "gap", g.size if count is None else count,
                    g.kind, g.first_missing, g.last_missing)

    def health(
        self, symbol: str, ts_event: int, ts_init: int, kind: str, count: int, detail: str,
        first_missing: int | None = None, last_missing: int | None = None,
    ) -> None:
        """Record one feed incident (rejected frames, duplicates, error frames, a summary)."""
        self._other.append((_INSERT_HEALTH, (self.run_id, symbol, ts_event, ts_init, kind, count,
                                             first_missing, last_missing, detail)))

    def _maybe_flush(self) -> None:
        if len(self._predictions) + len(self._outcomes) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write every waiting row in one transaction (predictions before their outcomes)."""
        if not (self._predictions or self._outcomes or self._other):
            return
        write_batches(self.db, [(_INSERT_PREDICTION, self._predictions),
                                (_UPDATE_OUTCOME, self._outcomes),
                                *((sql, [row]) for sql, row in self._other)])
        self._predictions.clear()
        self._outcomes.clear()
        self._other.clear()

    def flush_early(self) -> None:
        """Live, between checkpoints: write the rows that a restart from the last checkpoint
        writes again identically — predictions and their outcomes (``OR REPLACE``), drift events
        and coefficient readings (:meth:`discard_after` drops the ones after the checkpoint a
        restart resumes from) — so readers (``monitor``, ``status``) see each bar within
        ``store.flush_seconds``. Feed incidents wait for the checkpoint (the feed does not
        repeat them)."""
        early = [(sql, row) for sql, row in self._other if sql is not _INSERT_HEALTH]
        if not (self._predictions or self._outcomes or early):
            return
        write_batches(self.db, [(_INSERT_PREDICTION, self._predictions),
                                (_UPDATE_OUTCOME, self._outcomes),
                                *((sql, [row]) for sql, row in early)])
        self._predictions.clear()
        self._outcomes.clear()
        self._other = [(sql, row) for sql, row in self._other if sql is _INSERT_HEALTH]

    def discard_after(self, ts_event: int) -> int:
        """On resuming from a checkpoint at ``ts_event``: delete the run's drift events and
        coefficient readings after it, written early (:meth:`flush_early`) — the engine detects
        and reads them again from the checkpoint's state. Returns the rows deleted."""
        conn = self.db.conn
        with conn:  # the feature check's events are the batch side's, written at once: kept
            n = conn.execute("DELETE FROM drift_events WHERE run_id = ? AND ts_event > ? AND "
                             "detector != 'features'", (self.run_id, ts_event)).rowcount
            n += conn.execute("DELETE FROM learner_coefficients WHERE run_id = ? AND "
                              "ts_event > ?", (self.run_id, ts_event)).rowcount
        return n

    def abandon(self, reason: str) -> bool:
        """The storage failed: mark the run ``failed`` with ``reason``, writing nothing else (the
        rows still waiting are dropped), and close the connection. Best effort — a full disk may
        refuse even that one row; returns whether it was written."""
        self._predictions.clear()
        self._outcomes.clear()
        self._other.clear()
        conn = self.db.conn
        try:
            if conn.in_transaction:
                conn.rollback()
            with conn:
                conn.execute("UPDATE runs SET ended_at = ?, status = 'failed', summary = ? "
                             "WHERE id = ?", (time.time_ns(), json.dumps({"error": reason}),
                                              self.run_id))
            return True
        except sqlite3.Error:
            return False
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self, status: str, summary: dict[str, Any]) -> None:
        """Flush, then record how the run ended and its summary."""
        self.flush()
        with self.db.conn:
            self.db.conn.execute(
                "UPDATE runs SET ended_at = ?, status = ?, summary = ? WHERE id = ?",
                (time.time_ns(), status, json.dumps(summary, sort_keys=True), self.run_id),
            )
