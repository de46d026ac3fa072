"""Apply a profile to one dataset, in place, at every sequence depth.

PatientID and PatientName become the patient's keyed pseudonym, so one patient's data stays
linked. The date policy is laid over the table for dates and times: ``remove`` applies the
profile's actions (and a dummy to any date it does not list); ``shift`` moves every retained
date by the patient's keyed offset in whole days and keeps times; ``keep`` keeps them. In every
mode, temporal attributes the profile removes outright (X) and the birth date and time go.

Only attributes that change are decoded: everything kept (above all the pixel data) stays
as the raw bytes read from the file, so it is written back bit for bit.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from medsight.privacy.keys import Keyring
from medsight.privacy.profile import NOT_LONGITUDINAL, Action, Profile

DATES = ("remove", "shift", "keep")
# CID 7050 codes for the date options (PS3.16); the profile's own code comes from the profile.
DATE_OPTION_CODES = {
    "shift": ("113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "keep": ("113106", "DCM", "Retain Longitudinal Temporal Information Full Dates Option"),
}
SAFE_PRIVATE_CODE = ("113111", "DCM", "Retain Safe Private Option")
# Longitudinal Temporal Information Modified (0028,0303) for each date policy.
_TEMPORAL = {"remove": "REMOVED", "shift": "MODIFIED", "keep": "UNMODIFIED"}

_SHIFT = "shift"  # an action of the date policy, not of the profile table
_DUMMY_TEXT = "ANONYMIZED"
_DUMMY = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000D",
          "IS": "0", "DS": "0"}
_NUMERIC = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"}
_BINARY = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
_DA = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")  # also the ACR-NEMA form YYYY.MM.DD
_DT = re.compile(r"^(\d{8})(.*)$")
_NUMERIC_ID = re.compile(r"^[0-9.]{3,}$")


@dataclass(frozen=True)
class Patient:
    """Whose data a (nested) dataset is: the key for pseudonym and date offset. Never logged."""

    key: str
    patient_id: str
    numeric: tuple[str, ...] = ()  # numeric identifiers that new UIDs must not contain

    @staticmethod
    def of(ds: Dataset) -> Patient | None:
        """The patient named in ``ds`` itself (by PatientID, else PatientName), if any."""
        pid = _text(ds.get("PatientID"))
        name = _text(ds.get("PatientName"))
        numeric = tuple(v for v in (pid, _text(ds.get("PatientBirthDate"))) if _NUMERIC_ID.match(v))
        if pid:
            return Patient("id:" + pid, pid, numeric)
        if name:
            return Patient("name:" + name, "", numeric)
        return None


class Deidentifier:
    """De-identifies datasets under one profile, key and date policy."""

    def __init__(self, profile: Profile, keys: Keyring, dates: str = "remove",
                 keep_private: Iterable[str] = ()):
        if dates not in DATES:
            raise ValueError(f"dates must be one of {DATES}, not {dates!r}")
        self.profile = profile
        self.keys = keys
        self.dates = dates
        self.keep_private = tuple(keep_private)
        self.pseudonyms: dict[str, str] = {}  # pseudonym -> original PatientID (for --map)

    # -- entry points ---------------------------------------------------------------------

    def dataset(self, ds: Dataset, patient: Patient | None = None) -> None:
        """De-identify ``ds`` and its sequences (no file meta, no method attributes)."""
        own = Patient.of(ds)  # before PatientName/PatientID are replaced below
        for tag in sorted(ds.keys()):
            self._element(ds, BaseTag(tag), own or patient, own)

    def mark(self, ds: Dataset) -> None:
        """Record what was done: PatientIdentityRemoved, method text and codes (PS3.15 E.1.1)."""
        ds.PatientIdentityRemoved = "YES"
        method = [f"PS3.15 E {self.profile.name} profile (medsight)", f"dates {self.dates}",
                  "private tags allow-listed" if self.keep_private else "private tags removed"]
        ds.DeidentificationMethod = method  # LO is 64 chars a value, hence several values
        codes = [self.profile.code]
        if self.dates in DATE_OPTION_CODES:
            codes.append(DATE_OPTION_CODES[self.dates])
        if self.keep_private:
            codes.append(SAFE_PRIVATE_CODE)
        ds.DeidentificationMethodCodeSequence = [_code_item(*c) for c in codes]
        ds.LongitudinalTemporalInformationModified = _TEMPORAL[self.dates]

    def file_meta(self, ds: Dataset) -> None:
        """Keep the file meta consistent with the new SOP Instance UID; drop sender AE titles."""
        meta = getattr(ds, "file_meta", None)
        if meta is None:
            return
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        elif meta.get("MediaStorageSOPInstanceUID"):
            meta.MediaStorageSOPInstanceUID = self.keys.uid(str(meta.MediaStorageSOPInstanceUID))
        # The file is now written by pydicom, which PS3.10 asks the meta to say.
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
        # Source/Sending/Receiving AE titles and private meta name the sites that handled the file.
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                        "ReceivingApplicationEntityTitle", "PrivateInformationCreatorUID",
                        "PrivateInformation"):
            if keyword in meta:
                delattr(meta, keyword)

    # -- one element ----------------------------------------------------------------------

    def _element(self, ds: Dataset, tag: BaseTag, patient: Patient | None,
                 own: Patient | None) -> None:
        if tag.element == 0 or _is_curve_or_overlay(tag):
            # Group lengths would be stale after the changes; curves and overlay planes go whole.
            del ds[tag]
            return
        if tag.is_private:
            self._private(ds, tag, patient)
            return
        keyword = keyword_for_tag(tag)
        vr = vr_of(ds, tag)
        action = self._action(keyword, vr)
        if action is Action.KEEP:
            if vr == "SQ":
                self._sequence(ds, tag, patient)
            return
        if action is Action.REMOVE:
            del ds[tag]
            return
        elem = ds[tag]  # decode only what changes
        if keyword in ("PatientID", "PatientName"):
            elem.value = self._pseudonym(own)
        elif action == _SHIFT:
            elem.value = self._shift(elem.value, vr, patient)
        elif elem.VR == "SQ":
            if action is Action.EMPTY:
                elem.value = []
            else:  # D or U on a sequence: keep it and de-identify its items
                self._sequence(ds, tag, patient)
        elif action is Action.UID:
            avoid = patient.numeric if patient else ()
            elem.value = _map_values(elem.value, lambda uid: self.keys.uid(uid, avoid))
        elif action is Action.EMPTY or elem.VR in _BINARY:
            elem.value = b"" if elem.VR in _BINARY else ("" if elem.VR not in _NUMERIC else None)
        elif elem.value not in (None, "", b""):
            # D, and C (free text cannot be cleaned safely, so it gets the dummy too). An
            # empty value stays empty: it hides nothing and the IOD evidently allows it.
            elem.value = _dummy(elem.VR)

    def _action(self, keyword: str, vr: str) -> str:
        """The profile's action, with the date policy laid over dates and times."""
        action = self.profile.action(keyword) if keyword else None
        if keyword in ("PatientID", "PatientName"):
            return Action.DUMMY  # the keyed pseudonym, so one patient's data stays linked
        if vr not in ("DA", "DT", "TM") or keyword in NOT_LONGITUDINAL:
            return action or Action.KEEP
        if action is Action.REMOVE:
            # Workflow times the profile removes outright (procedure steps, scheduling,
            # calibration) are not needed for a timeline: the date options leave them out too.
            return action
        if self.dates == "keep":
            return Action.KEEP
        if self.dates == "shift":
            return _SHIFT if vr in ("DA", "DT") else Action.KEEP  # whole days: times stay valid
        if action is None:
            # Not in the table: the profile's aim is that no real date survives, and a dummy
            # keeps a Type 1 date valid. Times alone do not identify, so they stay.
            return Action.DUMMY if vr in ("DA", "DT") else Action.KEEP
        return action

    def _sequence(self, ds: Dataset, tag: BaseTag, patient: Patient | None) -> None:
        for item in ds[tag].value or []:
            self.dataset(item, patient)

    def _private(self, ds: Dataset, tag: BaseTag, patient: Patient | None) -> None:
        if not self._private_allowed(ds, tag):
            del ds[tag]
        elif vr_of(ds, tag) == "SQ":
            self._sequence(ds, tag, patient)

    def _private_allowed(self, ds: Dataset, tag: BaseTag) -> bool:
        """Allow-list entries: a private creator (its whole block) or ``"CREATOR:ee"``."""
        if not self.keep_private:
            return False
        if tag.element < 0x0100:  # a private creator element itself
            creator = _text(ds[tag].value) if tag.element >= 0x0010 else ""
            return any(entry.split(":")[0] == creator for entry in self.keep_private)
        creator_elem = ds.get(Tag(tag.group, tag.element >> 8))
        creator = _text(creator_elem.value) if creator_elem is not None else ""
        return bool(creator) and (creator in self.keep_private
                                  or f"{creator}:{tag.element & 0xFF:02X}" in self.keep_private)

    def _pseudonym(self, own: Patient | None) -> str:
        """PatientID and PatientName both become the pseudonym of the dataset's own patient."""
        if own is None:  # neither ID nor name: nothing to link, the value stays empty
            return ""
        pseudonym = self.keys.pseudonym(own.key)
        if own.patient_id:
            self.pseudonyms[pseudonym] = own.patient_id
        return pseudonym

    def _shift(self, value: Any, vr: str, patient: Patient | None) -> Any:
        days = self.keys.day_offset(patient.key if patient else "")
        shift = _shift_da if vr == "DA" else _shift_dt
        return _map_values(value, lambda v: shift(v, days))


