"""A tiny classifier trained through the Python API, shared by the API tests (read-only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_config
from tests.inference.files import write_slice_files


def api_tiny_config():
    """About 10 s on 2 busy cores: 48 training slices, a narrow net (the epochs come as an override)."""
    return tiny_config(data={"synthetic": {"n_train": 48, "n_val": 16, "n_test": 16, "size": 64}},
                       model={"options": {"width": 8}}, train={"batch_size": 16, "epochs": 5})


@pytest.fixture(scope="session")
def api_run(tmp_path_factory):
    import medsight

    return medsight.train(api_tiny_config(), overrides=["train.epochs=2"], out=tmp_path_factory.mktemp("api") / "run")


@pytest.fixture(scope="session")
def slice_files(tmp_path_factory) -> dict[str, Path]:
    """One synthetic CT slice with a nodule as DICOM, NIfTI and PNG."""
    return write_slice_files(tmp_path_factory.mktemp("api-slice"))
