"""Every unusable input is an InputFileError: one line, naming the file and the problem."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medsight.errors import InputFileError
from medsight.io import read_image

from .dicom_builders import CT_SMALL


def truncated_dicom(path: Path) -> None:
    path.write_bytes(Path(CT_SMALL).read_bytes()[:1000])


def text_file(path: Path) -> None:
    path.write_text("patient,label\nA,1\n" * 20)


def empty_file(path: Path) -> None:
    path.write_bytes(b"")


def nan_nifti(path: Path) -> None:
    data = np.ones((4, 4, 4), dtype=np.float32)
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)


def inf_nifti(path: Path) -> None:
    # float64 beyond float32's range only overflows when cast, which must also be caught.
    nib.save(nib.Nifti1Image(np.full((3, 3, 3), 1e300), np.eye(4)), path)


def one_d_nifti(path: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones(10, dtype=np.float32), np.eye(4)), path)


def four_d_npz(path: Path) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, image=np.zeros((2, 3, 4, 5)))


def one_d_npz(path: Path) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, image=np.zeros(7))


def truncated_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])


def truncated_nifti_gz(path: Path) -> None:
    noise = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)  # incompressible
    nib.save(nib.Nifti1Image(noise, np.eye(4)), path)
    path.write_bytes(path.read_bytes()[:1000])


def gzip_text(path: Path) -> None:
    path.write_bytes(gzip.compress(b"just some notes" * 40))


CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("cut.dcm", truncated_dicom, "truncated DICOM"),
    ("notes.dcm", text_file, "not an image file (unrecognised content)"),
    ("empty.png", empty_file, "empty file"),
    ("nan.nii", nan_nifti, "contains NaN values"),
    ("inf.nii", inf_nifti, "contains infinite values"),
    ("line.nii", one_d_nifti, "expected a 2D or 3D image, got shape (10,)"),
    ("4d.npz", four_d_npz, "expected a 2D or 3D image, got shape (2, 3, 4, 5)"),
    ("1d.npz", one_d_npz, "expected a 2D or 3D image, got shape (7,)"),
    ("cut.png", truncated_png, "truncated"),
    ("cut.nii.gz", truncated_nifti_gz, "NIfTI"),
    ("notes.gz", gzip_text, "does not contain a NIfTI image"),
]


@pytest.mark.parametrize(("name", "make", "problem"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_specific_line(
    tmp_path: Path, name: str, make: Callable[[Path], None], problem: str
) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(InputFileError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert problem in info.value.problem
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        read_image(tmp_path / "absent.nii.gz")
