"""ROC-AUC of class probabilities, as the training's validation and the evaluation report it."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auc_score(y: np.ndarray, probs: np.ndarray) -> float:
    """ROC-AUC (multiclass: one-vs-rest macro); NaN when a class is missing."""
    if len(np.unique(y)) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    try:
        return float(roc_auc_score(y, probs, multi_class="ovr", average="macro",
                                   labels=list(range(probs.shape[1]))))
    except ValueError:  # a class missing from this split
        return float("nan")
