"""Opening a state database: WAL, ``synchronous=NORMAL``, forward migrations on ``user_version``.

Migrations are an append-only list of SQL scripts; a database at version *n* gets scripts *n+1…*
applied in one transaction each, so an old file is brought forward and a new one built from scratch
by the same code. A database newer than this code is refused with a clear message.

>>> db = open_db(":memory:")
>>> schema_version(db) == len(MIGRATIONS)
True
>>> sorted(db.table_names())[:5]
['buffer', 'checkpoints', 'drift_events', 'equity', 'feature_drift']
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from ares_stream.errors import AresError

MIGRATIONS: list[str] = [
    # 1: the replay run store.
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        mode TEXT NOT NULL,            -- replay | paper | live
        config TEXT NOT NULL,          -- the effective config, JSON
        code_version TEXT NOT NULL,
        sources TEXT NOT NULL,         -- JSON list of inputs
        started_at INTEGER NOT NULL,   -- wall clock, ns
        ended_at INTEGER,              -- wall clock, ns; NULL while running or after a crash
        status TEXT NOT NULL,          -- running | finished | failed | interrupted
        summary TEXT                   -- JSON summary at the end
    );
    CREATE TABLE predictions (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        symbol TEXT NOT NULL,
        ts_event INTEGER NOT NULL,     -- bar end the prediction was made at, ns
        ts_init INTEGER NOT NULL,
        model TEXT NOT NULL,
        horizon INTEGER NOT NULL,
        proba REAL,                    -- P(label = 1); NULL for regression
        value REAL NOT NULL,
        close REAL NOT NULL,
        ts_label INTEGER,              -- filled when the outcome is known
        forward_return REAL,
        label INTEGER,
        loss REAL,
        PRIMARY KEY (run_id, symbol, ts_event)
    ) WITHOUT ROWID;
    CREATE TABLE drift_events (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        symbol TEXT NOT NULL,
        ts_event INTEGER NOT NULL,
        ts_init INTEGER NOT NULL,
        detector TEXT NOT NULL,
        mean_before REAL NOT NULL,
        mean_after REAL NOT NULL,
        samples_seen INTEGER NOT NULL,
        action TEXT NOT NULL
    );
    CREATE TABLE feed_health (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        symbol TEXT NOT NULL,          -- '' when the incident names no symbol
        ts_event INTEGER NOT NULL,
        ts_init INTEGER NOT NULL,
        kind TEXT NOT NULL,            -- gap | rejected | error_frame | totals (one per run)
        count INTEGER NOT NULL,        -- frames, ids or bars concerned (totals: frames or rows)
        first_missing INTEGER,
        last_missing INTEGER,
        detail TEXT NOT NULL           -- reason, first bytes of a rejected frame, or JSON counts
    );
    CREATE INDEX feed_health_run ON feed_health(run_id, kind);
    CREATE INDEX drift_events_run ON drift_events(run_id, symbol);
    """,
    # 2: batch learning: the sample buffer, the model registry, validations.
    """
    CREATE TABLE buffer (
        symbol TEXT NOT NULL,
        ts_event INTEGER NOT NULL,     -- bar end of the sample's features, ns
        x BLOB NOT NULL,               -- float64 feature vector (numpy tobytes), in feature order
        label INTEGER NOT NULL,
        forward_return REAL NOT NULL,
        feature_hash TEXT NOT NULL,    -- hash of the ordered feature names of x
        PRIMARY KEY (symbol, ts_event)
    ) WITHOUT ROWID;
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        symbol TEXT NOT NULL,
        kind TEXT NOT NULL,            -- xgboost | river
        version INTEGER NOT NULL,      -- 1, 2, ... per (symbol, kind)
        parent INTEGER REFERENCES models(id),
        created INTEGER NOT NULL,      -- event time, ns
        train_start INTEGER,           -- event time of the first / last training row, ns
        train_end INTEGER,
        rows INTEGER NOT NULL,
        how TEXT NOT NULL,             -- refit | warm_start | refresh | online
        n_trees INTEGER,
        params TEXT NOT NULL,          -- JSON
        features TEXT NOT NULL,        -- JSON list, the ordered feature names
        feature_hash TEXT NOT NULL,
        versions TEXT NOT NULL,        -- JSON: library versions that wrote the blob
        metrics TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,          -- candidate | champion | retired
        format TEXT NOT NULL,          -- ubjson (xgboost) | codec-v1 (river; pickle: refused)
        blob BLOB NOT NULL,
        run_id INTEGER
    );
    CREATE UNIQUE INDEX models_version ON models(symbol, kind, version);
    CREATE INDEX models_status ON models(symbol, kind, status);
    CREATE TABLE validations (
        id INTEGER PRIMARY KEY,
        run_id INTEGER,
        symbol TEXT NOT NULL,
        ts_event INTEGER NOT NULL,     -- event time of the decision, ns
        challenger TEXT NOT NULL,      -- name of the best challenger
        challenger_id INTEGER,         -- its model id once registered
        incumbent TEXT NOT NULL,       -- the champion it was measured against (or the prior)
        incumbent_id INTEGER,
        folds INTEGER NOT NULL,
        challenger_loss REAL,
        incumbent_loss REAL,
        improvement REAL,              -- mean per-fold (incumbent - challenger) log loss
        ci_low REAL,
        ci_high REAL,
        margin REAL NOT NULL,
        promoted INTEGER NOT NULL,
        reason TEXT NOT NULL,
        fold_table TEXT NOT NULL       -- JSON rows: fold, candidate, n, metrics ...
    );
    CREATE INDEX validations_symbol ON validations(symbol, ts_event);
    """,
    # 3: trading (paper and live never share a file) and checkpoints.
    """
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        run_id INTEGER,
        client_id TEXT NOT NULL UNIQUE, -- ours; also newClientOrderId on the exchange
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,            -- BUY | SELL
        qty REAL NOT NULL,             -- base asset
        type TEXT NOT NULL,            -- MARKET
        ts_event INTEGER NOT NULL,     -- the bar that decided it, ns
        ts_submit INTEGER NOT NULL,    -- event time it was sent (paper) / wall time (live), ns
        status TEXT NOT NULL,          -- new | filled | rejected | cancelled
        reason TEXT NOT NULL DEFAULT '',
        mode TEXT NOT NULL,            -- paper | live
        exchange_id TEXT               -- orderId on the exchange (live)
    );
    CREATE TABLE fills (
        id INTEGER PRIMARY KEY,
        run_id INTEGER,
        client_id TEXT NOT NULL REFERENCES orders(client_id),
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty REAL NOT NULL,
        price REAL NOT NULL,
        fee REAL NOT NULL,             -- in the quote asset
        ts_event INTEGER NOT NULL,     -- the trade it filled at, ns
        slippage_bps REAL NOT NULL
    );
    CREATE TABLE equity (
        run_id INTEGER,
        ts_event INTEGER NOT NULL,
        cash REAL NOT NULL,
        positions_value REAL NOT NULL,
        equity REAL NOT NULL,
        drawdown REAL NOT NULL,        -- from the running peak, a fraction
        fees REAL NOT NULL,            -- paid so far
        PRIMARY KEY (run_id, ts_event)
    ) WITHOUT ROWID;
    CREATE TABLE positions (
        run_id INTEGER,
        symbol TEXT NOT NULL,
        qty REAL NOT NULL,
        avg_price REAL NOT NULL,
        realized_pnl REAL NOT NULL,
        ts_event INTEGER NOT NULL,
        PRIMARY KEY (run_id, symbol)
    ) WITHOUT ROWID;
    CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        run_id INTEGER,
        ts_wall INTEGER NOT NULL,
        ts_event INTEGER NOT NULL,
        cursors TEXT NOT NULL,         -- JSON: the feed cursor (last id / kline time per stream)
        state BLOB NOT NULL            -- engine state (learners, features, labels): the codec
    );
    CREATE INDEX fills_client ON fills(client_id);
    """,
    # 4: the champion booster's own probability beside the online and traded ones (reports).
    """
    ALTER TABLE predictions ADD COLUMN booster REAL;  -- P(label = 1) of the champion booster
    """,
    # 5: validated edge before orders; the bar's close beside each buffered sample (validation
    # trades the same rule as the broker, bar by bar).
    """
    ALTER TABLE buffer ADD COLUMN close REAL;  -- close of the sample's bar; NULL before v5
    CREATE TABLE signal_gate (
        id INTEGER PRIMARY KEY,
        run_id INTEGER,
        symbol TEXT NOT NULL,
        ts_event INTEGER NOT NULL,     -- the bar at which the signal started or stopped trading
        trading INTEGER NOT NULL,      -- 1: the signal reaches the broker; 0: flat
        reason TEXT NOT NULL           -- why (which models have validated edge, or why none)
    );
    CREATE INDEX signal_gate_run ON signal_gate(run_id, symbol, ts_event);
    """,
    # 6: model lifecycle: a pruned booster loses its bytes and keeps its record; a model ever
    # champion is marked and never pruned. Before v6 only a promotion retired a model in practice,
    # so a retired one is marked too (when unsure, keep).
    """
    ALTER TABLE models ADD COLUMN ever_champion INTEGER NOT NULL DEFAULT 0;  -- 1 once promoted
    ALTER TABLE models ADD COLUMN pruned INTEGER;  -- bytes a prune deleted (blob is then X'')
    UPDATE models SET ever_champion = 1 WHERE status IN ('champion', 'retired')
        OR id IN (SELECT challenger_id FROM validations WHERE promoted = 1);
    CREATE INDEX models_stored ON models(symbol, kind, version) WHERE pruned IS NULL;
    """,
    # 7: what each model uses and why each order was sent: per-feature importance stored with
    # the model (boosters: gain share and mean |SHAP|; River: standardized coefficients), the
    # top SHAP contributions of the booster prediction behind each order, and the online
    # learner's coefficients over time.
    """
    CREATE TABLE model_importance (
        model_id INTEGER NOT NULL REFERENCES models(id),
        feature TEXT NOT NULL,
        gain REAL,                     -- share of the booster's total gain (sums to 1)
        shap REAL,                     -- mean |SHAP| on (a seeded sample of) the training rows
        coef REAL,                     -- River: coefficient on the standardized input
        PRIMARY KEY (model_id, feature)
    ) WITHOUT ROWID;
    CREATE TABLE order_reasons (
        client_id TEXT NOT NULL REFERENCES orders(client_id),
        rank INTEGER NOT NULL,         -- 1 = largest |contribution|
        run_id INTEGER,
        model_id INTEGER,              -- the booster whose prediction caused the order
        feature TEXT NOT NULL,
        value REAL,                    -- the feature's value at the bar
        contribution REAL NOT NULL,    -- SHAP contribution to the margin (log-odds)
        PRIMARY KEY (client_id, rank)
    ) WITHOUT ROWID;
    CREATE TABLE learner_coefficients (
        run_id INTEGER,
        symbol TEXT NOT NULL,
        ts_event INTEGER NOT NULL,     -- event time of the bar it was read at, ns
        feature TEXT NOT NULL,
        coef REAL NOT NULL             -- the online learner's weight on the standardized input
    );
    CREATE INDEX learner_coefficients_symbol ON learner_coefficients(symbol, ts_event);
    """,
    # 8: feature drift: each scheduled comparison of a feature's recent window with the
    # champion's training window (PSI, two-sample KS).
    """
    CREATE TABLE feature_drift (
        run_id INTEGER,
        symbol TEXT NOT NULL,
        ts_event INTEGER NOT NULL,     -- event time of the check (newest recent row <= it), ns
        feature TEXT NOT NULL,
        psi REAL,                      -- NULL: too few finite values to measure
        ks REAL,
        reference_rows INTEGER NOT NULL,
        recent_rows INTEGER NOT NULL,
        threshold REAL,                -- the PSI it had to exceed (floor, or its reference's own
                                       -- window noise); NULL: not judged (reference too short)
        drifted INTEGER NOT NULL,      -- 1: psi above threshold
        model_id INTEGER               -- the booster whose training window was the reference
    );
    CREATE INDEX feature_drift_symbol ON feature_drift(symbol, ts_event);
    """,
    # 9: hyperparameter searches (the trials themselves live in Optuna's own <db>.optuna.db).
    """
    CREATE TABLE tuning (
        id INTEGER PRIMARY KEY,
        run_id INTEGER,                -- NULL: ares-stream tune, on demand
        symbol TEXT NOT NULL,
        ts_event INTEGER NOT NULL,     -- event time of the search: rows labelled by then, ns
        study TEXT NOT NULL,           -- the Optuna study's name
        rows INTEGER NOT NULL,         -- buffered rows searched on
        trials INTEGER NOT NULL,       -- configurations tried (completed and pruned)
        pruned INTEGER NOT NULL,
        best_value REAL,               -- best mean walk-forward log loss; NULL: none completed
        best_params TEXT NOT NULL,     -- JSON: the best trial's parameters
        sharpe REAL,                   -- the best trial's per-bar Sharpe over its test rows
        sr0 REAL,                      -- expected maximum Sharpe of that many unskilled trials
        dsr REAL,                      -- the deflated Sharpe ratio of the best trial
        seconds REAL NOT NULL          -- wall time of the search
    );
    CREATE INDEX tuning_symbol ON tuning(symbol, ts_event);
    """,
    # 10: feature selection: per validation with [selection] enabled, each feature's permutation
    # importance on the walk-forward folds and whether it was kept (store/selection.py).
    """
    CREATE TABLE feature_selection (
        run_id INTEGER,
        symbol TEXT NOT NULL,
        ts_event INTEGER NOT NULL,     -- event time of the validation that selected, ns
        feature TEXT NOT NULL,
        mean REAL,                     -- mean log-loss increase when permuted (folds x repeats)
        low REAL,                      -- the interval that decided it: kept <=> low > 0
        high REAL,
        kept INTEGER NOT NULL,
        per_fold TEXT NOT NULL,        -- JSON: each fold's mean over its repeats, oldest first
        folds TEXT NOT NULL,           -- JSON: the folds (walk-forward block index) measured
        repeats INTEGER NOT NULL,
        confidence REAL NOT NULL,
        model_id INTEGER               -- the booster trained on the kept features, if registered
    );
    CREATE INDEX feature_selection_symbol ON feature_selection(symbol, ts_event);
    """,
    # 11: manual decisions (ares-stream models promote / rollback) are validations rows too:
    # who made them (the reason says why); NULL for the promotion gate's own decisions.
    """
    ALTER TABLE validations ADD COLUMN decided_by TEXT;
    """,
]