def _shift_da(value: str, days: int) -> str:
    """A DA value moved by ``days``; a value that is not a valid date is emptied, not kept."""
    if "-" in value:  # a range (only in queries, but cheap to honour)
        return "-".join(_shift_da(part, days) if part else "" for part in value.split("-"))
    match = _DA.match(value.strip())
    if not match:
        return ""
    try:
        day = dt.date(*(int(g) for g in match.groups()))
    except ValueError:
        return ""
    return (day + dt.timedelta(days=days)).strftime("%Y%m%d")


def _shift_dt(value: str, days: int) -> str:
    """A DT value with its date part moved; year-only or year-month values cannot be, so go."""
    match = _DT.match(value.strip())
    if not match:
        return ""
    date = _shift_da(match.group(1), days)
    return date + match.group(2) if date else ""


def _map_values(value: Any, fn: Any) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, (list, MultiValue)):
        return [fn(str(v)) if str(v) else "" for v in value]
    return fn(str(value))


def _dummy(vr: str) -> Any:
    if vr in _NUMERIC:
        return 0
    return _DUMMY.get(vr, _DUMMY_TEXT)


def vr_of(ds: Dataset, tag: BaseTag) -> str:
    """The element's VR: as read when explicit, else from the dictionary (UN if unknown)."""
    vr = getattr(ds.get_item(tag), "VR", None)
    if vr and vr != "UN":
        return vr
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return "UN" if " or " in vr else vr


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _is_curve_or_overlay(tag: BaseTag) -> bool:
    return tag.group % 2 == 0 and (0x5000 <= tag.group <= 0x50FF or 0x6000 <= tag.group <= 0x60FF)


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item

