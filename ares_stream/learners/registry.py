"""The model registry: boosters as UBJSON, River learners in the codec's format, one champion
per kind.

Every model is a row of ``models`` (SQL in :mod:`ares_stream.store.models`): its lineage (parent,
version per ``(symbol, kind)``), training range and rows, parameters, ordered feature list and
hash, the library versions that wrote it, metrics and status. Boosters are stored with
``save_raw("ubj")`` and never pickled. River learners are stored with :mod:`ares_stream.codec`
(format ``codec-v1``: data that cannot run code when loaded) and refused on load when the
installed River is not the one that wrote them. A learner an earlier version stored as a pickle
is never loaded (:class:`~ares_stream.errors.UnsafeFormatError`).

>>> import river
>>> from structlog.testing import capture_logs
>>> from ares_stream.store.db import open_db
>>> reg = Registry(open_db(":memory:"))
>>> with capture_logs() as logs:
...     rec = reg.save_river("BTCUSDT", {"w": 1.0}, created=0)
>>> logs[0]["event"], logs[0]["model_id"]
('model_registered', 1)
>>> (rec.kind, rec.version, rec.how, rec.format, rec.versions["river"] == river.__version__)
('river', 1, 'online', 'codec-v1', True)
>>> reg.load_river(rec.id)
{'w': 1.0}

Boosters expire: :meth:`Registry.prune` deletes the bytes of each symbol's boosters beyond its
``keep`` newest, keeping every model ever champion and every record (``ares-stream models prune``).
"""

from __future__ import annotations

import builtins
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import river
import structlog

from ares_stream import codec
from ares_stream.errors import AresError, UnsafeFormatError
from ares_stream.learners import booster as bst
from ares_stream.learners.importance import FeatureImportance, river_coefficients
from ares_stream.store import importance as imp_store
from ares_stream.store import models
from ares_stream.store.db import StoreError
from ares_stream.store.models import ModelPruned, ModelRecord, Pruning

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["RIVER_FORMAT", "ModelPruned", "ModelRecord", "PruneResult", "Pruning", "Registry",
           "RegistryError", "RiverVersionError", "UnsafeFormatError"]

RIVER_FORMAT = f"codec-v{codec.VERSION}"  # the format column of a River learner

log = structlog.get_logger(__name__)

_KEY_METRICS = ("logloss", "log_loss", "brier", "roc_auc", "auc", "accuracy", "sharpe")
_HEADER = ("id", "symbol", "kind", "v", "parent", "status", "how", "trees", "rows", "blob",
           "training range (UTC)", "created (UTC)", "metrics")
_LEFT = {"symbol", "kind", "status", "how", "training range (UTC)", "created (UTC)", "metrics"}


class RegistryError(AresError):
    """A model is asked for as something it is not (a River learner loaded as a booster …)."""


class RiverVersionError(AresError):
    """A River learner was saved by another River version than the one installed."""


@dataclass(frozen=True)
class PruneResult:
    """What :meth:`Registry.prune` did (or, ``dry_run``, would do), one :class:`Pruning` a symbol.

    >>> r = PruneResult((Pruning("BTCUSDT", 21, 79, 31_400_000),), dry_run=False)
    >>> print(r.text())
    BTCUSDT: kept 21, pruned 79, freed 31.4 MB
    total: kept 21, pruned 79, freed 31.4 MB (reused by new models; --vacuum shrinks the file)
    """

    symbols: tuple[Pruning, ...]
    dry_run: bool

    @property
    def kept(self) -> int:
        """Boosters whose bytes stay stored, over every symbol."""
        return sum(p.kept for p in self.symbols)

    @property
    def pruned(self) -> int:
        """Boosters whose bytes were (or would be) deleted, over every symbol."""
        return sum(p.pruned for p in self.symbols)

    @property
    def bytes_freed(self) -> int:
        """Their bytes, over every symbol."""
        return sum(p.bytes_freed for p in self.symbols)

    def text(self) -> str:
        """One line per symbol, then the total (``ares-stream models prune``)."""
        if not self.symbols:
            return "no boosters to prune"
        verbs = ("would keep", "prune", "free") if self.dry_run else ("kept", "pruned", "freed")
        lines = [f"{p.symbol}: {_counts(verbs, p.kept, p.pruned, p.bytes_freed)}"
                 for p in self.symbols]
        total = _counts(verbs, self.kept, self.pruned, self.bytes_freed)
        note = " (dry run: nothing deleted)" if self.dry_run else \
            " (reused by new models; --vacuum shrinks the file)" if self.bytes_freed else ""
        return "\n".join([*lines, f"total: {total}{note}"])


