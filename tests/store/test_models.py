"""The ``models`` table on a real SQLite file: ever-champion marks, pruning, the v6 migration."""

from __future__ import annotations

from pathlib import Path

import pytest

from ares_stream.store import models
from ares_stream.store.db import MIGRATIONS, migrate, open_db, schema_version

ROW = dict(kind="xgboost", rows=10, how="refit", params={}, features=["a"], feature_hash="h",
           versions={}, format="ubjson")


def add(db, symbol: str = "BTCUSDT", size: int = 100, **kw) -> models.ModelRecord:
    return models.insert(db, symbol=symbol, created=1, blob=b"x" * size, **ROW, **kw)


def test_a_model_promoted_once_stays_ever_champion(tmp_path: Path) -> None:
    """Inserting as champion or promoting marks a model ever champion; retiring keeps the mark."""
    db = open_db(tmp_path / "m.db")
    a, b = add(db, status="champion"), add(db)
    c = add(db)
    models.promote(db, b.id)
    models.set_status(db, b.id, "retired")
    marks = {m.id: (m.status, m.ever_champion) for m in models.list_models(db)}
    assert marks == {a.id: ("retired", True), b.id: ("retired", True), c.id: ("candidate", False)}


def test_prune_counts_the_bytes_and_keeps_the_record(tmp_path: Path) -> None:
    """A pruned row keeps every column but its bytes, remembers their size, and refuses a read."""
    db = open_db(tmp_path / "m.db")
    old, new = add(db, size=300), add(db, size=50)
    assert models.prune(db, "BTCUSDT", keep=1) == models.Pruning("BTCUSDT", 1, 1, 300)
    after = models.get(db, old.id)
    assert after is not None and (after.pruned, after.size) == (True, 300)
    assert after.features == old.features and after.version == 1
    with pytest.raises(models.ModelPruned, match="its 300 bytes were deleted"):
        models.blob(db, old.id)
    assert models.blob(db, new.id) == b"x" * 50
    assert models.prune(db, "NOSUCH", keep=0) == models.Pruning("NOSUCH", 0, 0, 0)
    with pytest.raises(ValueError):
        models.prune(db, "BTCUSDT", keep=-1)


def test_prune_of_one_symbol_reads_through_an_index(tmp_path: Path) -> None:
    """The query after each training searches the index of stored boosters, never scans models."""
    db = open_db(tmp_path / "m.db")
    plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + models._STORED, ("BTCUSDT", 20))]
    assert any("USING INDEX models_stored" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan


def test_vacuum_gives_the_pruned_bytes_back(tmp_path: Path) -> None:
    """After a prune, VACUUM shrinks the file by about the bytes pruned."""
    db = open_db(tmp_path / "m.db")
    for _ in range(5):
        add(db, size=200_000)
    freed = models.prune(db, "BTCUSDT", keep=1).bytes_freed
    assert freed == 800_000
    assert 0.9 * freed < models.vacuum(db) <= freed + 100_000


def test_migration_6_marks_past_champions(tmp_path: Path, monkeypatch) -> None:
    """A v5 file's champions, retired models and promoted challengers become ever champion."""
    monkeypatch.setattr("ares_stream.store.db.MIGRATIONS", MIGRATIONS[:5])
    db = open_db(tmp_path / "m.db")
    for status in ("candidate", "champion", "retired", "candidate"):
        db.execute("INSERT INTO models (symbol, kind, version, created, rows, how, params, "
                   "features, feature_hash, versions, status, format, blob) VALUES ('BTCUSDT', "
                   "'xgboost', (SELECT COUNT(*) + 1 FROM models), 1, 10, 'refit', '{}', '[]', "
                   f"'h', '{{}}', '{status}', 'ubjson', X'00')")
    db.execute("INSERT INTO validations (symbol, ts_event, challenger, challenger_id, incumbent, "
               "folds, margin, promoted, reason, fold_table) VALUES ('BTCUSDT', 1, 'xgb', 4, "
               "'prior', 5, 0.0, 1, 'promoted', '[]')")
    monkeypatch.undo()
    migrate(db)
    assert schema_version(db) == len(MIGRATIONS)
    marks = [(m.status, m.ever_champion, m.pruned) for m in models.list_models(db)]
    assert marks == [("candidate", False, False), ("champion", True, False),
                     ("retired", True, False), ("candidate", True, False)]
