"""Fixtures for the de-identification tests: pydicom's bundled files, copied as a folder tree.

Every bundled file that ``dcmread`` loads is copied under its path inside pydicom's test
folder (so the DICOMDIR sets keep their layout), and the tree is de-identified once per key;
the tests then only read the results, which keeps the whole folder fast.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_files

from medsight.privacy.deid import DeidOptions, DeidReport, deidentify_tree

KEY_A = b"medsight-test-key-A-0123456789"
KEY_B = b"medsight-test-key-B-9876543210"
# Bundled files that load but are cut short: they must be reported, not de-identified.
TRUNCATED = {"MR_truncated.dcm", "rtplan_truncated.dcm"}


@dataclass(frozen=True)
class Run:
    src: Path
    out: Path
    report: DeidReport


def bundled_files() -> dict[str, Path]:
    """Relative path -> bundled file, for every bundled file that ``dcmread`` loads."""
    base = Path(pydicom.data.__file__).parent / "test_files"
    files: dict[str, Path] = {}
    for name in get_testdata_files():
        path = Path(name)
        if not path.is_file():
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dcmread(path)
        except Exception:  # noqa: BLE001 - "all that load"
            continue
        rel = path.relative_to(base) if base in path.parents else Path(path.name)
        files[rel.as_posix()] = path
    return files


def copy_tree(files: dict[str, Path], dst: Path) -> Path:
    for rel, path in files.items():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst / rel)
    return dst


def read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(path)


@pytest.fixture(scope="session")
def bundled() -> dict[str, Path]:
    files = bundled_files()
    assert len(files) > 50, "pydicom's bundled test files are missing"
    return files


@pytest.fixture(scope="session")
def identifiable_tree(bundled, tmp_path_factory) -> Path:
    """A folder tree of identifiable DICOM files (read-only for the tests)."""
    return copy_tree(bundled, tmp_path_factory.mktemp("identifiable") / "in")


def _run(src: Path, out: Path, key: bytes, **options) -> Run:
    return Run(src, out, deidentify_tree(src, out, DeidOptions(key=key, **options)))


@pytest.fixture(scope="session")
def run_a(identifiable_tree, tmp_path_factory) -> Run:
    return _run(identifiable_tree, tmp_path_factory.mktemp("deid") / "a", KEY_A)


@pytest.fixture(scope="session")
def run_a_again(identifiable_tree, tmp_path_factory) -> Run:
    return _run(identifiable_tree, tmp_path_factory.mktemp("deid") / "a2", KEY_A)


@pytest.fixture(scope="session")
def run_b(identifiable_tree, tmp_path_factory) -> Run:
    return _run(identifiable_tree, tmp_path_factory.mktemp("deid") / "b", KEY_B)


@pytest.fixture
def key_file(tmp_path) -> Path:
    path = tmp_path / "site.key"
    path.write_bytes(KEY_A + b"\n")
    return path
