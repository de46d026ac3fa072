"""A last sweep for identifiers copied into attributes the profile keeps.

The Annex E table handles attributes by meaning, but identifying text is often repeated in
kept free text: an institution name that is also the Manufacturer, a patient name typed into
a description. Values of the identifying attributes are collected before de-identification,
and any kept text element that still contains one (ignoring case) is replaced by a dummy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from medsight.privacy.transform import vr_of

# Attributes whose values identify a patient or site when they turn up elsewhere.
IDENTIFYING = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientAddress", "PatientBirthDate", "PatientTelephoneNumbers",
    "MedicalRecordLocator", "AccessionNumber", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "ReferringPhysicianName", "ReferringPhysicianAddress",
    "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "RequestingPhysician", "StationName",
)
# Free-text VRs; coded strings (CS) and numbers cannot hide a name and are left alone.
_TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
MIN_LENGTH = 3  # shorter values ("M", "1") would match everywhere and protect nothing
DUMMY = "ANONYMIZED"


def collect(ds: Dataset) -> set[str]:
    """The identifying values in ``ds`` and its sequences, case-folded."""
    found: set[str] = set()
    for elem in _elements(ds, lambda keyword, vr: keyword in IDENTIFYING):
        for value in _values(elem.value):
            text = str(value).strip()
            forms = {text, text.replace("^", " ").strip()}  # "Doe^Jan" as "Doe Jan" too
            found.update(f.casefold() for f in forms if len(f) >= MIN_LENGTH)
    return found


def sweep(ds: Dataset, secrets: Iterable[str], skip: Iterable[str] = ()) -> int:
    """Replace kept text elements holding any of ``secrets``; return how many were replaced."""
    secrets = sorted(set(secrets))
    skip = set(skip)
    if not secrets:
        return 0
    replaced = 0
    for elem in _elements(ds, lambda keyword, vr: vr in _TEXT_VRS and keyword not in skip):
        if any(s in str(v).casefold() for v in _values(elem.value) for s in secrets):
            elem.value = DUMMY
            replaced += 1
    return replaced


def _elements(ds: Dataset, keep: Callable[[str, str], bool]) -> Iterator[Any]:
    """Elements at every depth for which ``keep(keyword, vr)``; only those get decoded, so
    the rest (pixel data above all) stays raw and is written back bit for bit."""
    for tag in list(ds.keys()):
        vr = vr_of(ds, BaseTag(tag))
        if vr == "SQ":
            for item in ds[tag].value or []:
                yield from _elements(item, keep)
        elif keep(keyword_for_tag(tag), vr):
            yield ds[tag]


def _values(value: Any) -> list[Any]:
    if value is None or value == "" or isinstance(value, (bytes, bytearray)):
        return []
    return list(value) if isinstance(value, (list, MultiValue)) else [value]
