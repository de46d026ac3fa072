"""DICOMDIR files: de-identify the directory records and keep their byte offsets valid.

A DICOMDIR repeats patient names, IDs, dates and UIDs in its directory records, which are
linked by byte offsets. The records go through the same profile as any dataset (so their
UIDs match the de-identified instances beside them) and the offsets are then recomputed,
because every changed value length moves the records that follow it.
"""

from __future__ import annotations

from io import BytesIO

from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.uid import MediaStorageDirectoryStorage

from medsight.privacy.sweep import sweep
from medsight.privacy.transform import Deidentifier, Patient

_NEXT = "OffsetOfTheNextDirectoryRecord"
_LOWER = "OffsetOfReferencedLowerLevelDirectoryEntity"
_ROOT = ("OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity",
         "OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity")


def is_dicomdir(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    sop_class = meta.get("MediaStorageSOPClassUID") if meta is not None else None
    return sop_class == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds


def deidentify_dicomdir(ds: Dataset, deid: Deidentifier, identifiers: set[str]) -> bytes:
    """De-identify a DICOMDIR read from a file and return its encoded bytes, offsets fixed.

    ``identifiers``: the values :func:`~medsight.privacy.sweep.collect` found before any change.
    """
    records = list(ds.get("DirectoryRecordSequence") or [])
    index = {getattr(r, "seq_item_tell", None): i for i, r in enumerate(records)}
    index.pop(None, None)
    links = [(_target(index, r.get(_NEXT)), _target(index, r.get(_LOWER))) for r in records]
    roots = [_target(index, ds.get(k)) for k in _ROOT]
    owners = _owners(records, links, roots[0])

    # Records first, each with the patient of its branch: a study record holds no PatientID,
    # yet its dates must shift like that patient's images.
    for record, owner in zip(records, owners, strict=True):
        deid.dataset(record, owner)
    if "DirectoryRecordSequence" in ds:  # the rest of the DICOMDIR, without the records again
        del ds.DirectoryRecordSequence
    deid.dataset(ds)
    ds.DirectoryRecordSequence = records
    sweep(ds, identifiers)
    deid.file_meta(ds)
    deid.mark(ds)

    # Encode once to learn where each record now starts, point the offsets there, encode again
    # (offsets are fixed-size UL values, so the second pass moves nothing).
    starts = [r.seq_item_tell for r in dcmread(BytesIO(_encode(ds))).DirectoryRecordSequence]
    for record, (nxt, lower) in zip(records, links, strict=True):
        _point(record, _NEXT, starts, nxt)
        _point(record, _LOWER, starts, lower)
    for keyword, target in zip(_ROOT, roots, strict=True):
        _point(ds, keyword, starts, target)
    return _encode(ds)


def _encode(ds: Dataset) -> bytes:
    buffer = BytesIO()
    dcmwrite(buffer, ds)
    return buffer.getvalue()


def _target(index: dict[int, int], offset: object) -> int | None:
    """The record index an offset element points to (None for 0, missing or dangling)."""
    value = getattr(offset, "value", offset)
    return index.get(int(value)) if value else None


def _point(ds: Dataset, keyword: str, starts: list[int], target: int | None) -> None:
    if keyword in ds:
        ds[keyword].value = starts[target] if target is not None else 0


def _owners(records: list[Dataset], links: list[tuple[int | None, int | None]],
            first: int | None) -> list[Patient | None]:
    """The patient each record belongs to, found by walking the record tree from the root."""
    owners: list[Patient | None] = [None] * len(records)
    seen: set[int] = set()
    stack = [(first, None)]
    while stack:
        i, patient = stack.pop()
        while i is not None and i not in seen:  # a sibling chain; `seen` guards against loops
            seen.add(i)
            owners[i] = Patient.of(records[i]) or patient
            nxt, lower = links[i]
            if lower is not None:
                stack.append((lower, owners[i]))
            i = nxt
    for i, record in enumerate(records):  # orphans: by their own content only
        if i not in seen:
            owners[i] = Patient.of(record)
    return owners
