"""``medsight deid``: de-identify DICOM files and folders (PS3.15 Annex E Basic Profile).

One file at a time: read, check it is whole, apply the profile (:mod:`.transform`), write the
result atomically to the mirrored path, and list images that may show burned-in text. A file
that cannot be processed is reported and skipped; the rest of the folder goes on. Finished
files are recorded in OUT's manifest (:mod:`.manifest`), so a rerun after fixing the failures
(or after a kill or a full disk) does only what is left. A file that cannot be written (a full
disk) stops the run with one error.

Nothing here logs patient data: log lines carry counts and the paths the user gave, and
error messages are scrubbed of the file's patient name and ID before they are reported.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import re
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medsight.errors import InputFileError, MedsightError, OutputFileError
from medsight.privacy.dicomdir import deidentify_dicomdir, is_dicomdir
from medsight.privacy.keys import Keyring, load_key
from medsight.privacy.manifest import MANIFEST_NAME, Manifest, options_fingerprint
from medsight.privacy.profile import get_profile
from medsight.privacy.review import review_entry
from medsight.privacy.sweep import collect, sweep
from medsight.privacy.transform import DATES, Deidentifier
from medsight.utils.atomic import atomic_path, write_bytes, write_json

logger = logging.getLogger(__name__)

REPORT_NAME = "deid_report.json"
_UNDEFINED = 0xFFFFFFFF
_PIXELS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_IMAGE_PIXEL = ("Rows", "Columns", "BitsAllocated")

__all__ = ["DeidOptions", "DeidReport", "deidentify_tree", "deidentify_file", "load_key"]


@dataclass(frozen=True)
class DeidOptions:
    """How to de-identify: the secret key, the profile, the date policy and what to keep.

    ``dates``: ``"remove"`` (the profile's actions), ``"shift"`` (by a keyed per-patient
    offset, keeping intervals) or ``"keep"``. ``keep_private`` allow-lists private attributes
    by creator (``"GEMS_PARM_01"``, the whole block) or creator and element (``"GEMS_PARM_01:13"``).
    ``map_path``: where to write the pseudonym -> PatientID mapping (identifying!); None: nowhere.
    """

    key: bytes
    profile: str = "basic"
    dates: str = "remove"
    map_path: Path | None = None
    keep_private: tuple[str, ...] = ()


@dataclass
class DeidReport:
    """The outcome of a run; ``failures`` are (input path, problem), ``review`` as in the JSON."""

    report_path: Path
    n_ok: int = 0  # including n_already_done
    n_already_done: int = 0  # finished by an earlier run into the same OUT (.manifest)
    failures: list[tuple[str, str]] = field(default_factory=list)
    review: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def n_files(self) -> int:
        return self.n_ok + self.n_failed


def deidentify_tree(src: str | Path, dst: str | Path, options: DeidOptions) -> DeidReport:
    """De-identify the DICOM file or folder ``src`` into ``dst`` (a mirror of ``src``'s tree).

    Writes ``deid_report.json`` into ``dst`` (beside the output file when ``src`` is a file)
    and, only when ``options.map_path`` is set, the identifying pseudonym mapping.
    """
    src, dst = Path(src), Path(dst)
    deid = _deidentifier(options)
    jobs, report_dir = _plan(src, dst, options)
    report = DeidReport(report_path=report_dir / REPORT_NAME)
    logger.info("de-identifying %d file(s) from %s into %s (profile %s, dates %s)",
                len(jobs), src, dst, options.profile, options.dates)
    manifest = Manifest(report_dir / MANIFEST_NAME, options.key, options_fingerprint(
        options.key, profile=options.profile, dates=options.dates, keep_private=options.keep_private))
    failures_rel: list[dict[str, str]] = []
    try:
        for source, target, rel in jobs:
            done = manifest.done(rel, source, target)
            if done is not None:  # finished by an earlier run with the same key and options
                report.n_already_done += 1
                entry = done["review"]
                if options.map_path is not None:
                    _register_patients(source, deid)
            else:
                try:
                    entry = deidentify_file(source, target, deid, review_name=_rel(target, report_dir))
                except InputFileError as exc:
                    report.failures.append((str(source), exc.problem))
                    failures_rel.append({"file": rel, "problem": exc.problem})
                    continue
                manifest.record(rel, source, target, entry)
            report.n_ok += 1
            if entry is not None:
                report.review.append(entry)
    except OutputFileError:
        # A full disk stops the run: the files done so far are whole and in the manifest.
        with contextlib.suppress(MedsightError):
            _write_report(report, options, failures_rel, complete=False)
        raise
    _write_report(report, options, failures_rel, complete=True)
    if options.map_path is not None:
        _write_map(Path(options.map_path), deid.pseudonyms)
        if _under(Path(options.map_path).resolve(), {report_dir.resolve()}):
            logger.warning("the mapping %s is inside the de-identified output: move it "
                           "before sharing the output", options.map_path)
    if report.n_failed:
        logger.warning("%d file(s) could not be de-identified; see %s", report.n_failed,
                       report.report_path)
    if report.review:
        logger.warning("%d image(s) may show burned-in text and need review; see %s",
                       len(report.review), report.report_path)
    logger.info("de-identified %d of %d file(s) (%d already done by an earlier run)",
                report.n_ok, report.n_files, report.n_already_done)
    return report


def _write_report(report: DeidReport, options: DeidOptions, failures_rel: list[dict[str, str]],
                  complete: bool) -> None:
    write_json(report.report_path, {
        "profile": options.profile, "dates": options.dates, "complete": complete,
        "n_files": report.n_files, "n_ok": report.n_ok, "n_already_done": report.n_already_done,
        "n_failed": report.n_failed, "failures": failures_rel, "review": report.review,
    })


def _register_patients(source: Path, deid: Deidentifier) -> None:
    """Put the patients of a file finished earlier into this run's pseudonym map."""
    with _quiet_pydicom(), contextlib.suppress(Exception):
        deid.dataset(dcmread(source, stop_before_pixels=True))


def deidentify_file(source: Path, target: Path, deid: Deidentifier,
                    review_name: str | None = None) -> dict[str, Any] | None:
    """De-identify one file; return its burned-in-text review entry, if it needs one.

    Raises :class:`InputFileError` for a file that is not DICOM, truncated or unwritable.
    """
    with _quiet_pydicom():
        return _deidentify_file(source, target, deid, review_name)


def _deidentify_file(source: Path, target: Path, deid: Deidentifier,
                     review_name: str | None) -> dict[str, Any] | None:
    ds = read_dicom(source)
    identifiers: set[str] = set()
    try:
        identifiers = collect(ds)  # before anything changes: for the sweep and the scrub
        review = None
        if is_dicomdir(ds):
            data = deidentify_dicomdir(ds, deid, identifiers)
        else:
            deid.dataset(ds)
            sweep(ds, identifiers)
            deid.file_meta(ds)
            deid.mark(ds)
            data = _encode(ds)
            # Before writing: a damaged element found here fails the file, with no output.
            review = review_entry(ds, review_name or target.name)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the folder
        # The message may quote a value: scrub it, or give only the kind of error when the
        # identifiers could not even be collected.
        detail = f": {_scrub(_one_line(exc), identifiers)}" if identifiers else ""
        if isinstance(exc, (BytesLengthException, NotImplementedError)):
            # pydicom quotes the raw bytes of an element it cannot decode: name the tag only.
            tag = re.search(r"\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)", str(exc))
            detail = f": element {tag[0] if tag else ''} does not fit its value representation"
        raise InputFileError(source, f"cannot be de-identified: {type(exc).__name__}{detail}") from None
    write_bytes(target, data)
    return review


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's value validation for the run: its messages quote the (identifying)
    values, and they would land in the logs. Warnings are recorded, not printed, for the same
    reason; the settings are restored afterwards."""
    settings = pydicom.config.settings
    saved = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = saved


def _encode(ds: Dataset) -> bytes:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and not syntax.is_implicit_VR:
        _give_vrs(ds)
    buffer = BytesIO()
    dcmwrite(buffer, ds)
    return buffer.getvalue()


def _give_vrs(ds: Dataset) -> None:
    """Decode elements read without a VR (implicit data under an explicit transfer syntax,
    which some writers produce), so they can be written explicitly; the rest stay raw."""
    for tag in sorted(ds.keys()):
        raw = ds.get_item(tag)
        if getattr(raw, "is_raw", False) and raw.VR is not None:
            continue  # has its VR: written back as read
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value or []:
                _give_vrs(item)


def read_dicom(path: Path) -> Dataset:
    """Read ``path`` whole, refusing what pydicom would silently accept: truncated files."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = dcmread(path)
        except InvalidDicomError:
            raise InputFileError(path, "not a DICOM file (no 'DICM' prefix)") from None
        except IsADirectoryError:
            raise InputFileError(path, "is a folder, not a file") from None
        except OSError as exc:
            raise InputFileError(path, f"cannot be read ({exc.strerror or exc})") from None
        except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on corrupt input
            raise InputFileError(path, f"corrupt DICOM ({type(exc).__name__})") from None
    if any("End of file reached" in str(w.message) for w in caught):
        raise InputFileError(path, "truncated DICOM: the file ends inside a sequence or value")
    try:
        _check_whole(ds, path)
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - an element pydicom cannot decode (an unknown VR...)
        # Only the kind of error: pydicom's messages may quote (identifying) values.
        raise InputFileError(path, f"corrupt DICOM ({type(exc).__name__} decoding its elements)") from None
    return ds


def _check_whole(ds: Dataset, path: Path) -> None:
    """Raise for a file cut short: pydicom reads what is there and says nothing."""
    if not len(ds):
        raise InputFileError(path, "truncated DICOM: no data set after the file meta information")
    if all(k in ds for k in _IMAGE_PIXEL) and not any(k in ds for k in _PIXELS):
        # Image Pixel attributes say pixel data follows (not the SOP class: header-only
        # test sets exist); a file cut before the pixels otherwise looks whole.
        raise InputFileError(path, "truncated DICOM: image attributes but no pixel data")
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return  # offsets refer to the inflated stream, not the file
    size = path.stat().st_size
    end: int | None = None  # where the last element ends, when that is known
    for tag in sorted(ds.keys()):
        raw = ds.get_item(tag)
        start, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
        if start is None or length is None:
            end = None  # already decoded by pydicom: its extent is unknown
        elif length == _UNDEFINED:  # value read up to its delimiter item (8 bytes)
            end = start + len(raw.value) + 8 if isinstance(raw.value, bytes) else None
        elif start + length > size:
            raise InputFileError(path, f"truncated DICOM: element {raw.tag} needs {length} "
                                       f"bytes, the file ends after {max(size - start, 0)}")
        else:
            end = start + length
    if end is not None and end != size:
        # A cut inside the last delimiter, or a partial element header pydicom skipped.
        raise InputFileError(path, f"truncated DICOM: the last element ends at byte {end}, "
                                   f"the file at byte {size}")


def _deidentifier(options: DeidOptions) -> Deidentifier:
    if options.dates not in DATES:
        raise MedsightError(f"unknown date policy {options.dates!r} (use one of {', '.join(DATES)})")
    return Deidentifier(get_profile(options.profile), Keyring(options.key), options.dates,
                        options.keep_private)


def _plan(src: Path, dst: Path, options: DeidOptions) -> tuple[list[tuple[Path, Path, str]], Path]:
    """The (input, output, path relative to IN) triples and the folder for the report."""
    try:
        mode = src.stat().st_mode
    except FileNotFoundError:
        raise MedsightError(f"{src}: no such file or folder") from None
    except OSError as exc:  # a symlink loop, a forbidden folder
        raise MedsightError(f"{src}: cannot open ({exc.strerror or exc})") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise MedsightError(f"{src}: not a regular file or folder (a device, pipe or socket)")
    if src.resolve() == dst.resolve():
        raise MedsightError(f"{dst}: OUT must differ from IN (originals are never overwritten)")
    if src.is_file():
        target = dst / src.name if dst.is_dir() else dst
        return [(src, target, src.name)], target.parent
    if dst.is_file():
        raise MedsightError(f"{dst}: IN is a folder, so OUT must be a folder too")
    skip = {p.resolve() for p in (dst, options.map_path) if p is not None}
    jobs = []
    for path in sorted(src.rglob("*")):
        if not path.is_file() or _under(path.resolve(), skip):
            continue  # OUT (or the map) inside IN: never read our own output back
        rel = path.relative_to(src)
        jobs.append((path, dst / rel, rel.as_posix()))
    return jobs, dst


def _under(path: Path, roots: set[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _write_map(path: Path, pseudonyms: dict[str, str]) -> None:
    """Write ``pseudonym,original_patient_id`` rows; the file re-identifies, so say so."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["pseudonym", "original_patient_id"])
        writer.writerows(sorted(pseudonyms.items()))
    logger.warning("wrote %s: it links pseudonyms back to patient IDs, so it is IDENTIFYING; "
                   "keep it apart from the de-identified data", path)


def _one_line(exc: Exception, limit: int = 300) -> str:
    """An exception's message on one line; pydicom appends the traceback of the error it
    wraps ("With tag ... got exception: ...\nTraceback ..."), which is dropped."""
    text = " ".join(str(exc).split("\nTraceback (most recent call last)")[0].split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scrub(text: str, identifiers: set[str]) -> str:
    """``text`` with every identifier (case-folded, as collected) replaced, ignoring case."""
    for identifier in sorted(identifiers, key=len, reverse=True):
        text = re.sub(re.escape(identifier), "<redacted>", text, flags=re.IGNORECASE)
    return text
