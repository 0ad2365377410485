"""A running paper daemon picks up ``models promote`` and ``models rollback`` without a restart:
the command leaves its request, the daemon applies it between frames and answers, and the
daemon's own next validation measures the champion the user put in."""

from __future__ import annotations

from pathlib import Path

import pytest

from ares_stream.cli import main
from ares_stream.sim.exchange import Faults, Tape
from ares_stream.store.lock import holder
from tests.conftest import wait_until
from tests.daemon.conftest import SYMBOL
from tests.daemon.test_ingest import exchange_in_thread
from tests.paper import paper_daemon, query, write_config

BATCH = """
[labels]
horizon = 5
threshold_bps = 1.0
[batch]
min_rows = 300
update_rows = 200
update_every = "1s"
validate_every = "1s"
validate_rows = 300
folds = 3
rounds_refit = 10
rounds_update = 5
max_trees = 30
bootstrap = 200
margin = 10.0           # the gate never promotes here: every champion is a manual one
"""


def boosters(db: Path) -> list[int]:
    return [int(r[0]) for r in query(db, "select id from models where kind = 'xgboost' "
                                         "order by id")]


def measured_after(db: Path, manual_row: int) -> list[object]:
    """Incumbents of the gate's validations recorded after the manual row ``manual_row``."""
    return [r[0] for r in query(db, f"select incumbent_id from validations where id > "
                                    f"{manual_row} and decided_by is null")]


def last_manual(db: Path) -> tuple[int, int, int | None, str, str]:
    rows = query(db, "select id, challenger_id, incumbent_id, decided_by, reason from "
                     "validations where decided_by is not null order by id desc limit 1")
    return rows[0]  # type: ignore[return-value]


def test_the_running_daemon_applies_promote_and_rollback_without_a_restart(
        tape: Tape, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "paper.db"
    write_config(tmp_path, BATCH)
    with exchange_in_thread(tape, rate=250, faults=Faults()) as urls:
        proc = paper_daemon(urls, tmp_path, "--db", str(db), symbols=SYMBOL)
        try:
            wait_until(lambda: len(boosters(db)) >= 2 or proc.poll() is not None,
                       what="two boosters", timeout=180)
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            first, second = boosters(db)[:2]
            pid = holder(db)
            assert pid == proc.pid

            def decide(*args: str) -> str:
                code = main(["models", *args, "--db", str(db), "--by", "ops", "--why", "live",
                             "--wait", "120"])
                out, err = capsys.readouterr()
                assert code == 0, err
                return out

            assert f"model {first} is the champion of {SYMBOL} (was None)" in decide(
                "promote", str(first))
            row, model, replaced, by, why = last_manual(db)
            assert (model, replaced, by, why) == (first, None, "ops", "manual promote by ops: live")
            wait_until(lambda: first in measured_after(db, row) or proc.poll() is not None,
                       what="a validation of the manual champion", timeout=180)
            assert first in measured_after(db, row)

            decide("promote", str(second))
            assert f"model {first} is the champion of {SYMBOL} (was {second})" in decide(
                "rollback", SYMBOL)
            row, model, replaced, by, _ = last_manual(db)
            assert (model, replaced) == (first, second)
            wait_until(lambda: first in measured_after(db, row) or proc.poll() is not None,
                       what="a validation after the rollback", timeout=180)
            assert holder(db) == pid and proc.poll() is None  # the same process throughout
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    log = (tmp_path / "daemon.log").read_text()
    assert log.count('"event": "manual_decision"') == 3 and "Traceback" not in log
