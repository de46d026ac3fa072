"""ROC-AUC of class probabilities, as the training's validation and the evaluation report it."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auc_score(y: np.ndarray, probs: np.ndarray) -> float:
    """ROC-AUC; multiclass: one-vs-rest, macro over the classes present in ``y`` (a grade no
    case of this split has, e.g. a rare one in a small test split, cannot be ranked; with
    every class present this is sklearn's ``multi_class="ovr"`` macro). NaN with one class."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    present = [k for k in range(probs.shape[1]) if 0 < int((y == k).sum()) < len(y)]
    return float(np.mean([roc_auc_score(y == k, probs[:, k]) for k in present]))
