"""Manual decisions without a daemon: ``models promote`` / ``models rollback`` on a real
registry, recorded in ``validations`` with who and why; refused in one line when they cannot be
made; queued for a daemon that owns the database."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ares_stream.batch import manual
from ares_stream.cli import main
from ares_stream.config import load_config
from ares_stream.features.families import feature_names
from ares_stream.learners import booster as bst
from ares_stream.learners.registry import Registry
from ares_stream.store import validations
from ares_stream.store.db import open_db
from ares_stream.store.lock import DatabaseLock

SYMBOL = "SIMUSDT"


def boosters(path: Path, n: int, features: tuple[str, ...] | None = None) -> Registry:
    """``n`` real boosters of SIMUSDT on the default config's features (ids 1..n)."""
    features = features or feature_names(load_config(None))
    reg = Registry(open_db(path))
    rng = np.random.default_rng(0)
    for version in range(n):
        X = rng.normal(size=(300, len(features)))
        y = (X[:, 0] + rng.normal(size=300) > 0).astype(float)
        tb = bst.fit(X, y, np.arange(300), features, bst.BoosterSettings(rounds_refit=5))
        reg.add_booster(SYMBOL, tb, created=version)
    return reg


def decide(path: Path, *args: str) -> int:
    return main(["models", *args, "--db", str(path), "--by", "alice", "--why", "a test"])


def champion(path: Path) -> int | None:
    rec = Registry(open_db(path)).champion(SYMBOL)
    return None if rec is None else rec.id


def rows(path: Path) -> list[validations.ValidationRow]:
    return list(reversed(validations.recent(open_db(path), SYMBOL)))


