"""DICOM series folders: ordering by position, spacing, and the errors for broken series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medsight.errors import InputFileError
from medsight.io import read_image, spacing_of

from .dicom_builders import CT_SMALL, set_pixels, write_ct_series


def test_slices_are_sorted_along_an_oblique_normal(tmp_path: Path) -> None:
    offsets = [5.0, -2.5, 0.0, 7.5, 2.5]
    normal = write_ct_series(tmp_path / "series", offsets)
    (tmp_path / "series" / "notes.txt").write_text("not an image")  # ignored
    image = read_image(tmp_path / "series")

    assert image.shape == (1, 5, 128, 128)
    assert image.meta["format"] == "dicom-series"
    # Markers were 100 * rank along the normal; stored values get the CT intercept of -1024.
    assert image[0, :, 0, 0].tolist() == [100.0 * k - 1024 for k in range(5)]
    pixel_spacing = [float(v) for v in pydicom.dcmread(CT_SMALL).PixelSpacing]
    assert image.meta["spacing"] == pytest.approx((2.5, *pixel_spacing))
    assert spacing_of(image) == pytest.approx(image.meta["spacing"])
    # The slice axis of the RAS affine is the LPS normal (x, y negated) times the spacing.
    assert image.affine[:3, 0].tolist() == pytest.approx(
        (np.array([-1, -1, 1]) * normal * 2.5).tolist()
    )
    assert len(image.meta["SOPInstanceUID"]) == 5


def test_series_in_subfolders_is_found(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "study" / "a", [0.0, 3.0], series_uid="1.2.3.4")
    write_ct_series(tmp_path / "study" / "b", [6.0, 9.0], series_uid="1.2.3.4", rng_seed=1)
    image = read_image(tmp_path / "study")
    assert image.shape == (1, 4, 128, 128)
    assert image.meta["spacing"][0] == pytest.approx(3.0)


def test_mixed_series_is_rejected(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "mixed" / "one", [0.0, 2.0, 4.0])
    write_ct_series(tmp_path / "mixed" / "two", [0.0, 2.0])
    with pytest.raises(InputFileError, match="mixed series: 2 SeriesInstanceUIDs") as info:
        read_image(tmp_path / "mixed")
    assert "single series" in str(info.value)
    assert str(tmp_path / "mixed") in str(info.value)


def test_gap_is_an_incomplete_series(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "gap", [0.0, 2.0, 4.0, 8.0, 10.0])
    with pytest.raises(InputFileError, match=r"incomplete series: missing slice\(s\) between z="):
        read_image(tmp_path / "gap")


def test_duplicate_positions_are_rejected(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "dup", [0.0, 2.0, 2.0, 4.0])
    with pytest.raises(InputFileError, match="duplicate slice position"):
        read_image(tmp_path / "dup")


def test_inconsistent_slice_sizes_are_rejected(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "sizes", [0.0, 2.0, 4.0])
    path = sorted((tmp_path / "sizes").iterdir())[0]
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array[:64, :64].copy()
    ds.Rows = ds.Columns = 64
    set_pixels(ds, pixels)
    ds.save_as(path)
    with pytest.raises(InputFileError, match="inconsistent slice sizes"):
        read_image(tmp_path / "sizes")


def test_folder_without_dicom_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(InputFileError, match="no DICOM image files"):
        read_image(tmp_path)
