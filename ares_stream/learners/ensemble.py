"""The ensemble: models weighted by the skill each showed in its own latest walk-forward
validation (the log-loss gain over the constant prior)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ensemble"]


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
