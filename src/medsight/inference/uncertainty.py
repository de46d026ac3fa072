"""Per-case uncertainty from class probabilities, and the "needs review" flag.

* ``entropy``: the predictive entropy of the (view- or member-averaged) probabilities divided by
  ``log K``, so 0 is a one-hot prediction and 1 the uniform one whatever the number of classes.
* With several members (test-time views, ensemble members: a stack ``(M, N, K)``) also
  ``mutual_information`` (entropy of the mean minus the mean entropy, divided by ``log K``: the
  part of the uncertainty that comes from the members disagreeing; Depeweg et al., 2018) and
  ``variance`` (the variance across members of each class probability, averaged over classes).

A case "needs review" when its entropy is above the run's review threshold: by default the
entropy that the 10% most uncertain validation cases exceed (``medsight calibrate``), or
``evaluation.review_threshold`` from the config.
"""

from __future__ import annotations

import math

import numpy as np

from medsight.errors import MedsightError


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of each probability vector (last axis, K >= 2 classes) divided by ``log K``; in [0, 1]."""
    p = np.asarray(probs, dtype=np.float64)
    k = p.shape[-1]
    if k < 2:
        raise MedsightError(f"entropy needs at least 2 classes, got {k}")
    p = np.clip(p, 0.0, 1.0)
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.clip(-plogp.sum(-1) / math.log(k), 0.0, 1.0)


def member_uncertainty(stack: np.ndarray) -> dict[str, np.ndarray]:
    """Uncertainty per case from members' probabilities ``(M, N, K)``: arrays of length N.

    ``entropy`` (of the mean), ``expected_entropy`` (mean of the members'), ``mutual_information``
    and ``variance`` as in the module docstring. One member gives zero mutual information and variance.
    """
    stack = np.asarray(stack, dtype=np.float64)
    if stack.ndim != 3:
        raise MedsightError(f"member probabilities must have shape (members, N, K), got {stack.shape}")
    total = normalised_entropy(stack.mean(0))
    expected = normalised_entropy(stack).mean(0)
    return {"entropy": total, "expected_entropy": expected,
            "mutual_information": np.clip(total - expected, 0.0, 1.0),
            "variance": stack.var(0).mean(-1)}


def needs_review(entropy: np.ndarray, threshold: float | None) -> list[bool | None]:
    """True above the threshold; None for every case when no threshold is known."""
    if threshold is None:
        return [None] * len(entropy)
    return [bool(e > threshold) for e in np.asarray(entropy)]


def review_threshold(entropy: np.ndarray, fraction: float) -> float:
    """The entropy that the ``fraction`` most uncertain cases exceed (chosen on validation cases)."""
    if not 0.0 < fraction < 1.0:
        raise MedsightError(f"review fraction must be between 0 and 1, got {fraction}")
    entropy = np.asarray(entropy, dtype=np.float64)
    if entropy.size == 0:
        raise MedsightError("cannot choose a review threshold on zero cases")
    return float(np.quantile(entropy, 1.0 - fraction))


def uncertainty_records(stack: np.ndarray, threshold: float | None) -> list[dict]:
    """The uncertainty fields of each case's prediction record, from probabilities ``(V, N, K)``
    (``V`` test-time views; one without test-time augmentation)."""
    stats = member_uncertainty(stack)
    several = stack.shape[0] > 1
    flags = needs_review(stats["entropy"], threshold)
    return [{"uncertainty": round(float(stats["entropy"][i]), 6), "needs_review": flags[i],
             "review_threshold": None if threshold is None else round(float(threshold), 6),
             "mutual_information": round(float(stats["mutual_information"][i]), 6) if several else None,
             "variance": round(float(stats["variance"][i]), 6) if several else None,
             "tta": several}
            for i in range(stack.shape[1])]
