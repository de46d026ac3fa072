"""Shared synthetic classifier outputs for the evaluation tests."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

Scores = Callable[..., tuple[np.ndarray, np.ndarray]]


def _scores(n: int, k: int = 2, seed: int = 0, separation: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities of an informative but imperfect classifier."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += separation
    probs = np.exp(logits)
    return y, probs / probs.sum(axis=1, keepdims=True)


@pytest.fixture
def make_scores() -> Scores:
    return _scores
