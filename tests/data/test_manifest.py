"""Manifest CSV data sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsight.data.manifest import manifest_dataset
from medsight.errors import InputFileError

from .pngs import write_png


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    for i in range(12):
        write_png(tmp_path / "imgs" / f"{i}.png", i)
    return tmp_path


def test_string_labels_relative_paths_and_patient_split(images: Path) -> None:
    rows = "\n".join(
        f"imgs/{i}.png,{'pneumonia' if i % 3 == 0 else 'normal'},patient{i // 2}" for i in range(12)
    )
    csv_path = write_csv(images / "manifest.csv", "path,label,patient_id\n" + rows)
    data = manifest_dataset(csv_path, seed=1)
    assert data.class_names == ["normal", "pneumonia"]
    everything = data.train + data.val + data.test
    assert len(everything) == 12 and data.train and data.val and data.test
    first = next(item for item in everything if item["id"] == "imgs/0.png")
    assert first["image"] == str(images / "imgs" / "0.png")
    assert first["label"] == 1 and first["patient_id"] == "patient0"
    splits = ("train", "val", "test")
    split_of = {item["patient_id"]: name for name in splits for item in data.split(name)}
    for name in splits:
        assert all(split_of[item["patient_id"]] == name for item in data.split(name))
    assert manifest_dataset(csv_path, seed=1) == data


def test_split_column_is_used_and_integer_labels_kept(images: Path) -> None:
    csv_path = write_csv(
        images / "m.csv",
        """
path,label,patient_id,split
imgs/0.png,0,a,train
imgs/1.png,2,a,Train
imgs/2.png,1,b,val

imgs/3.png,0,c,test
""",
    )
    data = manifest_dataset(csv_path)
    assert [len(data.train), len(data.val), len(data.test)] == [2, 1, 1]
    assert data.class_names == ["0", "1", "2"]
    assert data.train[1]["label"] == 2


def test_patient_in_two_splits_is_a_leak(images: Path) -> None:
    csv_path = write_csv(
        images / "leak.csv",
        "path,label,patient_id,split\nimgs/0.png,0,SECRET-ID,train\nimgs/1.png,1,SECRET-ID,test",
    )
    with pytest.raises(InputFileError, match=r"1 patient\(s\) appear in more than one split") as info:
        manifest_dataset(csv_path)
    assert "SECRET-ID" not in str(info.value)  # patient IDs are never printed
    assert str(csv_path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty manifest CSV"),
        ("path,label,patient_id", "header but no rows"),
        ("path,patient\nimgs/0.png,a", "missing column(s) label, patient_id"),
        ("path,label,patient_id,split\nimgs/0.png,0,a,holdout", "unknown split 'holdout'"),
        ("path,label,patient_id\nimgs/0.png,,a", "line 2: empty label"),
    ],
)
def test_bad_manifests_name_the_problem(images: Path, text: str, problem: str) -> None:
    csv_path = images / "bad.csv"
    csv_path.write_text(text, encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        manifest_dataset(csv_path)
    assert info.value.path == str(csv_path)
    assert problem in info.value.problem
