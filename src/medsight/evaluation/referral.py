"""Referral curves: how good are the decisions the model keeps when it refers its least certain
cases to a human?

Cases are ordered by uncertainty; for each fraction ``f`` the ``round(f * N)`` most uncertain are
referred and accuracy (and, for two classes, AUC) is measured on the rest (Leibig et al., 2017,
"Leveraging uncertainty information from deep neural networks for disease detection"). A useful
uncertainty gives a rising curve; a useless one stays flat at the accuracy of referring at random.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medsight.errors import MedsightError
from medsight.evaluation.classification import predict_labels
from medsight.metrics.classification import auc_score

FRACTIONS = tuple(round(0.05 * i, 2) for i in range(11))  # 0 to 50% referred, the clinical range


def referral_curve(y_true: np.ndarray, probs: np.ndarray, uncertainty: np.ndarray,
                   threshold: float | None = None, fractions: Sequence[float] = FRACTIONS) -> dict:
    """Accuracy (and binary AUC) of the retained cases per referred fraction, JSON-ready.

    ``threshold``: the binary decision threshold (default 0.5); arg-max for more classes.
    Ties in uncertainty are broken by case order, so the curve is deterministic. AUC is None
    where the retained cases hold one class only.
    """
    y = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    n = y.shape[0]
    if n == 0 or probs.shape[0] != n or uncertainty.shape != (n,):
        raise MedsightError(f"referral curve needs matching non-empty labels, probabilities and uncertainty "
                            f"(got {n}, {probs.shape[0]}, {uncertainty.shape})")
    if any(not 0.0 <= f < 1.0 for f in fractions):
        raise MedsightError("referred fractions must lie in [0, 1)")
    binary = probs.shape[1] == 2
    correct = predict_labels(probs, threshold if binary else None) == y
    order = np.argsort(uncertainty, kind="stable")  # most certain first
    rows = {"fraction_referred": [], "n_retained": [], "accuracy": [], "auc": [] if binary else None}
    for f in fractions:
        keep = order[: max(1, n - int(round(f * n)))]
        rows["fraction_referred"].append(float(f))
        rows["n_retained"].append(int(keep.size))
        rows["accuracy"].append(float(correct[keep].mean()))
        if binary:
            auc = auc_score(y[keep], probs[keep])
            rows["auc"].append(None if np.isnan(auc) else float(auc))
    return rows
