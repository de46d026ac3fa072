"""Fixtures for the io tests."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset

from .dicom_builders import CT_SMALL


@pytest.fixture
def ct_dataset() -> Dataset:
    """A fresh, modifiable copy of pydicom's CT_small.dcm."""
    return pydicom.dcmread(CT_SMALL)
