"""DICOMweb exchange with a PACS through dicomweb-client: search (QIDO-RS), retrieve (WADO-RS), store (STOW-RS).

Failures the user can act on (wrong URL or credentials, unknown study, a PACS refusing an
object) become one-line :class:`PacsError` messages that name no patient.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session, create_session_from_user_pass
from pydicom.dataset import Dataset

from medsight.errors import MedsightError
from medsight.utils.atomic import atomic_path

log = logging.getLogger(__name__)
# Series that hold no images to diagnose (reports, segmentations, presentation states...).
NON_IMAGE_MODALITIES = {"SR", "SEG", "KO", "PR", "RTSTRUCT", "RTPLAN", "RTRECORD", "REG", "DOC", "AU", "ECG"}
RESULT_PREFIX = "medsight "  # our own results' SeriesDescription: never diagnosed again
STUDY_FIELDS = ("StudyInstanceUID", "StudyDate", "StudyDescription", "ModalitiesInStudy",
                "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber",
                 "NumberOfSeriesRelatedInstances")


class PacsError(MedsightError):
    """The PACS could not be reached or refused a request; ``status`` is the HTTP status to relay."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


def connect(url: str, user: str | None = None, password: str | None = None, timeout: float = 30) -> DICOMwebClient:
    """A DICOMweb client for ``url`` (e.g. ``http://pacs:8042/dicom-web``), with HTTP basic auth if given."""
    if not url.startswith(("http://", "https://")):
        raise PacsError(f"PACS URL must start with http:// or https://, not {url!r}", 400)
    session = create_session_from_user_pass(user, password or "") if user else create_session()
    return DICOMwebClient(url=url.rstrip("/"), session=session, timeout=timeout)


@contextlib.contextmanager
def pacs_errors(what: str) -> Iterator[None]:
    """Turn HTTP and connection failures of one exchange into a :class:`PacsError`."""
    try:
        yield
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        if code in (401, 403):
            raise PacsError(f"{what}: the PACS refused the credentials (HTTP {code})") from None
        if code == 404:
            raise PacsError(f"{what}: not found on the PACS", 404) from None
        raise PacsError(f"{what}: the PACS answered HTTP {code}") from None
    except requests.RequestException as exc:
        raise PacsError(f"{what}: cannot reach the PACS ({type(exc).__name__})") from None


def _summary(item: dict, keywords: Sequence[str]) -> dict[str, Any]:
    """Plain values for ``keywords`` from one DICOM JSON result (multiple values joined by ``\\``)."""
    ds = Dataset.from_json(item)
    summary: dict[str, Any] = {}
    for keyword in keywords:
        value = ds.get(keyword)
        if value is None or value == "":
            summary[keyword] = None
        elif type(value).__name__ == "MultiValue":
            summary[keyword] = "\\".join(str(v) for v in value)
        else:
            summary[keyword] = int(value) if isinstance(value, int) else str(value)
    return summary


def find_studies(client: DICOMwebClient, study_uid: str | None = None, modality: str | None = None,
                 study_date: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Studies matching the filters (QIDO-RS), without patient names or IDs."""
    filters = {k: v for k, v in {"StudyInstanceUID": study_uid, "ModalitiesInStudy": modality,
                                 "StudyDate": study_date}.items() if v}
    with pacs_errors("study search"):
        found = client.search_for_studies(search_filters=filters, limit=limit, fields=list(STUDY_FIELDS))
    return [_summary(item, STUDY_FIELDS) for item in found]


def find_series(client: DICOMwebClient, study_uid: str) -> list[dict[str, Any]]:
    """All series of a study (QIDO-RS), with modality, description and instance count."""
    with pacs_errors(f"series search in study {study_uid}"):
        found = client.search_for_series(study_instance_uid=study_uid, fields=list(SERIES_FIELDS))
    return [_summary(item, SERIES_FIELDS) for item in found]


def image_series(client: DICOMwebClient, study_uid: str) -> list[dict[str, Any]]:
    """The series of a study a model can diagnose: images, not reports or our own results."""
    series = find_series(client, study_uid)
    if not series:
        raise PacsError(f"study {study_uid} not found on the PACS (or it has no series)", 404)
    return [s for s in series if (s["Modality"] or "").upper() not in NON_IMAGE_MODALITIES
            and not (s["SeriesDescription"] or "").startswith(RESULT_PREFIX)]


def pull_series(client: DICOMwebClient, study_uid: str, series_uid: str, out_dir: Path) -> list[Path]:
    """Retrieve one series (WADO-RS) into ``out_dir/<series UID>/<SOP instance UID>.dcm``."""
    with pacs_errors(f"retrieving series {series_uid}"):
        datasets = client.retrieve_series(study_uid, series_uid)
    folder = Path(out_dir) / series_uid
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(path)
    log.info("pulled %d instance(s)", len(paths))
    return paths


def pull_study(client: DICOMwebClient, study_uid: str, out_dir: Path, series_uid: str | None = None
               ) -> dict[str, list[Path]]:
    """Retrieve a study's image series (or one series) into ``out_dir``, one folder per series."""
    uids = [series_uid] if series_uid else [s["SeriesInstanceUID"] for s in image_series(client, study_uid)]
    return {uid: pull_series(client, study_uid, uid, out_dir) for uid in uids}


def store(client: DICOMwebClient, datasets: Sequence[Dataset]) -> None:
    """Store instances (STOW-RS); a PacsError if the PACS rejects any of them."""
    with pacs_errors("storing results"):
        response = client.store_instances(list(datasets))
    failed = response.get("FailedSOPSequence") if response is not None else None
    if failed:  # Orthanc always sends the sequence; only its items mean failure
        raise PacsError(f"the PACS refused {len(failed)} of {len(datasets)} result object(s)")
