"""Manual model decisions: ``ares-stream models promote ID`` and ``models rollback SYMBOL``.

A user may put a booster in as a symbol's champion (``promote``) or put back the champion the
current one replaced (``rollback``: the one promoted before the current champion's latest
promotion, so a second rollback undoes the first). Every such decision is a row of
``validations`` like the promotion gate's — ``challenger`` ``manual_promote`` or
``manual_rollback``, the model put in as ``challenger_id``, the one it replaced as
``incumbent_id``, no folds, ``decided_by`` the user and ``reason`` why they did it — so the
report, ``status`` and the alerts (``model_promoted``) show it beside the gate's decisions.

**Money stays behind the evidence.** A manual champion trades on nothing yet: its skill and
edge are unmeasured until a walk-forward validation measures it on its own out-of-sample rows
(a running daemon submits one at once), so a decision cannot put an untested model's signal on
the broker. The gate goes on as before: a challenger that beats the manual champion by the
margin replaces it. A validation that was running when the decision came is recorded but
promotes nothing (it measured another champion).

**Who applies it.** One process owns a database (``store/lock.py``). With no daemon on it, the
command takes the lock and applies the decision itself. With a daemon running, the command
leaves a request — a small JSON file, data only — in ``<database>.requests/`` (made readable by
the user only) and waits for the answer the daemon writes beside it: the daemon reads the
directory every ``POLL_S`` seconds, applies the decision between frames (its in-memory champion
changes at once, without a restart) and answers. A request the daemon has not answered within
the wait stays queued and is applied when the daemon reads it (at the latest at its next start).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ares_stream.errors import AresError
from ares_stream.store import validations
from ares_stream.store.db import StoreError
from ares_stream.store.validations import ValidationRow

if TYPE_CHECKING:
    from ares_stream.learners.registry import ModelRecord, Registry

__all__ = ["ACTIONS", "POLL_S", "Answer", "ManualDecision", "ManualError", "answer", "apply",
           "choose", "decide", "pending", "requests_dir", "submit", "wait_answer"]

log = structlog.get_logger("ares_stream.batch")

ACTIONS = ("promote", "rollback")
POLL_S = 0.5  # how often a running daemon reads its requests directory
_NAME = re.compile(r"^[0-9a-f]{32}$")


class ManualError(AresError):
    """A manual decision that cannot be made (an unknown model, nothing to roll back to …)."""


@dataclass(frozen=True)
class ManualDecision:
    """What a user asked for: ``promote`` a model id, or ``rollback`` a symbol."""

    action: str
    by: str
    why: str
    model_id: int | None = None  # promote
    symbol: str | None = None  # rollback
    id: str = ""  # the request's name in the requests directory

    @classmethod
    def from_json(cls, text: str) -> ManualDecision:
        """A request as written by :func:`submit`; anything else is a :class:`ManualError`."""
        try:
            raw = json.loads(text)
            d = cls(action=str(raw["action"]), by=str(raw["by"]), why=str(raw["why"]),
                    model_id=None if raw.get("model_id") is None else int(raw["model_id"]),
                    symbol=None if raw.get("symbol") is None else str(raw["symbol"]),
                    id=str(raw.get("id", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ManualError(f"not a manual decision request: {exc}") from None
        if d.action not in ACTIONS:
            raise ManualError(f"unknown action {d.action!r} (expected one of {ACTIONS})")
        if (d.action == "promote") != (d.model_id is not None) or \
                (d.action == "rollback") != bool(d.symbol):
            raise ManualError("a promote names a model id, a rollback a symbol")
        return d


@dataclass(frozen=True)
class Answer:
    """The outcome of a request: ``ok`` and one line."""

    ok: bool
    message: str
    model_id: int | None = None
    replaced: int | None = None


@dataclass(frozen=True)
class Choice:
    """The model a decision puts in, for which symbol, and the champion it replaces."""

    symbol: str
    model: ModelRecord
    replaced: int | None


def choose(registry: Registry, d: ManualDecision) -> Choice:
    """The model ``d`` puts in as champion, checked: a booster, stored, not the champion now."""
    if d.action == "promote":
        assert d.model_id is not None
        record = _model(registry, d.model_id)
        if record.kind != "xgboost":
            raise ManualError(f"model {d.model_id} is a {record.kind} model: only boosters are "
                              "champions (the online learner learns all the time)")
        current = registry.champion(record.symbol)
        if current is not None and current.id == record.id:
            raise ManualError(f"model {d.model_id} is already the champion of {record.symbol}")
    else:
        assert d.symbol is not None
        current = registry.champion(d.symbol)
        if current is None:
            raise ManualError(f"{d.symbol} has no champion to roll back")
        history = [m for _, m in validations.promotions(registry.db, d.symbol)]
        earlier = [m for m in history[:_last_index(history, current.id)] if m != current.id]
        if not earlier:
            raise ManualError(f"{d.symbol} has no champion before model {current.id} to roll "
                              "back to")
        record = _model(registry, earlier[-1])
    if record.pruned:
        raise ManualError(f"model {record.id}'s booster was pruned: it cannot be champion")
    return Choice(record.symbol, record, current.id if current is not None else None)


def _model(registry: Registry, model_id: int) -> ModelRecord:
    try:
        return registry.get(model_id)
    except StoreError:
        raise ManualError(f"no model with id {model_id}") from None


def apply(registry: Registry, d: ManualDecision, choice: Choice, ts_event: int) -> ValidationRow:
    """Make ``choice`` the champion and record the decision (one ``validations`` row)."""
    registry.promote(choice.model.id)  # logs model_promoted (an alert)
    row = ValidationRow(
        registry.run_id, choice.symbol, ts_event, f"manual_{d.action}", choice.model.id,
        "champion", choice.replaced, 0, None, None, None, None, None, 0.0, True,
        f"manual {d.action} by {d.by}: {d.why}", "[]", decided_by=d.by)
    validations.insert(registry.db, row)
    log.info("manual_decision", action=d.action, symbol=choice.symbol, model_id=choice.model.id,
             replaced=choice.replaced, by=d.by, why=d.why)
    return row


def _last_index(history: list[int], model_id: int) -> int:
    """Where ``model_id`` was last promoted in ``history`` (its length if never)."""
    for i in range(len(history) - 1, -1, -1):
        if history[i] == model_id:
            return i
    return len(history)


def decide(db_path: str | Path, d: ManualDecision, *, features: Callable[[Any], set[str]],
           wait: float) -> Answer | None:
    """Make decision ``d`` on the database at ``db_path``: by this process when no daemon owns
    it (``features(db)``: the features the database's daemon computes), else by the daemon
    through its requests directory — its answer, or None when it gave none within ``wait`` s
    (the request stays queued)."""
    from ares_stream.learners.registry import Registry
    from ares_stream.store.db import open_db
    from ares_stream.store.history import newest_event, runs
    from ares_stream.store.lock import DatabaseInUse, DatabaseLock

    try:
        lock = DatabaseLock(db_path).acquire()
    except DatabaseInUse:
        sent = submit(db_path, d)
        return wait_answer(db_path, sent.id, wait)
    db = None
    try:
        db = open_db(db_path)
        every = runs(db.conn)
        run_id = every[-1]["id"] if every else None
        registry = Registry(db, run_id=run_id)
        choice = choose(registry, d)
        missing = sorted(set(registry.load_booster(choice.model.id).features) - features(db))
        if missing:
            raise ManualError(f"model {choice.model.id} uses features the database's run does "
                              f"not compute: {', '.join(missing)}")
        ts = (newest_event(db.conn, run_id) if run_id is not None else None) or time.time_ns()
        apply(registry, d, choice, ts)
    finally:
        if db is not None:
            db.conn.close()
        lock.release()
    return Answer(True, f"model {choice.model.id} is the champion of {choice.symbol} (was "
                  f"{choice.replaced}); it trades once a validation measures its edge",
                  choice.model.id, choice.replaced)


# -- the requests directory: a running daemon's inbox ------------------------------------------

def requests_dir(db_path: str | Path) -> Path:
    """``<database>.requests/`` beside the database."""
    return Path(f"{db_path}.requests")


def submit(db_path: str | Path, d: ManualDecision) -> ManualDecision:
    """Leave ``d`` for the daemon that owns ``db_path``; returns it with its request id. The file
    appears whole (written aside, then renamed) and is readable by its owner only; root's
    request (and the directory, if root made it) is handed to the database file's owner — the
    daemon's user."""
    folder = requests_dir(db_path)
    folder.mkdir(mode=0o700, exist_ok=True)
    d = ManualDecision(**{**asdict(d), "id": uuid.uuid4().hex})
    tmp = folder / f".{d.id}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(d), f)
    owner = Path(db_path).stat()
    if os.geteuid() == 0 and owner.st_uid != 0:  # root asking the service user's daemon
        os.chown(folder, owner.st_uid, owner.st_gid)
        os.chown(tmp, owner.st_uid, owner.st_gid)
    tmp.rename(folder / f"{d.id}.json")
    return d


def pending(db_path: str | Path) -> Iterator[tuple[Path, ManualDecision | ManualError]]:
    """The requests waiting in the directory, oldest first (a bad one as its error)."""
    folder = requests_dir(db_path)
    try:
        paths = [p for p in folder.iterdir() if p.suffix == ".json" and _NAME.match(p.stem)]
    except OSError:
        return
    for path in sorted(paths, key=_mtime):
        try:
            yield path, ManualDecision.from_json(path.read_text())
        except ManualError as exc:
            yield path, exc
        except OSError:
            continue  # taken away meanwhile


def answer(path: Path, result: Answer) -> None:
    """Write the answer of the request at ``path`` (``<id>.answer``) and remove the request."""
    tmp = path.with_suffix(".answer.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(result), f)
    tmp.rename(path.with_suffix(".answer"))
    path.unlink(missing_ok=True)


def wait_answer(db_path: str | Path, request_id: str, timeout: float) -> Answer | None:
    """The daemon's answer to a request (removed once read), or None after ``timeout`` s."""
    path = requests_dir(db_path) / f"{request_id}.answer"
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
            continue
        path.unlink(missing_ok=True)
        return Answer(bool(raw["ok"]), str(raw["message"]), raw.get("model_id"),
                      raw.get("replaced"))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
