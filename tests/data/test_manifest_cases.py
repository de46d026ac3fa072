"""Manifests with several images per case (``path_<name>``) and clinical columns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medsight.data.loading import load_items
from medsight.data.manifest import case_items, manifest_dataset
from medsight.errors import InputFileError

from .pngs import write_png

HEADER = "path,label,patient_id,split,path_t2,path_flair,age,sex"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for i in range(3):
        write_png(tmp_path / f"t1_{i}.png", 10 + i)
        write_png(tmp_path / f"t2_{i}.png", 100 + i)
        write_png(tmp_path / f"flair_{i}.png", 200 + i)
    return tmp_path


def manifest(folder: Path, rows: list[str], header: str = HEADER) -> Path:
    path = folder / "m.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def rows(n: int = 3, age: str = "50") -> list[str]:
    splits = ["train", "val", "test"]
    return [f"t1_{i}.png,{i % 2},p{i},{splits[i]},t2_{i}.png,flair_{i}.png,{age},F" for i in range(n)]


def channel_values(item) -> list[int]:
    [loaded], _ = load_items([item], progress=False)
    image = loaded["image"]
    return [int(image[c].max()) for c in range(image.shape[0])]


def test_path_columns_are_stacked_in_csv_order_after_path(folder: Path) -> None:
    data = manifest_dataset(manifest(folder, rows()))
    assert data.image_columns == ["path", "path_t2", "path_flair"]
    item = data.train[0]
    assert item["image"] == str(folder / "t1_0.png")
    assert item["extra_images"] == [str(folder / "t2_0.png"), str(folder / "flair_0.png")]
    assert channel_values(item) == [10, 100, 200]


def test_data_images_chooses_and_orders_the_channels(folder: Path) -> None:
    data = manifest_dataset(manifest(folder, rows()), images=["path", "path_flair"])
    assert data.image_columns == ["path", "path_flair"]
    assert channel_values(data.train[0]) == [10, 200]
    with pytest.raises(InputFileError, match=r"missing image column\(s\) path_dwi") as err:
        manifest_dataset(manifest(folder, rows()), images=["path", "path_dwi"])
    assert err.value.path.endswith("m.csv")


def test_an_empty_image_cell_names_the_line(folder: Path) -> None:
    broken = rows()
    broken[1] = broken[1].replace("t2_1.png", "")
    with pytest.raises(InputFileError, match="line 3: empty path_t2"):
        manifest_dataset(manifest(folder, broken))


def test_a_missing_sequence_file_is_one_error_naming_it_or_skipped(folder: Path) -> None:
    (folder / "flair_0.png").unlink()
    data = manifest_dataset(manifest(folder, rows()))
    with pytest.raises(InputFileError) as err:
        load_items(data.train, progress=False)
    assert err.value.path == str(folder / "flair_0.png")
    loaded, skipped = load_items(data.train + data.val, policy="skip", progress=False)
    assert len(loaded) == 1 and skipped[0][0] == str(folder / "flair_0.png")


def test_a_sequence_on_another_grid_is_an_error_naming_it(folder: Path) -> None:
    from PIL import Image

    Image.new("L", (9, 6)).save(folder / "t2_0.png")  # the others are 6x6
    data = manifest_dataset(manifest(folder, rows()))
    with pytest.raises(InputFileError, match="cannot be stacked with .*t1_0.png: its size 6x9") as err:
        load_items(data.train, progress=False)
    assert err.value.path == str(folder / "t2_0.png")


def test_clinical_columns_ride_with_the_items_and_may_be_empty(folder: Path) -> None:
    data = manifest_dataset(manifest(folder, rows(age="")), clinical=["age", "sex"])
    assert data.train[0]["clinical"] == {"age": "", "sex": "F"}
    [loaded], _ = load_items(data.train, progress=False)
    assert loaded["clinical"] == {"age": "", "sex": "F"} and loaded["image"].shape[0] == 3
    with pytest.raises(InputFileError, match=r"missing column\(s\) crp"):
        manifest_dataset(manifest(folder, rows()), clinical=["age", "crp"])


def test_a_single_image_manifest_is_unchanged(folder: Path) -> None:
    data = manifest_dataset(manifest(folder, [r.split(",path_t2")[0] for r in rows()], "path,label,patient_id,split"))
    assert data.image_columns == ["path"]
    assert "extra_images" not in data.train[0] and "clinical" not in data.train[0]
    [loaded], _ = load_items(data.train, progress=False)
    assert isinstance(loaded["image"], torch.Tensor) and loaded["image"].shape[0] == 1


def test_cases_to_predict_need_only_the_run_columns(folder: Path) -> None:
    path = manifest(folder, ["t1_0.png,t2_0.png,63,", "t1_1.png,t2_1.png,,M"], "path,path_t2,age,sex")
    items = case_items(path, ["path", "path_t2"], ["age", "sex"])
    assert [it["id"] for it in items] == ["t1_0.png", "t1_1.png"]
    assert items[1]["clinical"] == {"age": "", "sex": "M"} and items[1]["label"] == -1
    with pytest.raises(InputFileError, match=r"missing image column\(s\) path_flair"):
        case_items(path, ["path", "path_t2", "path_flair"])
