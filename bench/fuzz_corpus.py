"""The fuzz corpus for ``bench/fuzz.py``: structured mutations of real files, one case per index.

``build_case(seed, index, folder)`` writes case ``index`` of the corpus ``seed`` under
``folder`` and returns it; the same (seed, index) always gives the same bytes, so any case can
be rebuilt from the table's examples (``python bench/fuzz.py --show SEED:INDEX``). Seeds are
real files: pydicom's bundled DICOM (CT, MR, RLE, JPEG, JPEG 2000, JPEG-LS, deflated, RT dose,
big endian, no meta) and NIfTI / PNG / JPEG / TIFF / npz written here by nibabel, Pillow and
NumPy. The families mutate them where readers are fragile: truncation at every section
boundary, flipped header bytes, wrong VRs and lengths, absurd image attributes, compressed
transfer syntaxes over native data, lying NIfTI / PNG / npy headers and decompression bombs,
NaN / Inf volumes, empty files, folders of non-images and series gone wrong, symlink loops,
pipes and devices.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from fuzz_mutations import FILE_FAMILIES, dicom_absurd_attributes, empty_or_magic, flip_header, garbage, truncate
from fuzz_seeds import DICOM_DIR, write_dicom


@dataclass(frozen=True)
class Case:
    """One fuzz case: where it was written and how it was made (family, then details)."""

    index: int
    family: str
    detail: str
    path: Path


# -- folders and special files -----------------------------------------------------------------


def _series_slice(ds: Dataset, z: float, series: str, size: int | None = None) -> bytes:
    ds = ds.copy()
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series, str(z)])
    if size is not None:
        ds.Rows = size
    return write_dicom(ds)


def folder_case(rng: random.Random, path: Path) -> str:
    """A folder: non-images only, a series gone wrong, or nothing at all."""
    path.mkdir()
    kind = rng.choice(("non-images", "non-images", "series-gap", "series-duplicate", "mixed-series",
                       "series-bad-slice", "series-sizes", "empty", "nested-junk", "symlink-loop"))
    if kind in ("non-images", "nested-junk"):
        folder = path / "a" / "b" if kind == "nested-junk" else path
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(rng.choice((1, 3, 12))):
            _, data = rng.choice((garbage, empty_or_magic))(rng)
            (folder / f"file{i}{rng.choice(('.dcm', '.png', '', '.txt', '.nii'))}").write_bytes(data)
        return kind
    if kind == "empty":
        return kind
    if kind == "symlink-loop":
        (path / "loop").symlink_to(path)
        (path / "self").symlink_to(path / "self")
        (path / "notes.txt").write_text("nothing here")
        return kind
    base = pydicom.dcmread(DICOM_DIR / "CT_small.dcm")
    series = generate_uid(entropy_srcs=[str(rng.random())])
    zs = [2.5 * i for i in range(rng.choice((3, 5, 8)))]
    if kind == "series-gap":
        del zs[len(zs) // 2]
    if kind == "series-duplicate":
        zs.append(zs[0])
    for i, z in enumerate(zs):
        (path / f"s{i:03d}.dcm").write_bytes(_series_slice(base, z, series))
    if kind == "mixed-series":
        (path / "other.dcm").write_bytes(_series_slice(base, 100.0, generate_uid(entropy_srcs=["other"])))
    if kind == "series-sizes":
        (path / "odd.dcm").write_bytes(_series_slice(base, 99.0, series, size=rng.choice((32, 65535))))
    if kind == "series-bad-slice":
        victim = path / "s000.dcm"
        _, data = rng.choice((truncate, flip_header, dicom_absurd_attributes))(rng)
        victim.write_bytes(data)
    return kind


def special_case(rng: random.Random, path: Path) -> str:
    """Symlink loops, dangling links, pipes and endless devices."""
    kind = rng.choice(("self-loop", "pair-loop", "dangling", "fifo", "dev-zero", "dev-urandom", "dir-named-dcm"))
    if kind == "self-loop":
        path.symlink_to(path)
    elif kind == "pair-loop":
        other = path.with_name(path.name + ".other")
        path.symlink_to(other)
        other.symlink_to(path)
    elif kind == "dangling":
        path.symlink_to(path.with_name("missing-target.dcm"))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dev-urandom":
        path.symlink_to("/dev/urandom")
    else:
        path.mkdir()
    return kind


# Weights out of the file families' total (~100): folders and specials are slower to run.
OTHER_FAMILIES = {"folder": (6, folder_case), "special": (3, special_case)}


def _draw_family(seed: int, index: int) -> tuple[random.Random, str]:
    rng = random.Random(f"medsight-fuzz:{seed}:{index}")
    weights = {**{k: w for k, (w, _) in FILE_FAMILIES.items()}, **{k: w for k, (w, _) in OTHER_FAMILIES.items()}}
    names = sorted(weights)
    return rng, rng.choices(names, weights=[weights[k] for k in names])[0]


def family_of(seed: int, index: int) -> str:
    """The family case ``index`` of corpus ``seed`` belongs to, without building it."""
    return _draw_family(seed, index)[1]


def build_case(seed: int, index: int, folder: Path) -> Case:
    """Write case ``index`` of corpus ``seed`` into ``folder`` (which must exist)."""
    rng, family = _draw_family(seed, index)
    suffix = rng.choice(("", ".dcm", ".nii", ".nii.gz", ".png", ".npz", ".jpg", ".tif", ".dat"))
    path = folder / f"case{index:06d}{suffix}"
    if family in OTHER_FAMILIES:
        detail = OTHER_FAMILIES[family][1](rng, path)
    else:
        for _ in range(5):  # a mutation pydicom refuses to write is drawn again
            try:
                detail, data = FILE_FAMILIES[family][1](rng)
                break
            except Exception:  # noqa: BLE001 - the generator's problem, not the reader's
                continue
        else:
            family, (detail, data) = "garbage", garbage(rng)
        path.write_bytes(data)
    return Case(index, family, detail, path)
