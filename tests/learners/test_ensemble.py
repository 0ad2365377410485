"""The ensemble weights and the online pool of the forecast."""

from __future__ import annotations

import numpy as np

from ares_stream.learners.ensemble import OnlinePool, ensemble


def test_skill_weights_ignore_members_without_skill() -> None:
    assert ensemble([(0.2, 0.0), (0.8, 0.01), (0.5, -1.0)], 0.4) == 0.8


def test_the_pool_finds_the_mix_of_two_partly_informed_forecasters() -> None:
    """p_a knows the label on even bars, p_b on odd ones: the best mix is half and half."""
    rng = np.random.default_rng(1)
    pool = OnlinePool(discount=1.0, min_samples=100)
    labels = rng.integers(0, 2, 4000).tolist()
    for t, y in enumerate(labels):
        knows = 0.8 if y else 0.2
        pool.record(t, knows if t % 2 == 0 else 0.5, knows if t % 2 else 0.5)
        if t >= 10:  # labels come 10 bars late, in bar order
            pool.learn(t - 10, labels[t - 10])
    assert pool.n == 3990 and pool.weight() == 0.5


def test_labels_arrive_late_and_a_gap_drops_pending_bars() -> None:
    """Probabilities recorded at bars 0..4; bar 1's label never comes (a feed gap cleared it):
    learning bar 2 drops bar 1, and only labelled bars count."""
    pool = OnlinePool(min_samples=1)
    for t in range(5):
        pool.record(t, 0.9, 0.1)
    assert pool.weight() is None
    pool.learn(0, 1)
    pool.learn(2, 1)
    pool.learn(2, 1)  # a repeat finds nothing left to score
    assert pool.n == 2 and pool.weight() == 1.0
