"""The traded probability: the online learner and the champion booster, weighted by the skill
each showed in its own latest walk-forward validation."""

from __future__ import annotations

__all__ = ["ensemble"]


def ensemble(p_online: float, p_booster: float | None, skill_online: float,
             skill_booster: float) -> float:
    """The traded probability: online and champion booster weighted by validated skill.

    ``skill`` is the walk-forward log-loss improvement over the constant prior at the latest
    validation, floored at 0: ``w = skill / (skill_online + skill_booster)``. With no champion, or
    no skill on either side, the online learner's probability is used alone.

    >>> round(ensemble(0.6, 0.8, 0.01, 0.03), 12)
    0.75
    >>> ensemble(0.6, None, 0.01, 0.03), ensemble(0.6, 0.8, 0.0, 0.0)
    (0.6, 0.6)
    """
    if p_booster is None:
        return p_online
    total = max(skill_online, 0.0) + max(skill_booster, 0.0)
    if total <= 0.0:
        return p_online
    w = max(skill_booster, 0.0) / total
    return (1.0 - w) * p_online + w * p_booster
