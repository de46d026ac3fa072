"""Patient-level splits: no leaks, determinism, sensible sizes even for tiny data sets."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsight.data.splits import count_leaks, label_subset, patient_split
from medsight.errors import ConfigError

items = st.lists(
    st.tuples(st.integers(0, 30).map(lambda i: f"P{i:02d}"), st.integers(0, 3)),
    min_size=1,
    max_size=120,
)
fractions = st.sampled_from([(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.5, 0.5, 0.0), (1.0, 0.0, 0.0)])


@settings(max_examples=150, deadline=None)
@given(items=items, fractions=fractions, seed=st.integers(0, 2**31))
def test_patients_never_straddle_splits(
    items: list[tuple[str, int]], fractions: tuple[float, float, float], seed: int
) -> None:
    patients = [p for p, _ in items]
    labels = [label for _, label in items]
    splits = patient_split(patients, labels, fractions=fractions, seed=seed)
    assert len(splits) == len(items)
    assert set(splits) <= {"train", "val", "test"}
    assert count_leaks(patients, splits) == 0
    assert splits == patient_split(patients, labels, fractions=fractions, seed=seed)
    # Item order does not matter, only the (patient, label) pairs and the seed.
    reordered = patient_split(patients[::-1], labels[::-1], fractions=fractions, seed=seed)
    assert reordered[::-1] == splits
    n_patients = len(set(patients))
    per_split = {s: len({p for p, q in zip(patients, splits) if q == s}) for s in set(splits)}
    assert per_split.get("train", 0) >= 1
    if n_patients >= 3:
        for name, fraction in zip(("val", "test"), fractions[1:]):
            assert (per_split.get(name, 0) >= 1) == (fraction > 0)


def test_three_patients_fill_three_splits() -> None:
    splits = patient_split(["a", "a", "b", "c"], [0, 0, 1, 0])
    assert splits[0] == splits[1]
    assert sorted(set(splits)) == ["test", "train", "val"]


def test_fractions_and_stratification_on_a_larger_set() -> None:
    patients = [f"p{i}" for i in range(200) for _ in range(2)]
    labels = [int(i % 5 == 0) for i in range(200) for _ in range(2)]
    splits = patient_split(patients, labels, seed=3)
    sizes = Counter(s for s in splits[::2])
    assert sizes == {"train": 140, "val": 30, "test": 30}
    positives = Counter(s for s, y in zip(splits[::2], labels[::2]) if y)
    for name in ("train", "val", "test"):  # 20 % positives everywhere, within a patient or two
        assert abs(positives[name] - 0.2 * sizes[name]) <= 2
    assert patient_split(patients, labels, seed=4) != splits


@pytest.mark.parametrize("bad", [(0.5, 0.5), (0.6, 0.3, 0.3), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_invalid_fractions(bad: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError, match="fractions"):
        patient_split(["a"], [0], fractions=bad)


def test_label_subsets_are_nested_stratified_and_keep_patients_whole() -> None:
    patients = [f"p{i}" for i in range(200) for _ in range(2)]
    labels = [int(i % 4 == 0) for i in range(200) for _ in range(2)]  # 25 % positive patients
    subsets = {f: label_subset(patients, labels, f, seed=1) for f in (0.1, 0.25, 1.0)}
    for fraction, keep in subsets.items():
        chosen = {p for p, k in zip(patients, keep) if k}
        assert len(chosen) == round(200 * fraction)
        assert all(k == (p in chosen) for p, k in zip(patients, keep))  # both images of a patient
        positives = sum(y for y, k in zip(labels[::2], keep[::2]) if k)
        assert abs(positives - 0.25 * len(chosen)) <= 1
    assert all(b for a, b in zip(subsets[0.1], subsets[0.25]) if a)  # 10 % inside 25 %
    assert all(subsets[1.0])
    assert label_subset(patients, labels, 0.1, seed=1) == subsets[0.1]
    assert label_subset(patients, labels, 0.1, seed=2) != subsets[0.1]
    with pytest.raises(ConfigError, match="fraction"):
        label_subset(patients, labels, 0.0)
