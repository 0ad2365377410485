"""The one log loss and the one prequential baseline: scalar and vector forms agree, River too."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from river import metrics

from ares_stream.learners import scores

probability = st.floats(0.0, 1.0) | st.sampled_from([0.0, 1.0, 1e-16, 1 - 1e-16])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), probability), min_size=1, max_size=50))
def test_scalar_vector_and_river_log_loss_agree(rows: list[tuple[int, float]]) -> None:
    y = np.array([r[0] for r in rows], dtype=np.float64)
    p = np.array([r[1] for r in rows], dtype=np.float64)
    one = [scores.log_loss_one(pi, yi) for yi, pi in rows]
    assert np.allclose(scores.log_losses(y, p), one, rtol=1e-12, atol=0)
    river = metrics.LogLoss()
    for yi, pi in rows:
        river.update(yi, pi)
    assert abs(river.get() - scores.log_loss(y, p)) <= 1e-9 * max(1.0, river.get())


@given(st.lists(st.integers(0, 1), min_size=1, max_size=80))
def test_prequential_rate_is_the_scalar_baseline_before_each_row(labels: list[int]) -> None:
    ones, want = 0, []
    for n, label in enumerate(labels):
        want.append(scores.prequential_p(ones, n))
        ones += label
    assert scores.prequential_rate(np.array(labels, dtype=np.float64)).tolist() == want
