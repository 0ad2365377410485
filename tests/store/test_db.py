"""The state database: WAL, schema version, forward migrations, clear refusal of newer files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ares_stream.store.db import MIGRATIONS, StoreError, migrate, open_db, schema_version


def test_new_file_is_wal_normal_and_current(tmp_path: Path) -> None:
    """A new database is in WAL mode, synchronous=NORMAL, at the latest schema version."""
    db = open_db(tmp_path / "a.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert schema_version(db) == len(MIGRATIONS)


def test_reopen_keeps_data_and_runs_no_migration_twice(tmp_path: Path) -> None:
    """Opening an existing database keeps its rows and does not re-create tables."""
    db = open_db(tmp_path / "a.db")
    db.execute("INSERT INTO runs (mode, config, code_version, sources, started_at, status) "
               "VALUES ('replay', '{}', 'x', '[]', 1, 'running')")
    db.conn.close()
    assert open_db(tmp_path / "a.db").execute("select count(*) from runs").fetchone()[0] == 1


def test_forward_migration_from_an_older_version(tmp_path: Path, monkeypatch) -> None:
    """A file at version 1 gets later migrations applied and its data kept."""
    db = open_db(tmp_path / "a.db")
    db.execute("INSERT INTO runs (mode, config, code_version, sources, started_at, status) "
               "VALUES ('replay', '{}', 'x', '[]', 1, 'running')")
    monkeypatch.setattr("ares_stream.store.db.MIGRATIONS",
                        [*MIGRATIONS, "CREATE TABLE extra (x INTEGER);"])
    migrate(db)
    assert schema_version(db) == len(MIGRATIONS) + 1
    assert "extra" in db.table_names()
    assert db.execute("select count(*) from runs").fetchone()[0] == 1


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch) -> None:
    """A migration that fails half-way leaves the file at its old version, unchanged."""
    db = open_db(tmp_path / "a.db")
    monkeypatch.setattr("ares_stream.store.db.MIGRATIONS",
                        [*MIGRATIONS, "CREATE TABLE half (x INTEGER); SELECT * FROM nowhere;"])
    with pytest.raises(Exception, match="nowhere"):
        migrate(db)
    assert schema_version(db) == len(MIGRATIONS)
    assert "half" not in db.table_names()


def test_newer_file_is_refused_clearly(tmp_path: Path) -> None:
    """A database from a newer ares-stream is refused with a message saying to upgrade."""
    db = open_db(tmp_path / "a.db")
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    db.conn.close()
    with pytest.raises(StoreError, match="upgrade ares-stream"):
        open_db(tmp_path / "a.db")


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    """A file that is not SQLite is a StoreError naming the file."""
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        open_db(bad)
