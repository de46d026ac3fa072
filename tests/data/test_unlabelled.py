"""Unlabelled images for pretraining: flat folders and path-only manifests, labels ignored."""

from __future__ import annotations

import pytest

from medsight.config import DataConfig
from medsight.data.unlabelled import unlabelled_dataset
from medsight.errors import InputFileError
from tests.data.pngs import write_png


def _all(data):
    return data.train + data.val + data.test


def test_a_flat_folder_is_one_case_per_file(tmp_path):
    for k in range(10):
        write_png(tmp_path / "flat" / f"scan{k}.png", k)
    data = unlabelled_dataset(DataConfig(dataset="folder", path=tmp_path / "flat"))
    items = _all(data)
    assert sorted(it["id"] for it in items) == sorted(f"scan{k}.png" for k in range(10))
    assert {it["label"] for it in items} == {0} and data.class_names == ["image"] and data.train


def test_a_manifest_needs_only_paths_and_labels_are_ignored(tmp_path):
    for k in range(6):
        write_png(tmp_path / f"a{k}.png", k)
    (tmp_path / "paths.csv").write_text("path,patient_id\n" + "".join(f"a{k}.png,p{k // 2}\n" for k in range(6)))
    items = _all(unlabelled_dataset(DataConfig(dataset="manifest", path=tmp_path / "paths.csv")))
    assert len(items) == 6 and all(it["image"].endswith(".png") and it["label"] == 0 for it in items)
    (tmp_path / "labelled.csv").write_text("path,label,patient_id\n" + "".join(f"a{k}.png,{'xy'[k % 2]},p{k}\n"
                                                                                for k in range(6)))
    items = _all(unlabelled_dataset(DataConfig(dataset="manifest", path=tmp_path / "labelled.csv")))
    assert {it["label"] for it in items} == {0}  # the labels are not read as classes
    (tmp_path / "bad.csv").write_text("file\nx.png\n")
    with pytest.raises(InputFileError, match="bad.csv: expected a path column"):
        unlabelled_dataset(DataConfig(dataset="manifest", path=tmp_path / "bad.csv"))
