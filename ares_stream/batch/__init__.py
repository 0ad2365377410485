"""Batch learning beside the online learner: when to train and validate, and what to do with it.

The stage above ``learners/`` and ``validation/``: :mod:`.learner` (``BatchLearner``) buffers
labelled samples, schedules warm-start XGBoost updates and walk-forward re-validations on its
clock, runs them in a worker process (:mod:`.jobs`: plain functions, boosters crossing the
process boundary as UBJSON) and applies their results between frames — the promotion gate's
decision, the registry, each model's validated skill for the ensemble. :mod:`.revalidate` is
``ares-stream validate``: one walk-forward now, on a run's buffer.
"""