class StoreError(AresError):
    """The state database cannot be opened or is from a newer version of ares-stream."""


def open_db(path: str | Path) -> sqlite_utils.Database:
    """Open (creating if needed) the database at ``path`` and migrate it forward."""
    try:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        db = sqlite_utils.Database(conn)
        migrate(db)
    except (sqlite3.DatabaseError, OSError) as exc:
        raise StoreError(f"{path}: not a usable ares-stream database: {exc}") from None
    return db


def schema_version(db: sqlite_utils.Database) -> int:
    """The file's schema version (SQLite's ``user_version``)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite_utils.Database) -> None:
    """Apply every migration newer than the file's ``user_version``, each atomically."""
    current = schema_version(db)
    if current > len(MIGRATIONS):
        raise StoreError(
            f"database schema version {current} is newer than this ares-stream "
            f"({len(MIGRATIONS)}); upgrade ares-stream"
        )
    for version in range(current + 1, len(MIGRATIONS) + 1):
        script = MIGRATIONS[version - 1]
        try:
            db.conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
        except sqlite3.Error:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise


def write_batches(db: sqlite_utils.Database,
                  batches: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
    """Every batch (``executemany`` of one statement) in one transaction, in order."""
    conn = db.conn
    with conn:
        conn.execute("BEGIN")
        for sql, rows in batches:
            if rows:
                conn.executemany(sql, rows)