class Registry:
    """Models of one state database; ``run_id`` is recorded on every model added."""

    def __init__(self, db: sqlite_utils.Database, run_id: int | None = None) -> None:
        self.db = db
        self.run_id = run_id

    def add_booster(self, symbol: str, tb: bst.TrainedBooster, *, created: int,
                    parent: int | None = None, status: str = "candidate",
                    metrics: Mapping[str, float] | None = None,
                    importance: Mapping[str, FeatureImportance] | None = None) -> ModelRecord:
        """Record a trained booster (UBJSON blob) as the next xgboost version of ``symbol``,
        with its per-feature ``importance`` when given (measured in the worker, beside the fit)."""
        record = models.insert(
            self.db, symbol=symbol, kind="xgboost", created=created, rows=tb.rows, how=tb.how,
            params=tb.params, features=tb.features, feature_hash=tb.feature_hash,
            versions=tb.versions, format="ubjson", blob=bst.to_ubjson(tb), parent=parent,
            train_start=tb.train_start, train_end=tb.train_end, n_trees=tb.n_trees,
            metrics=metrics, status=status, run_id=self.run_id)
        if importance:
            self.record_importance(record.id, importance)
        log.info("model_registered", model_id=record.id, symbol=symbol, kind="xgboost",
                 version=record.version, how=tb.how, trees=tb.n_trees, status=status)
        return record

    def load_booster(self, model_id: int) -> bst.TrainedBooster:
        """The booster of ``model_id``, rebuilt from its UBJSON and checked against its record."""
        record = self.get(model_id)
        if record.kind != "xgboost" or record.format != "ubjson":
            raise RegistryError(f"model {model_id} is a {record.kind} model "
                                f"({record.format}), not an xgboost booster")
        return bst.from_ubjson(models.blob(self.db, model_id), asdict(record))

    def save_river(self, symbol: str, learner: object, *, created: int,
                   metrics: Mapping[str, float] | None = None, features: Sequence[str] = (),
                   rows: int | None = None, parent: int | None = None,
                   status: str = "candidate") -> ModelRecord:
        """Checkpoint a River learner (the codec); ``rows`` defaults to its ``n_learned``. The
        coefficients of its linear model on standardized inputs, if it has one, are its
        importance rows."""
        kind = type(learner)
        record = models.insert(
            self.db, symbol=symbol, kind="river", created=created,
            rows=int(getattr(learner, "n_learned", 0) if rows is None else rows), how="online",
            params={"class": f"{kind.__module__}.{kind.__qualname__}"}, features=features,
            feature_hash=bst.feature_hash(features), versions=river_versions(),
            format=RIVER_FORMAT, blob=codec.dumps(learner), parent=parent,
            metrics=metrics, status=status, run_id=self.run_id)
        coefs = river_coefficients(learner, features)
        if coefs:
            self.record_importance(record.id, {f: FeatureImportance(coef=c)
                                               for f, c in coefs.items()})
        log.info("model_registered", model_id=record.id, symbol=symbol, kind="river",
                 version=record.version, status=status)
        return record

    def load_river(self, model_id: int) -> object:
        """A River learner, decoded by the codec; refused when another River version wrote it,
        or an earlier ares-stream stored it as a pickle."""
        record = self.get(model_id)
        if record.kind != "river":
            raise RegistryError(f"model {model_id} is a {record.kind} model, not a River learner")
        if record.format == "pickle":
            raise UnsafeFormatError(
                f"model {model_id} was stored as a pickle by an earlier version of ares-stream: "
                "an unsafe format (a pickle can run code when loaded), so it will not be loaded. "
                "Start the learner fresh; what is saved from now on is stored safely.")
        if record.format != RIVER_FORMAT:
            raise RegistryError(f"model {model_id} is stored as {record.format!r}; this version "
                                f"reads River learners stored as {RIVER_FORMAT!r}")
        saved = record.versions.get("river", "unknown")
        if saved != river.__version__:
            raise RiverVersionError(
                f"model {model_id} was saved by river {saved}; this is river {river.__version__}:"
                f" a learner's state cannot be trusted across versions. Let the online learner "
                f"start fresh (or install river {saved} to load it).")
        try:
            return codec.loads(models.blob(self.db, model_id))
        except codec.CodecError as exc:
            raise codec.CodecError(f"model {model_id}: {exc}") from None

    def record_importance(self, model_id: int,
                          importance: Mapping[str, FeatureImportance]) -> None:
        """Store a model's per-feature importance (a feature given again replaces its row)."""
        imp_store.write(self.db, model_id, [(f, i.gain, i.shap, i.coef)
                                            for f, i in importance.items()])

    def importance(self, model_id: int) -> builtins.list[dict[str, Any]]:
        """A model's importance rows, most important first (``store.importance.of_model``)."""
        return imp_store.of_model(self.db, model_id)

    def get(self, model_id: int) -> ModelRecord:
        """The record of ``model_id``; raises :class:`StoreError` when there is none."""
        record = models.get(self.db, model_id)
        if record is None:
            raise StoreError(f"no model with id {model_id}")
        return record

    def champion(self, symbol: str, kind: str = "xgboost") -> ModelRecord | None:
        """The current champion of ``(symbol, kind)``, or None."""
        return models.champion(self.db, symbol, kind)

    def promote(self, model_id: int) -> None:
        """Make ``model_id`` the champion; the champion it replaces is retired atomically."""
        record = self.get(model_id)
        before = self.champion(record.symbol, record.kind)
        models.promote(self.db, model_id)
        log.info("model_promoted", model_id=model_id,
                 retired=None if before is None or before.id == model_id else before.id)

    def record_metrics(self, model_id: int, metrics: Mapping[str, Any]) -> None:
        """Merge ``metrics`` into the model's stored metrics."""
        models.update_metrics(self.db, model_id, metrics)

    def retire(self, model_id: int) -> None:
        """Mark ``model_id`` retired."""
        models.set_status(self.db, model_id, "retired")

    def prune(self, symbol: str | None = None, keep: int = 20, *,
              dry_run: bool = False) -> PruneResult:
        """Delete the booster bytes of every symbol (or one) beyond its ``keep`` newest boosters,
        except those of every model ever champion; records stay, marked pruned. One indexed
        query per symbol: cheap enough after every training."""
        if keep < 0:
            raise RegistryError(f"keep {keep}: the boosters kept per symbol must be >= 0")
        symbols = [symbol] if symbol is not None else models.booster_symbols(self.db)
        done = tuple(models.prune(self.db, s, keep, dry_run=dry_run) for s in symbols)
        for p in done:
            if p.pruned and not dry_run:
                log.info("models_pruned", symbol=p.symbol, kept=p.kept, pruned=p.pruned,
                         bytes_freed=p.bytes_freed, keep=keep)
        return PruneResult(done, dry_run)

    def vacuum(self) -> int:
        """Give the database's free pages back to the file system; the bytes it shrank by.
        Blocks every writer (a running daemon) while it runs."""
        return models.vacuum(self.db)

    def list(self, symbol: str | None = None) -> builtins.list[ModelRecord]:
        """The records in id order (oldest first), of one symbol or of all."""
        return models.list_models(self.db, symbol)

    def table(self, symbol: str | None = None) -> str:
        """A fixed-width listing of the models (``ares-stream models``), oldest first."""
        rows = [_cells(r) for r in self.list(symbol)]
        if not rows:
            return "no models" + (f" for {symbol}" if symbol else "")
        widths = [max(len(row[i]) for row in [_HEADER, *rows]) for i in range(len(_HEADER))]
        lines = [
            "  ".join(cell.ljust(w) if name in _LEFT else cell.rjust(w)
                      for name, cell, w in zip(_HEADER, row, widths, strict=True)).rstrip()
            for row in [_HEADER, *rows]
        ]
        return "\n".join(lines)


