"""Learners: River online models with ADWIN, warm-start XGBoost boosters, the model registry.

The models themselves and how they are scored — :mod:`.online` (predict, then learn on the
delayed label; ADWIN on non-overlapping losses), :mod:`.booster` (bounded warm starts, UBJSON),
:mod:`.buffer`, :mod:`.registry`, :mod:`.scores` (the one log loss and baseline) and
:mod:`.ensemble` (the traded probability). When to train and validate is ``batch/``'s concern.
"""
