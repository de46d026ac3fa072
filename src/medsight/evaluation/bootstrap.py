"""Percentile-bootstrap confidence intervals, shared by every task's evaluation.

Each evaluation resamples its units (cases for classification and segmentation, images for
box detection) with replacement, recomputes its metrics on every resample at once, and reads
the interval off the spread with :func:`percentile_interval`. Resamples on which a metric is
undefined give NaN and are skipped. :func:`ratio` and :func:`nanmean` are the NaN-aware
arithmetic the vectorised resamples need.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from medsight.errors import MedsightError

# Bound the (resamples x units) blocks so large test sets do not exhaust memory.
BLOCK_ELEMENTS = 2_000_000


def check_bootstrap(n_bootstrap: int, ci_level: float) -> None:
    """One error line for an interval level outside (0, 1) or a negative number of resamples."""
    if not 0.0 < ci_level < 1.0:
        raise MedsightError(f"ci_level must be between 0 and 1, got {ci_level}")
    if n_bootstrap < 0:
        raise MedsightError(f"n_bootstrap must be >= 0, got {n_bootstrap}")


def resample_blocks(n: int, n_bootstrap: int, rng: np.random.Generator, row_cost: int | None = None
                    ) -> Iterator[np.ndarray]:
    """``n_bootstrap`` resamples of ``n`` units as index blocks ``(b, n)``, each block at most
    :data:`BLOCK_ELEMENTS` / ``row_cost`` rows (``row_cost``: the elements one resample occupies
    downstream, default ``n``)."""
    block = max(1, BLOCK_ELEMENTS // max(1, row_cost or n))
    for start in range(0, n_bootstrap, block):
        yield rng.integers(0, n, size=(min(block, n_bootstrap - start), n))


def resample_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How many times each of ``n`` units is drawn in each resample: ``(b, n)`` from indices ``(b, m)``."""
    b = idx.shape[0]
    codes = (np.arange(b)[:, None] * n + idx).ravel()
    return np.bincount(codes, minlength=b * n).reshape(b, n)


def percentile_interval(values: np.ndarray, level: float) -> list[float | None]:
    """The central ``level`` percentile interval of the resampled values, NaN ignored;
    ``[None, None]`` if none is defined."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return [None, None]
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as float, NaN where ``den`` is 0 (an undefined rate)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)


def nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """Mean ignoring NaN; NaN (without numpy's empty-slice warning) where all are NaN."""
    valid = ~np.isnan(a)
    return ratio(np.where(valid, a, 0.0).sum(axis=axis), valid.sum(axis=axis))
