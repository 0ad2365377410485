"""Shrinkage toward the prior: a classifier that has to beat the label frequency to be heard.

:class:`ShrunkClassifier` wraps the online learner's River model (``make_model`` in
:mod:`ares_stream.learners.online` builds every classifier with it): on noise it says the label
frequency, where the model has signal, the model — measured in ``bench/online.py``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

from river import base
from river.base.typing import ClfTarget

from ares_stream.learners.scores import P_MIN

__all__ = ["ShrunkClassifier"]

_log, _exp = math.log, math.exp


class ShrunkClassifier(base.Wrapper, base.Classifier):
    """A binary classifier mixed with the prequential prior, weighted by their recent log losses.

    The prior is the label frequency so far, ``(ones + 1/2) / (n + 1)``
    (:func:`~ares_stream.learners.scores.prequential_p`). ``learn_one`` first scores the inner
    classifier and the prior on ``(x, y)`` *before* learning it, and keeps ``D``, the discounted
    sum of (the model's log loss minus the prior's): ``D <- discount * D + loss_model -
    loss_prior``. The prediction is the Bayesian mixture ``p = w * p_model + (1 - w) * p_prior``
    with the model's weight ``w = 1 / (1 + exp(D + handicap))``: exponential weights on log loss,
    with a memory of about ``1 / (1 - discount)`` samples and a prior weight of
    ``1 / (1 + exp(handicap))`` on the model. Log loss is exp-concave, so over any stretch the
    mixture loses at most about ``handicap + log 2`` nats in total to the better of the two: on
    noise, where a learner only adds variance, it says the label frequency; where the model has
    signal, the model.

    ``delay``: labels known ``delay`` samples late (a horizon of ``delay`` bars) overlap: the
    label of the sample before ``x`` shares ``delay - 1`` of its ``delay`` future returns, so a
    model scored right after learning that sample looks far better than it is (logistic
    regression, SGD 0.01, a random walk, horizon 10: 0.018 nats *better* than the prior scored
    that way, 0.039 worse scored as it predicted). So the inner model, and the frequency it is
    scored against, learn each sample ``delay - 1`` calls late (a queue of copies): when ``x`` is
    scored neither has seen a label overlapping its label, as when its prediction was made (the
    predicted frequency counts every label). For the same reason the losses
    of consecutive samples are nearly the same number (as the drift detector's blocks are): one
    sample in ``delay`` is scored, counted ``delay`` times, and the extra prediction costs
    ``1 / delay`` of one per sample. ``predict_proba_one`` is pure.

    >>> import random
    >>> from river import linear_model
    >>> rng = random.Random(1)
    >>> noise = ShrunkClassifier(linear_model.LogisticRegression())
    >>> signal = ShrunkClassifier(linear_model.LogisticRegression())
    >>> noise.predict_proba_one({"x": 2.0})
    {False: 0.5, True: 0.5}
    >>> for _ in range(1000):
    ...     x = {"x": rng.gauss(0.0, 1.0)}
    ...     noise.learn_one(x, rng.random() < 0.25)  # x says nothing: the label frequency
    ...     signal.learn_one(x, x["x"] + rng.gauss(0.0, 1.0) > 0.0)  # x says a lot: the model
    >>> for model in (noise, signal):
    ...     p = model.predict_proba_one({"x": 2.0})[True]
    ...     print(round(model.weight, 3), round(model.prior, 3), round(p, 3))
    0.0 0.27 0.27
    1.0 0.479 0.919
    """

    def __init__(self, classifier: base.Classifier, discount: float = 0.999,
                 handicap: float = 0.0, delay: int = 1) -> None:
        if not 0.0 < discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        if delay < 1:
            raise ValueError(f"delay must be >= 1 sample, got {delay}")
        self.classifier = classifier
        self.discount = discount
        self.handicap = handicap
        self.delay = delay
        self._n = self._ones = 0  # labels learned by the inner model; of which 1 (True)
        self._n_all = self._ones_all = 0  # labels given to learn_one; of which 1
        self._excess = 0.0  # D: discounted sum of (model log loss - prior log loss)
        self._w = 1.0 / (1.0 + math.exp(min(handicap, 700.0)))  # 1 / (1 + exp(D + handicap))
        self._pending: deque[tuple[dict, Any]] = deque()  # scored, not yet learned (delay - 1)
        self._skip = 0  # samples to learn before the next one is scored

    @property
    def _wrapped_model(self) -> base.Classifier:
        return self.classifier

    @property
    def _multiclass(self) -> bool:
        return False

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        from river import linear_model

        yield {"classifier": linear_model.LogisticRegression()}
        yield {"classifier": linear_model.LogisticRegression(), "delay": 3}

    @property
    def weight(self) -> float:
        """The model's weight ``w`` in the mixture (the prior's is ``1 - w``)."""
        return self._w

    @property
    def prior(self) -> float:
        """The label frequency ``(ones + 1/2) / (n + 1)`` of every label learned so far."""
        return (self._ones_all + 0.5) / (self._n_all + 1.0)

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[ClfTarget, float]:
        """The mixture's ``{False: 1 - p, True: p}``, with the frequency of every label. Pure."""
        prior = (self._ones_all + 0.5) / (self._n_all + 1.0)
        proba = self.classifier.predict_proba_one(x)
        p = prior + self._w * ((proba.get(True, 0.0) if proba else 0.5) - prior)
        return {False: 1.0 - p, True: p}

    def learn_one(self, x: dict, y: Any, **kwargs: Any) -> None:
        """Queue ``(x, y)`` and learn the sample queued ``delay - 1`` calls ago; on the first of
        every ``delay`` calls, first score the model and the prior on ``(x, y)`` and update the
        weight.

        Hot path (once per labelled sample): one extra prediction of the inner classifier per
        ``delay`` samples; the two log losses are one log of a ratio, the model's probability
        floored at ``P_MIN`` as :func:`~ares_stream.learners.scores.log_loss_one` does.
        """
        if self._skip:
            self._skip -= 1
        else:
            self._score(x, y)
        self._n_all += 1
        if y:
            self._ones_all += 1
        if self.delay > 1:
            pending = self._pending
            pending.append((dict(x), y))  # a copy: the caller may reuse x
            if len(pending) < self.delay:
                return
            x, y = pending.popleft()
        self._n += 1
        if y:
            self._ones += 1
        self.classifier.learn_one(x, y)

    def _score(self, x: dict, y: Any) -> None:
        """``D <- discount^delay * D + delay * (loss_model - loss_prior)`` on ``(x, y)``."""
        prior = (self._ones + 0.5) / (self._n + 1.0)
        proba = self.classifier.predict_proba_one(x)
        p = proba.get(True, 0.0) if proba else 0.5
        if not y:  # the probabilities each gave to what happened
            p, prior = 1.0 - p, 1.0 - prior
        k = self.delay
        d = self._excess * self.discount**k + k * _log(prior / (p if p > P_MIN else P_MIN))
        self._excess = d
        d += self.handicap
        self._w = 1.0 / (1.0 + _exp(d)) if d < 700.0 else 0.0
        self._skip = k - 1