def test_promote_then_rollback_twice_is_recorded_with_who_and_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Promote 1, then 2; a rollback puts 1 back, a second rollback undoes the first (2). Each
    decision is a validations row: the model put in, the one replaced, who, why, no folds."""
    path = tmp_path / "paper.db"
    boosters(path, 3)
    assert decide(path, "promote", "1") == 0
    assert decide(path, "promote", "2") == 0
    assert champion(path) == 2
    assert decide(path, "rollback", SYMBOL.lower()) == 0
    assert champion(path) == 1
    assert "model 1 is the champion of SIMUSDT (was 2)" in capsys.readouterr().out
    assert decide(path, "rollback", SYMBOL) == 0
    assert champion(path) == 2
    got = [(r.challenger, r.challenger_id, r.incumbent_id, r.promoted, r.decided_by, r.folds)
           for r in rows(path)]
    assert got == [("manual_promote", 1, None, True, "alice", 0),
                   ("manual_promote", 2, 1, True, "alice", 0),
                   ("manual_rollback", 1, 2, True, "alice", 0),
                   ("manual_rollback", 2, 1, True, "alice", 0)]
    assert rows(path)[0].reason == "manual promote by alice: a test"
    assert [m for _, m in validations.promotions(open_db(path), SYMBOL)] == [1, 2, 1, 2]
    assert not manual.requests_dir(path).exists()  # no daemon: made by the command itself


def test_a_manual_decision_after_the_gates_is_seen_by_the_measurement_lookup(
        tmp_path: Path) -> None:
    """A restart's weights come from the newest gate decision, and know that a manual one came
    after it (the gate measured another champion then)."""
    path = tmp_path / "paper.db"
    boosters(path, 2)
    db = open_db(path)
    gate = validations.ValidationRow(None, SYMBOL, 5, "xgb_refit", 1, "prior", None, 3, 0.6,
                                     0.65, 0.05, 0.01, 0.09, 0.005, True, "beats", "[]")
    validations.insert(db, gate)
    assert validations.measured(db, SYMBOL) == (gate, False)
    assert decide(path, "promote", "2") == 0
    v, manual_since = validations.measured(open_db(path), SYMBOL)
    assert v == gate and manual_since


@pytest.mark.parametrize(("setup", "args", "message"), [
    ("none", ["promote", "9"], "no model with id 9"),
    ("champion", ["promote", "1"], "model 1 is already the champion of SIMUSDT"),
    ("none", ["rollback", "SIMUSDT"], "SIMUSDT has no champion to roll back"),
    ("champion", ["rollback", "SIMUSDT"], "no champion before model 1"),
    ("river", ["promote", "3"], "model 3 is a river model"),
    ("pruned", ["promote", "1"], "model 1's booster was pruned"),
    ("schema", ["promote", "1"], "uses features the database's run does not compute: yy, zz"),
])
def test_decisions_that_cannot_be_made_are_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, args: list[str],
        message: str) -> None:
    path = tmp_path / "paper.db"
    reg = boosters(path, 2, ("zz", "yy") if setup == "schema" else None)
    if setup == "champion":
        reg.promote(1)
    if setup == "river":
        reg.save_river(SYMBOL, {"w": 1.0}, created=3)
    if setup == "pruned":
        reg.prune(SYMBOL, keep=1)
    before = len(rows(path))
    assert decide(path, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ares-stream models: error: "), err
    assert message in err
    assert len(rows(path)) == before  # nothing recorded


def test_a_reason_is_required(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "paper.db"
    boosters(path, 1)
    with pytest.raises(SystemExit) as exit_:
        main(["models", "promote", "1", "--db", str(path)])
    assert exit_.value.code == 2 and "--why" in capsys.readouterr().err


def test_with_an_owner_the_request_is_queued_and_answered_by_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """While another process owns the database the command leaves its request (data, readable
    by the user only) and says so when nobody answers; the owner's answer is what it prints."""
    path = tmp_path / "paper.db"
    boosters(path, 2)
    with DatabaseLock(path):  # stands in for a daemon that does not read its requests
        assert decide(path, "promote", "2", "--wait", "0.2") == 1
        assert "did not answer within 0.2 s" in capsys.readouterr().err
        [(req, d)] = list(manual.pending(path))
        assert isinstance(d, manual.ManualDecision)
        assert (d.action, d.model_id, d.by, d.why) == ("promote", 2, "alice", "a test")
        assert req.stat().st_mode & 0o777 == 0o600
        assert manual.requests_dir(path).stat().st_mode & 0o777 == 0o700
        assert json.loads(req.read_text())["id"] == req.stem
        manual.answer(req, manual.Answer(True, "done by the owner", 2, None))
        assert not req.exists()
        assert manual.wait_answer(path, req.stem, 1.0) == manual.Answer(True,
                                                                        "done by the owner", 2)
    assert champion(path) is None  # the owner said so; this process wrote nothing


def test_a_request_that_is_not_one_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "paper.db"
    folder = manual.requests_dir(path)
    folder.mkdir()
    (folder / ("a" * 32 + ".json")).write_text('{"action": "delete", "by": "x", "why": "y"}')
    (folder / ("b" * 32 + ".json")).write_text("not json")
    (folder / "notes.json").write_text("{}")  # not a request's name: ignored
    got = sorted((p.stem[0], str(e)) for p, e in manual.pending(path))
    assert got[0][0] == "a" and "unknown action 'delete'" in got[0][1]
    assert got[1][0] == "b" and got[1][1].startswith("not a manual decision request")


def test_status_shows_the_manual_decision_with_who_and_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "paper.db"
    boosters(path, 2)
    assert decide(path, "promote", "1") == 0 and decide(path, "promote", "2") == 0
    capsys.readouterr()
    assert main(["status", "--db", str(path), "--json"]) == 0
    [v] = json.loads(capsys.readouterr().out)["validations"]
    assert (v["challenger"], v["challenger_id"], v["incumbent_id"], v["decided_by"]) == \
        ("manual_promote", 2, 1, "alice")
    assert main(["status", "--db", str(path)]) == 0
    assert "SIMUSDT manual_promote: model 2 in (was 1) at " in capsys.readouterr().out
