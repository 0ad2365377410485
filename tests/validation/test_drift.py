"""PSI and the two-sample KS statistic (ares_stream/validation/drift.py)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from ares_stream.validation.drift import compare, ks, psi, psi_null

_samples = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300)


@settings(max_examples=200, deadline=None)  # scipy warns on its p-value, not the statistic
@given(_samples, _samples)
def test_ks_equals_scipy(a: list[float], b: list[float]) -> None:
    """The KS statistic equals scipy's ks_2samp statistic on any two samples."""
    assert math.isclose(ks(np.array(a), np.array(b)), ks_2samp(a, b).statistic, abs_tol=1e-12)


@settings(max_examples=100, deadline=None)
@given(_samples)
def test_identical_samples_do_not_drift(a: list[float]) -> None:
    """A sample compared with itself has PSI 0 and KS 0."""
    x = np.array(a)
    assert psi(x, x) == 0.0
    assert ks(x, x) == 0.0


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.75, 2.0))
def test_a_shift_is_large_and_grows(seed: int, shift: float) -> None:
    """Two draws of one distribution stay near 0; a mean shift of 0.75 sd or more scores above
    0.2, and more for a larger shift."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=4_000), rng.normal(size=4_000)
    assert psi(a, b) < 0.02 and ks(a, b) < 0.05
    assert psi(a, b + shift) > 0.2 and ks(a, b + shift) > 0.25
    assert psi(a, b + 2 * shift) > psi(a, b + shift)


def test_psi_matches_a_batch_reference() -> None:
    """PSI equals the textbook sum over decile bins of the reference, written out longhand."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=1_000), rng.normal(0.3, 1.2, size=700)
    edges = np.quantile(a, [i / 10 for i in range(1, 10)])
    total = 0.0
    for lo, hi in zip([-np.inf, *edges], [*edges, np.inf], strict=True):
        p = max(np.mean((a >= lo) & (a < hi)), 1e-4)
        q = max(np.mean((b >= lo) & (b < hi)), 1e-4)
        total += (q - p) * math.log(q / p)
    assert math.isclose(psi(a, b), total, rel_tol=1e-9)


def test_compare_skips_thin_and_nan_columns() -> None:
    """A column with too few finite values is not measured and never drifted; NaNs are left out."""
    rng = np.random.default_rng(1)
    ref, rec = rng.normal(size=(2_000, 3)), rng.normal(size=(400, 3))
    ref[:, 1] = np.nan
    rec[:200, 2] = np.nan
    rec[:, 0] += 3.0
    out = compare(ref, rec, ["a", "b", "c"], psi_threshold=0.2)
    assert [r.drifted for r in out] == [True, False, False]
    assert math.isnan(out[1].psi) and out[1].reference_rows == 0
    assert out[2].recent_rows == 200 and out[2].psi < 0.2


def test_psi_null_is_the_psi_of_each_reference_window_against_the_rest() -> None:
    """psi_null's window PSIs equal psi() of that window against the other reference rows binned
    on the whole reference's deciles (here: the window's own PSI, written out)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=1_200)
    null = psi_null(x, 300, stride=300)
    edges = np.quantile(x, [i / 10 for i in range(1, 10)])
    for i, value in enumerate(null):
        inside = np.zeros(len(x), dtype=bool)
        inside[i * 300:(i + 1) * 300] = True
        p = np.maximum(np.bincount(np.searchsorted(edges, x[~inside], side="right"),
                                   minlength=10) / (~inside).sum(), 1e-4)
        q = np.maximum(np.bincount(np.searchsorted(edges, x[inside], side="right"),
                                   minlength=10) / 300, 1e-4)
        assert math.isclose(value, float(np.sum((q - p) * np.log(q / p))), rel_tol=1e-9)
    assert len(psi_null(x, 700)) == 0


def test_a_wandering_feature_is_judged_against_its_own_wander() -> None:
    """An AR(1) feature (half-life 60 rows) scores a PSI far above 0.25 between two stationary
    stretches, yet does not drift: its reference windows wander as much. A level shift of 3 of its
    sds does; a reference shorter than reference_windows recent windows judges nothing."""
    rng = np.random.default_rng(7)
    phi, n = 0.5 ** (1 / 60), 6_000
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + np.sqrt(1 - phi**2) * rng.normal()
    ref, rec = x[:5_000, None], x[5_500:, None]
    calm = compare(ref, rec, ["ar"], psi_threshold=0.25)[0]
    assert not calm.drifted and calm.threshold > 0.25
    shifted = compare(ref, rec + 3.0, ["ar"], psi_threshold=0.25)[0]
    assert shifted.drifted and shifted.psi > shifted.threshold
    short = compare(ref[:1_500], rec + 3.0, ["ar"], psi_threshold=0.25)[0]
    assert not short.drifted and math.isnan(short.threshold)
