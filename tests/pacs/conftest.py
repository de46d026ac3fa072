"""A real Orthanc PACS for the DICOMweb tests (``tests/pacs/orthanc.py`` starts it), and studies on it."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.pacs.orthanc import MISSING, Pacs, orthanc_installed, start_orthanc
from tests.service.conftest import served  # noqa: F401 (the served classifier)


@contextmanager
def orthanc_server(folder: Path, dicom: bool = False) -> Iterator[Pacs]:
    """:func:`tests.pacs.orthanc.start_orthanc`, skipping the test when Orthanc is not installed."""
    if not orthanc_installed():
        pytest.skip(MISSING)
    with start_orthanc(folder, dicom) as pacs:
        yield pacs


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Iterator[Pacs]:
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as pacs:
        yield pacs


@pytest.fixture(scope="session")
def uploaded(orthanc) -> dict[str, pydicom.Dataset]:
    """pydicom's CT_small and MR_small, stored on the PACS (STOW-RS) once per session."""
    from medsight.pacs import connect, store

    datasets = {name: pydicom.dcmread(get_testdata_file(f"{name}_small.dcm")) for name in ("CT", "MR")}
    store(connect(orthanc.url, orthanc.user, orthanc.password), list(datasets.values()))
    return datasets


@pytest.fixture(scope="session")
def trained_run(trained_run, tmp_path_factory):
    """The shared classifier without its input guard: these tests are about the PACS exchange,
    and pydicom's real CT and MR studies they send are foreign to a synthetic-CT model (the
    guard refuses them; tests/inference/test_guard.py tests that)."""
    from medsight.inference.guard import PROFILE_FILE

    run = tmp_path_factory.mktemp("pacs-run") / "run"
    shutil.copytree(trained_run, run)
    (run / PROFILE_FILE).unlink(missing_ok=True)
    return run
