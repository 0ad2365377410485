"""The ensemble: models weighted by the skill each showed in its own latest walk-forward
validation (the log-loss gain over the constant prior), and the online pool of the forecast."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from ares_stream.learners.scores import log_loss_one

__all__ = ["OnlinePool", "ensemble"]


def ensemble(members: Sequence[tuple[float, float]], fallback: float) -> float:
    """``Σ wᵢ pᵢ / Σ wᵢ`` over ``(p, skill)`` members with ``w = max(skill, 0)``; ``fallback``
    when no member has a weight.

    >>> round(ensemble([(0.6, 0.01), (0.8, 0.03)], 0.5), 12)
    0.75
    >>> ensemble([(0.6, 0.0), (0.8, -0.1)], 0.5), ensemble([], 0.5)
    (0.5, 0.5)
    """
    total = weighted = 0.0
    for p, skill in members:
        if skill > 0.0:
            total += skill
            weighted += skill * p
    return weighted / total if total > 0.0 else fallback


class OnlinePool:
    """The mix ``w p_a + (1 - w) p_b`` that scored best on the recent labelled predictions.

    :meth:`record` keeps the two probabilities given at a bar; :meth:`learn` scores every ``w``
    of a grid on them once the bar's label is known (labels come in bar order; a bar whose label
    never comes — a feed gap — is dropped), with exponentially discounted log losses (a memory of
    about ``1 / (1 - discount)`` labels). :meth:`weight` is the best ``w``, or None before
    ``min_samples`` labels. Causal: a weight only uses labels revealed before it is asked.

    >>> pool = OnlinePool(min_samples=2)
    >>> for t, y in enumerate([1, 0, 1, 0]):
    ...     pool.record(t, 0.9 if y else 0.1, 0.5)   # p_a knows, p_b does not
    ...     pool.learn(t, y)
    >>> pool.weight()
    1.0
    """

    GRID = tuple(i / 20 for i in range(21))

    def __init__(self, discount: float = 0.9999, min_samples: int = 2000) -> None:
        self.discount, self.min_samples = discount, min_samples
        self.losses = [0.0] * len(self.GRID)
        self.n = 0
        self._pending: deque[tuple[int, float, float]] = deque()

    def record(self, key: int, p_a: float, p_b: float) -> None:
        """The two probabilities given at bar ``key`` (increasing)."""
        self._pending.append((key, p_a, p_b))

    def learn(self, key: int, label: int) -> None:
        """Bar ``key``'s label is known: score every weight on what was given then."""
        pending = self._pending
        while pending and pending[0][0] < key:
            pending.popleft()
        if not pending or pending[0][0] != key:
            return
        _, a, b = pending.popleft()
        d = self.discount
        for i, w in enumerate(self.GRID):
            self.losses[i] = self.losses[i] * d + log_loss_one(w * a + (1.0 - w) * b, label)
        self.n += 1

    def weight(self) -> float | None:
        """The weight of ``p_a`` with the least discounted loss; None before ``min_samples``."""
        if self.n < self.min_samples:
            return None
        return self.GRID[min(range(len(self.GRID)), key=self.losses.__getitem__)]
