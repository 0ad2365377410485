"""Walk-forward splits: purge and embargo keep label windows apart; sklearn where they coincide."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.model_selection import TimeSeriesSplit

from ares_stream.validation.splits import walk_forward


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(2, 400),
    n_folds=st.integers(2, 8),  # TimeSeriesSplit needs n_splits >= 2
    test_size=st.none() | st.integers(1, 60),
    horizon=st.integers(1, 6),
    extra_purge=st.integers(0, 4),
    embargo=st.integers(0, 5),
    max_train=st.none() | st.integers(1, 150),
)
def test_equals_sklearn_time_series_split(
    n: int, n_folds: int, test_size: int | None, horizon: int, extra_purge: int, embargo: int,
    max_train: int | None,
) -> None:
    """Expanding folds equal TimeSeriesSplit(gap=purge + embargo) for any parameters it accepts."""
    purge = horizon + extra_purge
    size = n // (n_folds + 1) if test_size is None else test_size
    assume(size >= 1)
    sk = TimeSeriesSplit(n_folds, test_size=test_size, gap=purge + embargo,
                         max_train_size=max_train)
    try:
        expected = list(sk.split(np.zeros(n)))
    except ValueError:
        assume(False)
    folds = walk_forward(n, n_folds=n_folds, test_size=test_size, horizon=horizon, purge=purge,
                         embargo=embargo, max_train=max_train)
    assert len(folds) == len(expected)
    for fold, (train, test) in zip(folds, expected, strict=True):
        np.testing.assert_array_equal(fold.train, train)
        np.testing.assert_array_equal(fold.test, test)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 400),
    n_folds=st.integers(1, 8),
    test_size=st.none() | st.integers(1, 60),
    horizon=st.integers(1, 8),
    extra_purge=st.integers(0, 4),
    embargo=st.integers(0, 5),
    expanding=st.booleans(),
    max_train=st.none() | st.integers(1, 150),
    min_train=st.integers(1, 50),
)
def test_no_label_window_overlap(
    n: int, n_folds: int, test_size: int | None, horizon: int, extra_purge: int, embargo: int,
    expanding: bool, max_train: int | None, min_train: int,
) -> None:
    """No test label window [j, j+h] meets a train row's; train precedes test; blocks ordered."""
    size = n // (n_folds + 1) if test_size is None else test_size
    assume(size >= 1 and n_folds * size <= n and (expanding or max_train is not None))
    folds = walk_forward(n, n_folds=n_folds, test_size=test_size, horizon=horizon,
                         purge=horizon + extra_purge, embargo=embargo, expanding=expanding,
                         max_train=max_train, min_train=min_train)
    previous_end = -1
    for fold in folds:
        train, test = fold.train, fold.test
        assert len(train) >= min_train and len(test) == size
        assert np.all(np.diff(train) == 1) and np.all(np.diff(test) == 1)
        assert train[-1] < test[0] and test[-1] < n
        assert train[-1] + horizon < test[0]  # closed windows [i, i+h] and [j, j+h] are disjoint
        assert test[0] > previous_end  # disjoint and ordered
        previous_end = test[-1]
        if max_train is not None:
            assert len(train) <= max_train
        if not expanding:
            assert len(train) == max_train
    assert [f.index for f in folds] == sorted({f.index for f in folds})


def test_purge_is_tight() -> None:
    """With purge = horizon and no embargo the last train label window ends just before the test."""
    for fold in walk_forward(100, n_folds=4, horizon=5):
        assert fold.train[-1] + 5 == fold.test[0] - 1


def test_embargo_drops_more_rows() -> None:
    """An embargo of e rows moves the training end e rows further from the test block."""
    plain = walk_forward(100, n_folds=3, horizon=2)
    embargoed = walk_forward(100, n_folds=3, horizon=2, embargo=3)
    for a, b in zip(plain, embargoed, strict=True):
        assert b.train[-1] == a.train[-1] - 3
        np.testing.assert_array_equal(a.test, b.test)


def test_rolling_windows_and_dropped_folds() -> None:
    """Rolling folds train on exactly max_train rows; blocks without enough history are dropped."""
    folds = walk_forward(60, n_folds=5, horizon=3, expanding=False, max_train=20)
    assert [f.index for f in folds] == [2, 3, 4]
    assert folds[0].train.tolist() == list(range(7, 27))


def test_min_train_drops_early_folds() -> None:
    """Expanding folds with fewer than min_training rows are dropped; the rest keep their index."""
    folds = walk_forward(60, n_folds=5, horizon=1, min_train=25)
    assert [f.index for f in folds] == [2, 3, 4]
    assert len(folds[0].train) == 29


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizon": 5, "purge": 4}, "purge"),
        ({"expanding": False}, "max_train"),
        ({"n_folds": 5, "test_size": 30}, "do not fit"),
        ({"n_folds": 200}, "do not fit"),
        ({"horizon": 0}, "horizon"),
        ({"min_train": 0}, "min_train"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    """Inconsistent arguments raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=message):
        walk_forward(100, **kwargs)
