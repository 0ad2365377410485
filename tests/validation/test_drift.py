"""PSI and the two-sample KS statistic (ares_stream/validation/drift.py)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from ares_stream.validation.drift import compare, ks, psi

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
    ref, rec = rng.normal(size=(500, 3)), rng.normal(size=(400, 3))
    ref[:, 1] = np.nan
    rec[:200, 2] = np.nan
    rec[:, 0] += 3.0
    out = compare(ref, rec, ["a", "b", "c"], psi_threshold=0.2)
    assert [r.drifted for r in out] == [True, False, False]
    assert math.isnan(out[1].psi) and out[1].reference_rows == 0
    assert out[2].recent_rows == 200 and out[2].psi < 0.2
