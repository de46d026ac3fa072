"""NIfTI, raster and NumPy readers, content sniffing, and the writers."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medsight.errors import InputFileError
from medsight.io import make_image, read_image, spacing_of
from medsight.io.npz import read_npz_arrays
from medsight.io.write import write_nifti, write_png


def save_nifti(path: Path, data: np.ndarray, zooms: tuple[float, ...]) -> np.ndarray:
    affine = np.diag([*zooms[:3], *([1.0] * (3 - len(zooms[:3]))), 1.0])
    affine[:3, 3] = [5.0, -3.0, 1.0]
    image = nib.Nifti1Image(data, affine)
    image.header.set_zooms(zooms)
    nib.save(image, path)
    return affine


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
def test_nifti_3d_keeps_spacing_and_affine(tmp_path: Path, name: str) -> None:
    data = np.random.default_rng(0).random((6, 7, 4)).astype(np.float32)
    affine = save_nifti(tmp_path / name, data, (0.5, 0.7, 2.0))
    image = read_image(tmp_path / name)
    assert image.shape == (1, 6, 7, 4)
    assert image.meta["spacing"] == pytest.approx((0.5, 0.7, 2.0))
    assert image.meta["format"] == "nifti"
    assert np.allclose(image.affine.numpy(), affine)
    assert np.allclose(image[0].numpy(), data)


def test_nifti_2d_saved_with_a_singleton_axis_comes_back_2d(tmp_path: Path) -> None:
    data = np.arange(20, dtype=np.int16).reshape(4, 5, 1)
    save_nifti(tmp_path / "slice.nii.gz", data, (0.8, 0.9, 3.0))
    image = read_image(tmp_path / "slice.nii.gz")
    assert image.shape == (1, 4, 5)
    assert image.meta["spacing"] == pytest.approx((0.8, 0.9))


def test_nifti_4th_axis_is_channels(tmp_path: Path) -> None:
    data = np.zeros((4, 5, 6, 2), dtype=np.float32)
    data[..., 1] = 1.0
    save_nifti(tmp_path / "multi.nii", data, (1.0, 1.0, 1.0, 1.0))
    image = read_image(tmp_path / "multi.nii")
    assert image.shape == (2, 4, 5, 6)
    assert image[1].min() == 1.0 and image[0].max() == 0.0


def test_png_grey_16bit_and_rgb(tmp_path: Path) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "grey.png")
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (1, 3, 4) and image.meta["modality"] == "OT"
    assert np.array_equal(image[0].numpy(), grey)  # 0..255 kept, not normalised

    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png").max() == 55000

    rgba = np.zeros((3, 4, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[..., 3] = 7
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image.shape == (3, 3, 4)  # alpha dropped
    assert image[:, 0, 0].tolist() == [200, 100, 50]


def test_jpeg_tiff_and_bmp(tmp_path: Path) -> None:
    rgb = np.full((8, 9, 3), 128, dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95)
    assert read_image(tmp_path / "photo.jpg").shape == (3, 8, 9)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "scan.bmp")
    assert read_image(tmp_path / "scan.bmp").shape == (1, 8, 9)
    pages = [Image.fromarray(np.full((8, 9), i, dtype=np.uint8)) for i in range(3)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    stack = read_image(tmp_path / "stack.tif")
    assert stack.shape == (1, 3, 8, 9) and stack[0, :, 0, 0].tolist() == [0, 1, 2]


def test_format_is_decided_by_content(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((3, 4), dtype=np.uint8)).save(tmp_path / "fake.dcm", format="PNG")
    assert read_image(tmp_path / "fake.dcm").meta["format"] == "raster"
    save_nifti(tmp_path / "vol.nii.gz", np.ones((3, 4, 5), dtype=np.float32), (1.0, 1.0, 2.0))
    (tmp_path / "vol.nii.gz").rename(tmp_path / "export.dat")
    image = read_image(tmp_path / "export.dat")
    assert image.meta["format"] == "nifti" and image.meta["spacing"] == (1.0, 1.0, 2.0)
    nib.save(nib.Nifti2Image(np.ones((3, 4), dtype=np.float32), np.eye(4)), tmp_path / "v2.nii")
    (tmp_path / "v2.nii").rename(tmp_path / "v2")
    assert read_image(tmp_path / "v2").shape == (1, 3, 4)


def test_nifti_pair_is_read(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Pair(np.ones((3, 4, 5), dtype=np.float32), np.eye(4)), tmp_path / "p.img")
    assert read_image(tmp_path / "p.hdr").shape == (1, 3, 4, 5)


def test_npz_single_image_and_spacing(tmp_path: Path) -> None:
    volume = np.ones((3, 4, 5), dtype=np.float32)
    np.savez(tmp_path / "one.npz", image=volume, spacing=np.array([2.0, 1.0, 1.0]))
    image = read_image(tmp_path / "one.npz")
    assert image.shape == (1, 3, 4, 5) and image.meta["spacing"] == (2.0, 1.0, 1.0)
    np.save(tmp_path / "plain.npy", np.zeros((4, 5)))
    assert read_image(tmp_path / "plain.npy").shape == (1, 4, 5)


def medmnist_arrays(n: int = 4) -> dict[str, np.ndarray]:
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = np.zeros((n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.arange(n, dtype=np.int64)[:, None] % 2
    return arrays


def test_medmnist_archive_is_a_dataset_not_an_image(tmp_path: Path) -> None:
    np.savez(tmp_path / "pneumoniamnist.npz", **medmnist_arrays())
    arrays = read_npz_arrays(tmp_path / "pneumoniamnist.npz")
    assert arrays["train_images"].shape == (4, 28, 28)
    with pytest.raises(InputFileError, match=r"use it as a data set \(data.dataset: medmnist\)"):
        read_image(tmp_path / "pneumoniamnist.npz")


def test_broken_medmnist_archives_are_named(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    del arrays["val_labels"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(InputFileError, match="missing val_labels"):
        read_npz_arrays(tmp_path / "missing.npz")
    arrays = medmnist_arrays()
    arrays["test_labels"] = arrays["test_labels"][:2]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(InputFileError, match="does not match 4 test images"):
        read_npz_arrays(tmp_path / "short.npz")


def test_write_nifti_round_trip(tmp_path: Path) -> None:
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    affine[:3, 3] = [1.0, 2.0, 3.0]
    image = make_image(np.random.default_rng(0).random((2, 4, 5, 6)), affine=affine)
    write_nifti(image, tmp_path / "out.nii.gz")
    back = read_image(tmp_path / "out.nii.gz")
    assert torch.allclose(back, image)
    assert np.allclose(back.affine.numpy(), affine)
    assert spacing_of(back) == pytest.approx((0.5, 0.7, 2.0))
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic temporary is gone

    flat = make_image(np.ones((3, 4, 5)))
    write_nifti(flat, tmp_path / "flat.nii")
    assert read_image(tmp_path / "flat.nii").shape == (3, 4, 5)


def test_write_png_round_trip(tmp_path: Path) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(1, 3, 4)
    write_png(grey, tmp_path / "grey.png")
    assert np.array_equal(read_image(tmp_path / "grey.png").numpy(), grey)
    write_png(torch.linspace(0, 1, 3 * 2 * 5).reshape(3, 2, 5), tmp_path / "rgb.png")
    rgb = read_image(tmp_path / "rgb.png")
    assert rgb.shape == (3, 2, 5) and rgb.min() == 0 and rgb.max() == 255
    write_png(np.full((2, 2), 300.0), tmp_path / "clip.png", window=(0, 255))
    assert read_image(tmp_path / "clip.png").max() == 255
