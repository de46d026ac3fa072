"""Segmentation data: MSD folders, manifests with masks, k folds, masks checked against images."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medsight.config import DataConfig
from medsight.data.loading import LazyItems, load_items
from medsight.data.manifest import manifest_dataset
from medsight.data.msd import msd_dataset
from medsight.data.registry import build_dataset, dataset_kind
from medsight.data.splits import count_leaks, fold_splits
from medsight.errors import ConfigError, InputFileError

from .msd_folder import write_msd

SPLITS = ("train", "val", "test")


def _all(data) -> list[dict]:
    return data.train + data.val + data.test


def test_msd_folder_gives_image_and_mask_paths_and_label_names(tmp_path):
    root = write_msd(tmp_path / "Task99", n=10)
    data = msd_dataset(root, seed=0)
    assert data.class_names == ["background", "Anterior", "Posterior"]
    items = _all(data)
    assert sorted(it["id"] for it in items) == [f"case_{i:03d}" for i in range(10)]
    for it in items:
        assert Path(it["image"]) == root / "imagesTr" / f"{it['id']}.nii.gz"
        assert Path(it["mask"]) == root / "labelsTr" / f"{it['id']}.nii.gz"
        assert Path(it["image"]).is_file() and Path(it["mask"]).is_file()
    assert data.train and data.val and data.test
    assert count_leaks([it["patient_id"] for it in items],
                       [s for s in SPLITS for _ in data.split(s)]) == 0
    # the registry finds the layout from the folder alone, as `evaluate --data` does
    assert dataset_kind(root) == "msd"
    again = build_dataset(DataConfig(dataset="msd", path=root), seed=0)
    assert [it["id"] for it in again.test] == [it["id"] for it in data.test]
    loaded, skipped = load_items(data.test, progress=False)
    assert not skipped and loaded[0]["image"].shape == loaded[0]["mask"].shape == (1, 20, 24, 16)
    assert set(np.unique(loaded[0]["mask"].numpy())) == {0.0, 1.0, 2.0}


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_k_folds_validate_every_development_case_once_and_keep_test(tmp_path, folds):
    root = write_msd(tmp_path / "Task99", n=14, shape=(8, 8, 8))
    plain = build_dataset(DataConfig(dataset="msd", path=root), seed=3)
    validated: list[str] = []
    for fold in range(folds):
        data = build_dataset(DataConfig(dataset="msd", path=root, folds=folds, fold=fold), seed=3)
        ids = [it["id"] for it in _all(data)]
        assert sorted(ids) == sorted(set(ids)) and len(ids) == 14  # each case in one split
        assert data.val and data.train
        assert [it["id"] for it in data.test] == [it["id"] for it in plain.test]  # test untouched
        validated += [it["id"] for it in data.val]
    dev = sorted(it["id"] for it in plain.train + plain.val)
    assert sorted(validated) == dev  # every development case validated exactly once
    sizes = [len(build_dataset(DataConfig(dataset="msd", path=root, folds=folds, fold=f), seed=3).val)
             for f in range(folds)]
    assert max(sizes) - min(sizes) <= 1


def test_fold_splits_keep_patients_together_and_check_their_arguments():
    patients = [f"P{i // 3}" for i in range(30)]  # three images per patient
    labels = [i % 2 for i in range(30)]
    splits = ["test" if i >= 24 else "train" for i in range(30)]
    for fold in range(4):
        out = fold_splits(patients, labels, splits, 4, fold, seed=0)
        assert count_leaks(patients, out) == 0
        assert out[24:] == ["test"] * 6
        assert out == fold_splits(patients[::-1], labels[::-1], splits[::-1], 4, fold, seed=0)[::-1]
    with pytest.raises(ConfigError):
        fold_splits(patients, labels, splits, 4, 4)
    with pytest.raises(ConfigError, match="at least"):
        fold_splits(["a", "b"], [0, 0], ["train", "train"], 3, 0)


def _one_line_error(exc: pytest.ExceptionInfo, *needles) -> str:
    message = str(exc.value)
    assert "\n" not in message
    for needle in needles:
        assert str(needle) in message, (needle, message)
    return message


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"training": [{"image": "a", "label": "b"}]}), '"labels"'),
    (json.dumps({"labels": {"0": "background", "2": "x"}, "training": [{"image": "a", "label": "b"}]}),
     "label values must be 0..1"),
    (json.dumps({"labels": {"0": "background", "1": "x"}, "training": []}), '"training"'),
    (json.dumps({"labels": {"0": "background", "1": "x"}, "training": [{"image": "a"}]}), "entry 0"),
])
def test_invalid_dataset_json_is_one_line_naming_the_file(tmp_path, content, problem):
    root = write_msd(tmp_path / "Task99", n=2, shape=(8, 8, 8))
    (root / "dataset.json").write_text(content)
    with pytest.raises(InputFileError) as exc:
        msd_dataset(root)
    _one_line_error(exc, root / "dataset.json", problem)


def test_a_folder_that_is_not_msd_is_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError) as exc:
        msd_dataset(tmp_path / "empty")
    _one_line_error(exc, tmp_path / "empty", "dataset.json")
    root = write_msd(tmp_path / "nolabels", n=2, shape=(8, 8, 8), dataset_json=False)
    for f in (root / "labelsTr").iterdir():
        f.rename(f.with_name("other_" + f.name))
    with pytest.raises(InputFileError) as exc:
        msd_dataset(root)
    _one_line_error(exc, root, "same-named label")


def test_msd_folder_without_dataset_json_pairs_same_named_files(tmp_path):
    root = write_msd(tmp_path / "Task99", n=6, shape=(8, 8, 8), dataset_json=False)
    (root / "imagesTr" / "._case_000.nii.gz").write_bytes(b"macOS resource fork")  # as in MSD tarballs
    (root / "imagesTr" / "unlabelled.nii.gz").write_bytes((root / "imagesTr" / "case_000.nii.gz").read_bytes())
    assert dataset_kind(root) == "msd"
    data = msd_dataset(root, fractions=(1.0, 0.0, 0.0))
    assert data.class_names == []  # no names: segmentation takes 0..K from the masks
    assert sorted(it["id"] for it in data.train) == [f"case_{i:03d}" for i in range(6)]
    assert all(Path(it["mask"]).name == Path(it["image"]).name for it in data.train)


def test_manifest_with_a_mask_column_and_no_label_column(tmp_path):
    root = write_msd(tmp_path / "data", n=8, shape=(8, 8, 8), dataset_json=False)
    rows = [f"imagesTr/case_{i:03d}.nii.gz,labelsTr/case_{i:03d}.nii.gz,patient{i // 2}" for i in range(8)]
    csv_path = root / "manifest.csv"
    csv_path.write_text("path,mask,patient_id\n" + "\n".join(rows) + "\n")
    data = manifest_dataset(csv_path, seed=0)
    items = _all(data)
    assert len(items) == 8 and data.class_names == []
    for it in items:
        assert it["mask"] == str(root / "labelsTr" / Path(it["image"]).name)  # resolved beside the CSV
    split_of = {it["patient_id"]: s for s in SPLITS for it in data.split(s)}
    assert all(split_of[it["patient_id"]] == s for s in SPLITS for it in data.split(s))  # patients whole
    folds = [build_dataset(DataConfig(dataset="manifest", path=csv_path, folds=2, fold=f), seed=0)
             for f in range(2)]
    dev = sorted(it["id"] for it in data.train + data.val)
    assert sorted(it["id"] for f in folds for it in f.val) == dev
    loaded, _ = load_items(items, progress=False)
    assert all(it["mask"].shape == it["image"].shape for it in loaded)
    # a row without its mask is named by line
    csv_path.write_text("path,mask,patient_id\n" + rows[0] + "\nimagesTr/case_001.nii.gz,,p\n")
    with pytest.raises(InputFileError, match="line 3: empty mask"):
        manifest_dataset(csv_path)
    # without a mask column, the label column is still required
    csv_path.write_text("path,patient_id\n" + "imagesTr/case_001.nii.gz,p\n")
    with pytest.raises(InputFileError, match="missing column"):
        manifest_dataset(csv_path)


def _mismatched(tmp_path: Path, mask: np.ndarray, mask_affine: np.ndarray) -> dict:
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 30.0]
    image_path, mask_path = tmp_path / "img.nii.gz", tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 12, 6), np.float32), affine), image_path)
    nib.save(nib.Nifti1Image(mask, mask_affine if mask_affine is not None else affine), mask_path)
    return {"image": str(image_path), "mask": str(mask_path), "patient_id": "p", "id": "img"}


@pytest.mark.parametrize("kind", ["shape", "affine", "origin"])
def test_a_mask_off_its_image_grid_is_one_line_naming_both_files(tmp_path, kind):
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 30.0]
    mask = np.zeros((10, 12, 6), np.uint8)
    if kind == "shape":
        mask = np.zeros((10, 12, 7), np.uint8)
    elif kind == "affine":
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        affine[:3, 3] = [-10.0, 5.0, 30.0]
    else:
        affine = affine.copy()
        affine[0, 3] += 1.0
    item = _mismatched(tmp_path, mask, affine)
    with pytest.raises(InputFileError) as exc:
        load_items([item], progress=False)
    message = _one_line_error(exc, item["image"], item["mask"])
    assert ("shape" if kind == "shape" else "affine") in message
    # the skip policy drops the case and names the mask
    loaded, skipped = load_items([item], policy="skip", progress=False)
    assert loaded == [] and skipped[0][0] == item["mask"]


def test_a_mask_on_the_same_grid_passes(tmp_path):
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 30.0]
    item = _mismatched(tmp_path, np.ones((10, 12, 6), np.uint8), affine + 1e-5)  # float noise only
    loaded, skipped = load_items([item], progress=False)
    assert not skipped and loaded[0]["mask"].shape == (1, 10, 12, 6)


def test_a_mask_is_read_as_a_uint8_label_map(tmp_path):
    # a quarter of float32: the mask of a 512x512x300 CT is 79 MB instead of 315 MB
    labels = np.zeros((10, 12, 6), np.float32)
    labels[2:5, 3:7, 1:3], labels[6, 6, 4] = 2.0, 1.0
    item = _mismatched(tmp_path, labels, None)
    mask = load_items([item], progress=False)[0][0]["mask"]
    assert mask.dtype == torch.uint8 and mask.shape == (1, 10, 12, 6)
    assert np.array_equal(mask[0].numpy(), labels.astype(np.uint8))
    assert mask.affine.shape == (4, 4)  # still an image with its geometry
    # values no label map holds are left as read, for the consumer to refuse
    item = _mismatched(tmp_path, labels * 200.0, None)
    assert load_items([item], progress=False)[0][0]["mask"].dtype == torch.float32


def _shape_of(case: dict) -> tuple:
    return tuple(case["image"].shape), int(case["mask"].sum())


@pytest.mark.parametrize("workers", [0, 2])
def test_lazy_items_map_reads_in_workers_in_order_under_the_bad_file_policy(tmp_path, workers):
    items = []
    for i in range(5):
        case = tmp_path / str(i)
        case.mkdir()
        items.append(_mismatched(case, (np.arange(10 * 12 * 6).reshape(10, 12, 6) < i * 7).astype(np.uint8), None))
    (tmp_path / "2" / "img.nii.gz").write_bytes(b"not a nifti")
    skip = LazyItems(items, DataConfig(bad_files="skip"))
    assert list(skip.map(_shape_of, workers)) == [((1, 10, 12, 6), 7 * i) for i in (0, 1, 3, 4)]
    with pytest.raises(InputFileError, match="2/img.nii.gz"):
        list(LazyItems(items, DataConfig(bad_files="fail")).map(_shape_of, workers))
