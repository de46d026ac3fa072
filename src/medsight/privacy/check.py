"""Refuse identifiable input: for data loaders and the service when ``require_deidentified`` is on.

The test is the one DICOM itself records: Patient Identity Removed (0012,0062) is ``YES``
after de-identification (PS3.15 E.1.1). Medsight's DICOM reader copies that attribute into
the image meta as ``"YES"``/``"NO"``/``""``, so a meta mapping (or an image carrying one in
``.meta``) is accepted as well as a pydicom dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from medsight.errors import InputFileError

NOT_DEIDENTIFIED = "not de-identified (PatientIdentityRemoved != YES); run `medsight deid` first"


def is_deidentified(ds_or_meta: Dataset | Mapping[str, Any] | Any) -> bool:
    """True when the dataset, meta mapping or image says PatientIdentityRemoved is YES."""
    if isinstance(ds_or_meta, (Dataset, Mapping)):
        value = ds_or_meta.get("PatientIdentityRemoved", "")
    elif isinstance(getattr(ds_or_meta, "meta", None), Mapping):  # e.g. a MONAI MetaTensor
        value = ds_or_meta.meta.get("PatientIdentityRemoved", "")
    else:
        raise TypeError(f"expected a pydicom Dataset or a meta mapping, not {type(ds_or_meta).__name__}")
    return str(value or "").strip().upper() == "YES"


def require_deidentified(ds_or_meta: Dataset | Mapping[str, Any] | Any, path: str | Path) -> None:
    """Raise :class:`InputFileError` for ``path`` unless its data is marked de-identified."""
    if not is_deidentified(ds_or_meta):
        raise InputFileError(path, NOT_DEIDENTIFIED)
