"""Class-per-folder data sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsight.data.folder import folder_dataset
from medsight.errors import InputFileError

from .pngs import write_png


def test_class_folders_and_generated_split(tmp_path: Path) -> None:
    for i in range(6):
        write_png(tmp_path / "normal" / f"n{i}.png")
        write_png(tmp_path / "pneumonia" / f"p{i}.png")
    (tmp_path / "normal" / ".DS_Store").write_bytes(b"\0")
    data = folder_dataset(tmp_path, seed=0)
    assert data.class_names == ["normal", "pneumonia"]
    everything = data.train + data.val + data.test
    assert len(everything) == 12 and data.val and data.test
    item = next(i for i in everything if i["id"] == "pneumonia/p3.png")
    assert item["label"] == 1 and item["image"] == str(tmp_path / "pneumonia" / "p3.png")
    assert item["patient_id"] == "pneumonia/p3.png"  # default: every file is its own patient


def test_prefix_keeps_a_patients_files_together(tmp_path: Path) -> None:
    for patient in range(8):
        for side in ("left", "right"):
            write_png(tmp_path / ("a" if patient % 2 else "b") / f"pt{patient}_{side}.png")
    data = folder_dataset(tmp_path, patient_from="prefix", seed=2)
    for name in ("train", "val", "test"):
        patients = [item["patient_id"] for item in data.split(name)]
        assert all(patients.count(p) == 2 for p in patients)


def test_split_folders_are_used(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "cat" / "1.png")
    write_png(tmp_path / "train" / "dog" / "2.png")
    write_png(tmp_path / "val" / "dog" / "3.png")
    write_png(tmp_path / "test" / "cat" / "4.png")
    data = folder_dataset(tmp_path)
    assert data.class_names == ["cat", "dog"]
    assert [item["id"] for item in data.train] == ["train/cat/1.png", "train/dog/2.png"]
    assert data.val[0]["label"] == 1 and data.test[0]["label"] == 0


def test_split_folders_with_a_shared_patient_are_a_leak(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "cat" / "p1_a.png")
    write_png(tmp_path / "test" / "cat" / "p1_b.png")
    with pytest.raises(InputFileError, match="1 patient\\(s\\) appear in more than one split"):
        folder_dataset(tmp_path, patient_from="prefix")


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        folder_dataset(tmp_path / "nowhere")
    write_png(tmp_path / "loose.png")
    with pytest.raises(InputFileError, match="one sub-folder per class"):
        folder_dataset(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(InputFileError, match="no image files"):
        folder_dataset(tmp_path)
    write_png(tmp_path / "train" / "x" / "1.png")
    with pytest.raises(InputFileError, match="mixes split folders"):
        folder_dataset(tmp_path)
