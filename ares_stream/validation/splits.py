"""Purged, embargoed walk-forward splits of time-ordered samples.

Rows ``0 .. n-1`` are samples in time order; the label of row *i* is computed from the closes of
rows *i* and *i + horizon*, so its **label window** is the closed interval ``[i, i + horizon]``.
A row is only safe to train on for a test row *j* if the two windows are disjoint:
``i + horizon < j``. Otherwise the training label already "knows" part of the future the test
label is about (the same bar returns, or at least the same close).

The folds are the last ``n_folds`` contiguous blocks of ``test_size`` rows (default
``n // (n_folds + 1)``), oldest first. For a block starting at ``test_start``, training rows
strictly precede it and end ``gap = purge + embargo`` rows before it:

    train row *i* is kept  ⇔  ``i + purge + embargo < test_start``  (``i < test_start - gap``)

- ``purge`` (default ``horizon``, must be ``>= horizon``) removes the rows whose label window
  reaches into the test block: with ``purge >= horizon`` every kept row has
  ``i + horizon <= i + purge < test_start <= j``, so its window ends before any test window starts.
- ``embargo`` (default 0) drops that many more rows, for serial correlation in the *features*
  beyond the label horizon. Training never follows a test block (walk-forward), so no rows after
  the block need embargoing.

Expanding windows (default) train on rows ``0 .. test_start - gap - 1``, or on the last
``max_train`` of them; rolling windows (``expanding=False``, ``max_train`` required) train on
exactly ``max_train`` rows, so a block with fewer rows before it is dropped. Any fold left with
fewer than ``min_train`` training rows is dropped; ``Fold.index`` keeps the block's position
(0 = oldest block), so a dropped fold does not renumber the others.

Where the definitions coincide (``gap = purge + embargo``, same ``test_size``, expanding with
``max_train_size = max_train``) the folds equal ``sklearn.model_selection.TimeSeriesSplit``'s.

>>> for f in walk_forward(12, n_folds=3, horizon=1):
...     print(f.index, f.train.tolist(), f.test.tolist())
0 [0, 1] [3, 4, 5]
1 [0, 1, 2, 3, 4] [6, 7, 8]
2 [0, 1, 2, 3, 4, 5, 6, 7] [9, 10, 11]
>>> [f.train.tolist() for f in walk_forward(12, n_folds=3, horizon=1, expanding=False, max_train=4)]
[[1, 2, 3, 4], [4, 5, 6, 7]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Fold", "walk_forward"]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: ascending int row indices; every train row precedes every test row."""

    index: int  # position of the test block among all n_folds blocks, 0 = oldest
    train: np.ndarray
    test: np.ndarray


def walk_forward(
    n: int,
    *,
    n_folds: int = 5,
    test_size: int | None = None,
    horizon: int = 1,
    purge: int | None = None,
    embargo: int = 0,
    expanding: bool = True,
    max_train: int | None = None,
    min_train: int = 1,
) -> list[Fold]:
    """The walk-forward folds over ``n`` time-ordered rows (see the module docstring).

    Raises ValueError on inconsistent arguments (``purge < horizon``, rolling without
    ``max_train``, test blocks that do not fit in ``n`` rows, ...).
    """
    size = n // (n_folds + 1) if test_size is None else test_size
    gap = _check(n, n_folds, size, horizon, purge, embargo, expanding, max_train, min_train)
    folds = []
    for k in range(n_folds):
        start = n - (n_folds - k) * size
        end = start - gap  # exclusive end of the training rows
        first = 0 if max_train is None else max(0, end - max_train)
        if end - first < min_train or (not expanding and end - first < (max_train or 0)):
            continue
        train = np.arange(first, end, dtype=np.int64)
        folds.append(Fold(k, train, np.arange(start, start + size, dtype=np.int64)))
    return folds


def _check(
    n: int,
    n_folds: int,
    size: int,
    horizon: int,
    purge: int | None,
    embargo: int,
    expanding: bool,
    max_train: int | None,
    min_train: int,
) -> int:
    """Validate the arguments of :func:`walk_forward`; return the gap ``purge + embargo``."""
    if n_folds < 1 or horizon < 1 or embargo < 0 or min_train < 1:
        raise ValueError(f"need n_folds >= 1, horizon >= 1, embargo >= 0, min_train >= 1; got "
                         f"{n_folds}, {horizon}, {embargo}, {min_train}")
    purge = horizon if purge is None else purge
    if purge < horizon:
        raise ValueError(f"purge ({purge}) must be >= horizon ({horizon}): a shorter purge lets "
                         "training labels overlap the test labels")
    if size < 1 or n_folds * size > n:
        raise ValueError(f"{n_folds} test blocks of {size} rows do not fit in {n} rows")
    if max_train is not None and max_train < 1:
        raise ValueError(f"max_train must be >= 1, got {max_train}")
    if not expanding and max_train is None:
        raise ValueError("rolling windows (expanding=False) need max_train")
    return purge + embargo
