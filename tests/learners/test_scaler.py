"""The running standard scaler: River's values bit for bit by default, bounded when asked."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import checks, preprocessing

from ares_stream.learners.scaler import RunningStandardScaler

rows_strategy = st.lists(
    st.dictionaries(st.sampled_from("abcd"), st.floats(-1e6, 1e6), min_size=1), min_size=1
)


@settings(max_examples=40, deadline=None)
@given(rows_strategy)
def test_scaler_equals_river_standard_scaler(rows: list[dict[str, float]]) -> None:
    """On any stream, features appearing and vanishing, our scaler gives River's values."""
    ours, ref = RunningStandardScaler(), preprocessing.StandardScaler()
    for row in rows:
        ours.learn_one(row)
        ref.learn_one(row)
        probe = {**row, "unseen": 1.0}
        got, want = ours.transform_one(probe), ref.transform_one(probe)
        assert got.keys() == want.keys()
        assert all(abs(got[k] - want[k]) <= 1e-12 * max(1.0, abs(want[k])) for k in want)


@settings(max_examples=40, deadline=None)
@given(rows_strategy, st.sampled_from([0.5, 3.0, 5.0]), st.integers(0, 4))
def test_bounded_scaler_is_rivers_values_clipped_after_warmup(
    rows: list[dict[str, float]], clip: float, warmup: int
) -> None:
    """With clip and warmup: 0.0 until a feature has ``warmup`` values, then River's value
    clipped to +-clip (an unseen feature still scales to 0.0)."""
    ours, ref = RunningStandardScaler(clip=clip, warmup=warmup), preprocessing.StandardScaler()
    for row in rows:
        ours.learn_one(row)
        ref.learn_one(row)
        probe = {**row, "unseen": 1.0}
        got, want = ours.transform_one(probe), ref.transform_one(probe)
        for k, v in want.items():
            expected = 0.0 if ours.n_seen(k) < warmup else max(-clip, min(clip, v))
            assert abs(got[k] - expected) <= 1e-12 * max(1.0, abs(expected))


def test_a_barely_moving_feature_does_not_explode() -> None:
    """Four values that hardly move, then one a little off: River's scaler says thousands of
    deviations; ours says 0.0 while warming up and at most ``clip`` afterwards."""
    values = [1.0, 1.0, 1.0, 1.0001]
    ref, bounded = preprocessing.StandardScaler(), RunningStandardScaler(clip=5.0, warmup=20)
    for v in values:
        ref.learn_one({"spread": v})
        bounded.learn_one({"spread": v})
    assert ref.transform_one({"spread": 1.5})["spread"] > 1_000
    assert bounded.transform_one({"spread": 1.5}) == {"spread": 0.0}
    for v in values * 5:
        bounded.learn_one({"spread": v})
    assert bounded.transform_one({"spread": 1.5}) == {"spread": 5.0}
    assert bounded.transform_one({"spread": -1.5}) == {"spread": -5.0}


def test_infinite_and_nan_inputs_stay_bounded() -> None:
    """An infinite input clips to +-clip; inf - inf (NaN) scales to 0.0, never to NaN."""
    scaler = RunningStandardScaler(clip=5.0)
    for v in (1.0, 2.0, 3.0):
        scaler.learn_one({"a": v})
    assert scaler.transform_one({"a": float("inf")}) == {"a": 5.0}
    assert scaler.transform_one({"a": float("-inf")}) == {"a": -5.0}
    scaler.learn_one({"b": float("inf")})  # b's mean is inf: inf - inf is NaN
    assert scaler.transform_one({"b": float("inf")}) == {"b": 0.0}


def test_a_scaler_pickled_before_the_options_loads_unbounded() -> None:
    """A scaler pickled before ``clip`` and ``warmup`` existed (no such attributes) loads and
    scales as River does."""
    old = RunningStandardScaler()
    for v in (10.0, 12.0, 14.0):
        old.learn_one({"x": v})
    del old.__dict__["clip"], old.__dict__["warmup"]
    restored = pickle.loads(pickle.dumps(old))
    assert restored.transform_one({"x": 14.0}) == {"x": 1.224744871391589}
    restored.learn_one({"x": 100.0})
    assert restored.clip is None and restored.warmup == 0


def test_bad_clip_is_refused() -> None:
    """A clip that is not a positive number of deviations is a ValueError."""
    with pytest.raises(ValueError, match="clip"):
        RunningStandardScaler(clip=0.0)


_BOUNDED = RunningStandardScaler(clip=5.0, warmup=3)
_CONTRACTS = [
    c for c in checks.yield_checks(_BOUNDED) if c.__name__ not in _BOUNDED._unit_test_skips()
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("check", _CONTRACTS, ids=[c.__name__ for c in _CONTRACTS])
def test_bounded_scaler_passes_river_contract_checks(check: Callable[..., None]) -> None:
    """The bounded scaler passes River's own estimator checks (the default one: test_online)."""
    check(RunningStandardScaler(clip=5.0, warmup=3))
