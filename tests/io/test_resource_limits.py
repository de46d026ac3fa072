"""Resource bombs are refused from their headers, before memory is allocated; special files and
unforeseen reader failures are one-line errors naming the file."""

from __future__ import annotations

import gzip
import io
import os
import signal
import struct
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medsight.errors import InputFileError
from medsight.io import limits, read_image

from .dicom_builders import CT_SMALL

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the damaged values


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any reader gets as far as decoding pixels."""

    def forbidden(*args, **kwargs):
        raise AssertionError("pixels were decoded: the size check came too late")

    monkeypatch.setattr(Dataset, "convert_pixel_data", forbidden)
    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", forbidden)
    monkeypatch.setattr(np.lib.format, "read_array", forbidden)


def refusal(path: Path) -> str:
    with pytest.raises(InputFileError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return info.value.problem


def test_dicom_frames_bomb_refused_before_decoding(tmp_path, ct_dataset, no_decoding):
    ct_dataset.NumberOfFrames = 10**9  # 128 x 128 x 10^9 values in a 39 KB file
    ct_dataset.save_as(tmp_path / "bomb.dcm")
    problem = refusal(tmp_path / "bomb.dcm")
    assert problem.startswith("image too large: the header claims 1000000000 x 128 x 128 x 1")
    assert "medsight.io.limits.MAX_VOXELS" in problem


def test_limit_is_overridable(tmp_path, monkeypatch):
    path = Path(CT_SMALL)
    assert read_image(path).shape == (1, 128, 128)
    monkeypatch.setattr(limits, "MAX_VOXELS", 128 * 128 - 1)
    assert "too large" in refusal(path)


def test_non_numeric_image_size_attributes(tmp_path, ct_dataset):
    ct_dataset.NumberOfFrames = "777777"
    ct_dataset.save_as(tmp_path / "frames.dcm")
    data = (tmp_path / "frames.dcm").read_bytes()
    (tmp_path / "frames.dcm").write_bytes(data.replace(b"777777", b"x7x7x7"))  # pydicom won't write it
    assert refusal(tmp_path / "frames.dcm").startswith("invalid image size attributes")


def test_deflate_bomb_refused_while_inflating(tmp_path, ct_dataset, monkeypatch):
    monkeypatch.setattr(limits, "MAX_VOXELS", 10_000)  # 20 KB inflated at most
    ct_dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ct_dataset.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    assert "inflates to over 20,000 bytes" in refusal(tmp_path / "deflated.dcm")


def test_unknown_transfer_syntax_uid(tmp_path):
    # One flipped byte in the transfer syntax UID: "1.2.840.10008.1.2.1" -> "1.2o840..."
    data = bytearray(Path(CT_SMALL).read_bytes())
    at = data.find(b"1.2.840.10008.1.2.1\x00")
    data[at + 3] = ord("o")
    (tmp_path / "flip.dcm").write_bytes(bytes(data))
    assert refusal(tmp_path / "flip.dcm").startswith("unknown transfer syntax UID '1.2o840.10008.1.2.1'")


def nifti_claiming(path: Path, dims: tuple[int, int, int], gz: bool) -> None:
    raw = bytearray(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)).to_bytes())
    struct.pack_into("<hhh", raw, 42, *dims)
    path.write_bytes(gzip.compress(bytes(raw)) if gz else bytes(raw))


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz", "renamed-gz"])
def test_nifti_claiming_trillions_of_voxels(tmp_path, name, no_decoding):
    nifti_claiming(tmp_path / name, (32767, 32767, 32767), gz=name != "huge.nii")
    assert "too large" in refusal(tmp_path / name)


def test_nifti_negative_dimension(tmp_path):
    nifti_claiming(tmp_path / "neg.nii", (4, -4, 4), gz=False)
    problem = refusal(tmp_path / "neg.nii")
    assert "invalid image dimensions" in problem or "unreadable NIfTI" in problem


def png_claiming(path: Path, width: int, height: int) -> None:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_png_bomb_refused_from_its_header(tmp_path, monkeypatch):
    png_claiming(tmp_path / "bomb.png", 100_000, 100_000)
    assert "too large" in refusal(tmp_path / "bomb.png")
    # Under PIL's own bomb limit but over medsight's: still refused before decoding.
    monkeypatch.setattr(limits, "MAX_VOXELS", 1000)
    png_claiming(tmp_path / "small-bomb.png", 100, 100)
    assert refusal(tmp_path / "small-bomb.png").startswith("image too large: the header claims 100 x 100 x 1")


def npy_claiming(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((32, 32), np.float32))
    return buffer.getvalue().replace(b"(32, 32)", str(shape).encode().ljust(8))


def test_npy_header_claiming_more_than_stored(tmp_path, no_decoding):
    (tmp_path / "lie.npy").write_bytes(npy_claiming((10**6, 10**6)))
    problem = refusal(tmp_path / "lie.npy")
    assert "header claims shape (1000000, 1000000) of float32 (4,000,000,000,000 bytes)" in problem


def test_npz_member_claiming_an_impossible_size(tmp_path, no_decoding):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, image=np.zeros((64, 64), np.float32))
    data = bytearray(buffer.getvalue())
    struct.pack_into("<I", data, data.rfind(b"PK\x01\x02") + 24, 2**32 - 1)  # central directory size
    (tmp_path / "bomb.npz").write_bytes(bytes(data))
    assert "zip bomb" in refusal(tmp_path / "bomb.npz")


def test_npz_lying_header_inside_archive(tmp_path, no_decoding):
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as archive:
        archive.writestr("image.npy", npy_claiming((2**40,)))
    assert "header claims shape (1099511627776,)" in refusal(tmp_path / "lie.npz")


@pytest.fixture
def alarm():
    """Fail instead of hanging forever if a read blocks."""
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the read blocked"))
    signal.alarm(20)
    yield
    signal.alarm(0)


def test_pipe_is_refused_without_blocking(tmp_path, alarm):
    os.mkfifo(tmp_path / "pipe.dcm")
    assert refusal(tmp_path / "pipe.dcm") == "not a regular file (a device, pipe or socket)"


def test_endless_device_is_refused(tmp_path, alarm):
    (tmp_path / "zero.dcm").symlink_to("/dev/zero")
    assert refusal(tmp_path / "zero.dcm") == "not a regular file (a device, pipe or socket)"


def test_symlink_loop(tmp_path, alarm):
    (tmp_path / "loop.dcm").symlink_to(tmp_path / "loop.dcm")
    assert refusal(tmp_path / "loop.dcm").startswith("cannot open file: Too many levels of symbolic links")


def test_series_folder_with_symlink_loop_and_junk(tmp_path, alarm):
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "up").symlink_to(tmp_path / "series")
    (tmp_path / "series" / "notes.txt").write_text("no images here")
    assert refusal(tmp_path / "series") == "no DICOM image files found in the folder"


def test_unforeseen_reader_failure_is_one_line_naming_the_file(tmp_path, monkeypatch):
    def broken(path):
        raise KeyError("some library internals\nsecond line")

    monkeypatch.setattr("medsight.io.read.read_dicom", broken)
    problem = refusal(Path(CT_SMALL))
    assert problem.startswith("unreadable file (unexpected KeyError:")
    with pytest.raises(InputFileError) as info:
        read_image(CT_SMALL)
    assert isinstance(info.value.__cause__, KeyError)  # kept for --debug


def test_element_whose_bytes_do_not_fit_its_vr_is_named_by_tag_not_value(tmp_path):
    # PixelSpacing's text "0.661468\0.661468 " re-labelled as UL: pydicom cannot decode it.
    data = bytearray(Path(CT_SMALL).read_bytes())
    at = data.find(b"\x28\x00\x30\x00DS")
    data[at + 4:at + 6] = b"UL"
    (tmp_path / "vr.dcm").write_bytes(bytes(data))
    problem = refusal(tmp_path / "vr.dcm")
    assert problem == "corrupt DICOM element (0028,0030): its value does not fit its value representation"


def test_nibabel_header_fixes_go_to_logging_not_the_terminal(tmp_path, capfd, caplog):
    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    raw = bytearray(image.to_bytes())
    struct.pack_into("<f", raw, 80, 0.0)  # pixdim[1] = 0: nibabel fixes it and says so
    (tmp_path / "zero.nii").write_bytes(bytes(raw))
    with caplog.at_level("WARNING"):
        read_image(tmp_path / "zero.nii")
    assert capfd.readouterr().err == ""
    assert "pixdim" in caplog.text  # routed to logging (the CLI shows it with --verbose)