def river_versions() -> dict[str, str]:
    """The river, numpy and Python versions a River learner is saved with."""
    return {"river": river.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _cells(r: ModelRecord) -> tuple[str, ...]:
    span = "" if r.train_start is None or r.train_end is None else \
        f"{_utc(r.train_start)} → {_utc(r.train_end)}"
    return (str(r.id), r.symbol, r.kind, str(r.version), _opt(r.parent), r.status, r.how,
            _opt(r.n_trees), str(r.rows), "pruned" if r.pruned else _size(r.size), span,
            _utc(r.created), _key_metrics(r.metrics))


def _counts(verbs: tuple[str, str, str], kept: int, pruned: int, freed: int) -> str:
    return f"{verbs[0]} {kept:,}, {verbs[1]} {pruned:,}, {verbs[2]} {_size(freed)}"


def _size(n: int) -> str:
    """Bytes in decimal units: ``512 B``, ``41.3 kB``, ``27.9 MB``."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%d %H:%M")


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


def _key_metrics(metrics: Mapping[str, Any], limit: int = 4) -> str:
    """The best-known metrics first, then the rest alphabetically; numbers to 4 decimals."""
    names = [k for k in _KEY_METRICS if k in metrics]
    names += sorted(k for k in metrics if k not in _KEY_METRICS)
    return " ".join(f"{k}={_num(metrics[k])}" for k in names[:limit])


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
