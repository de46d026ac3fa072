"""Patient-level train/val/test splits.

Images of one patient are strongly correlated; letting them straddle splits leaks the test
set into training and inflates every metric. :func:`patient_split` therefore assigns whole
patients, stratified by each patient's (majority) label so rare classes reach every split.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Hashable, Sequence

import numpy as np

from medsight.errors import ConfigError

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def patient_split(
    patient_ids: Sequence[str],
    labels: Sequence[Hashable],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> list[str]:
    """The split name (``"train"``, ``"val"`` or ``"test"``) of each item.

    Every patient lands in exactly one split; the result depends only on the (patient, label)
    pairs and ``seed``, not on item order. With three or more patients, val and test (when
    their fraction is non-zero) get at least one patient each.
    """
    fractions = validate_fractions(fractions)
    if len(patient_ids) != len(labels):
        raise ValueError(f"{len(patient_ids)} patient IDs but {len(labels)} labels")
    order = _stratified_order(patient_ids, labels, seed)
    counts = _split_counts(len(order), fractions)

    # Held-out splits take the front of the order, so they get the evenly spread patients.
    assignment: dict[str, str] = {}
    start = 0
    for name, count in (("test", counts[2]), ("val", counts[1]), ("train", counts[0])):
        for patient in order[start : start + count]:
            assignment[patient] = name
        start += count
    return [assignment[str(patient)] for patient in patient_ids]


def validate_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative (train, val, test) fractions summing to 1, with train > 0."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(not math.isfinite(f) or f < 0 for f in values):
        raise ConfigError(f"split fractions must be three non-negative numbers, got {fractions}")
    if not math.isclose(sum(values), 1.0, abs_tol=1e-6) or values[0] == 0:
        raise ConfigError(
            f"split fractions (train, val, test) must sum to 1 with train > 0, got {values}"
        )
    return values  # type: ignore[return-value]


def count_leaks(patient_ids: Sequence[str], splits: Sequence[str]) -> int:
    """How many patients appear in more than one split."""
    seen: dict[str, set[str]] = defaultdict(set)
    for patient, split in zip(patient_ids, splits):
        seen[patient].add(split)
    return sum(len(s) > 1 for s in seen.values())


def _split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Patients per (train, val, test) by largest remainder, then topped up to one each:
    train always, val and test when their fraction is non-zero and there are 3+ patients."""
    exact = [n * f for f in fractions]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(3), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    for i in (0, 1, 2):
        needs_one = n >= 1 if i == 0 else (n >= 3 and fractions[i] > 0)
        if needs_one and counts[i] == 0:
            donor = max(range(3), key=lambda j: (counts[j], j == 0))
            counts[donor] -= 1
            counts[i] += 1
    return counts[0], counts[1], counts[2]



def label_subset(patient_ids: Sequence[str], labels: Sequence[Hashable], fraction: float,
                 seed: int = 0) -> list[bool]:
    """Which items belong to a class-stratified subset of ``fraction`` of the patients (whole
    patients, at least one), for learning curves over the share of labels used.

    Subsets of one seed are nested: a smaller fraction takes the first patients of the same
    stratified order as a larger one, so the 10% subset lies inside the 25% one.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"a label fraction must be in (0, 1], got {fraction}")
    order = _stratified_order(patient_ids, labels, seed)
    keep = set(order[:max(1, round(fraction * len(order)))])
    return [str(patient) in keep for patient in patient_ids]


def fold_splits(patient_ids: Sequence[str], labels: Sequence[Hashable], splits: Sequence[str],
                folds: int, fold: int, seed: int = 0) -> list[str]:
    """k-fold cross-validation over the development data: test stays test; the train and val
    patients are pooled, cut into ``folds`` stratified folds, and fold ``fold`` becomes val.

    Across ``fold = 0 .. folds-1`` every development patient is validated exactly once; the
    folds are contiguous blocks of the stratified order ``patient_split`` uses.
    """
    if folds < 2 or not 0 <= fold < folds:
        raise ConfigError(f"need folds >= 2 and 0 <= fold < folds, got folds={folds}, fold={fold}")
    dev = [i for i, s in enumerate(splits) if s != "test"]
    order = _stratified_order([patient_ids[i] for i in dev], [labels[i] for i in dev], seed)
    if len(order) < folds:
        raise ConfigError(f"{folds} folds need at least {folds} patients outside the test split, got {len(order)}")
    bounds = np.linspace(0, len(order), folds + 1).round().astype(int)
    val = set(order[bounds[fold]:bounds[fold + 1]])
    return ["test" if s == "test" else "val" if str(p) in val else "train" for p, s in zip(patient_ids, splits)]


def _stratified_order(patient_ids: Sequence[str], labels: Sequence[Hashable], seed: int) -> list[str]:
    """Patients in an order where any contiguous block mirrors the label mix."""
    label_counts: dict[str, Counter] = defaultdict(Counter)
    for patient, label in zip(patient_ids, labels):
        label_counts[str(patient)][label] += 1
    patients = sorted(label_counts)
    patient_label = {p: min(c.items(), key=lambda kv: (-kv[1], str(kv[0])))[0] for p, c in label_counts.items()}
    rng = np.random.default_rng(seed)
    by_label: dict[Hashable, list[str]] = defaultdict(list)
    for patient in patients:
        by_label[patient_label[patient]].append(patient)
    position: dict[str, float] = {}
    for label in sorted(by_label, key=str):
        group = by_label[label]
        offset = rng.random()
        for rank, index in enumerate(rng.permutation(len(group))):
            position[group[index]] = (rank + offset) / len(group)
    tie_break = dict(zip(patients, rng.random(len(patients))))
    return sorted(patients, key=lambda p: (position[p], tie_break[p]))
