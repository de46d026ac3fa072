"""One uploaded or retrieved file through the model: sniffed, read, checked, diagnosed and audited
(on the inference pool's worker threads). The upload route and the worklist's view share it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from medsight.errors import ForeignInputError, InputFileError, MedsightError
from medsight.inference.audit import AuditTrail, input_sha256
from medsight.io import read_image
from medsight.io.read import image_kind
from medsight.privacy.check import NOT_DEIDENTIFIED, is_deidentified
from medsight.service.errors import ApiError, user_error
from medsight.service.models import PredictOptions, ServedModel

SUPPORTED = "DICOM, NIfTI, PNG, JPEG, TIFF, BMP or NumPy"


def audited(trail: AuditTrail | None, caller: str, model: ServedModel, path: Path, options: PredictOptions,
            require_deidentified: bool) -> tuple[dict[str, Any], str]:
    """:func:`diagnose_file`, with an audit row for its answer or its refusal when there is a trail."""
    if trail is None:
        return diagnose_file(model, path, options, require_deidentified)
    digest, start = input_sha256(path), time.perf_counter()
    try:
        result, kind = diagnose_file(model, path, options, require_deidentified)
    except ApiError as exc:
        trail.refusal(caller, digest, f"{exc.status_code}: {exc.detail}", time.perf_counter() - start, options.tta)
        raise
    trail.prediction(caller, digest, result, time.perf_counter() - start, options.tta)
    return result, kind


def diagnose_file(model: ServedModel, path: Path, options: PredictOptions, require_deidentified: bool
                  ) -> tuple[dict[str, Any], str]:
    """Sniff, read, check and diagnose one uploaded file (on a worker thread)."""
    try:
        kind = image_kind(path)
    except InputFileError as exc:
        raise user_error(exc) from None
    if kind is None:
        raise ApiError(415, f"unsupported content: not a {SUPPORTED} image (the file's bytes decide, "
                            "not its name or content type)")
    try:
        image = read_image(path)
    except MedsightError as exc:
        raise user_error(exc) from None
    if require_deidentified and kind == "dicom" and not is_deidentified(image):
        raise ApiError(422, f"upload: {NOT_DEIDENTIFIED}")
    dims, expected = image.ndim - 1, model.info.get("spatial_dims")
    if expected and dims != expected:
        raise ApiError(400, f"upload: model {model.name!r} reads {expected}D images; this one is {dims}D "
                            f"(shape {list(image.shape[1:])})")
    try:
        return model.predict(image, options), kind
    except ForeignInputError as exc:  # the input guard: unlike anything the model was trained on
        raise user_error(exc, 422) from None
    except MedsightError as exc:
        raise user_error(exc) from None
