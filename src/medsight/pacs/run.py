"""Run a model on a PACS study and store the results back under it.

For a classifier, each image series gets one finding: a 2D model reads every slice and the
series' finding is the most suspicious slice's (highest ``1 - P(first class)``, i.e. P(positive)
for a binary model); a 3D model reads the series as one volume. The results are a
Comprehensive SR (finding and probabilities, referencing the slice) and a Secondary Capture of
that slice with its heatmap. :func:`store_segmentation` is the store-back of a DICOM SEG for
segmentation models.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any, ContextManager, Sequence

import numpy as np
import pydicom
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from medsight.errors import InputFileError
from medsight.inference.load import LoadedRun
from medsight.inference.overlay import heat_on_image, slice_indices
from medsight.inference.predict import predict_image
from medsight.io import read_image
from medsight.io.dicom_results import Algorithm, ClassificationFinding, classification_sr, secondary_capture
from medsight.io.dicom_seg import segmentation
from medsight.pacs.client import pull_study, store

log = logging.getLogger(__name__)


def run_study(client: DICOMwebClient, run: LoadedRun, study_uid: str, *, model_name: str,
              series_uid: str | None = None, store_results: bool = True, work_dir: Path | None = None,
              method: str = "gradcam", lock: ContextManager | None = None) -> list[dict[str, Any]]:
    """Pull a study's image series, diagnose each, store SR + heatmap SC back; one summary per series.

    ``lock`` guards the model when other threads use it too (the service passes its own).
    """
    with contextlib.ExitStack() as stack:
        folder = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medsight-pacs-")))
        pulled = pull_study(client, study_uid, folder, series_uid)
        summaries = []
        for uid, paths in pulled.items():
            with lock or contextlib.nullcontext():
                summary, objects = classify_series(run, paths, model_name, method)
            if store_results:
                store(client, objects)
            summary["stored"] = [_describe(obj) for obj in objects] if store_results else []
            summaries.append({"study_uid": study_uid, "series_uid": uid, **summary})
        log.info("diagnosed %d series%s", len(summaries), " and stored the results" if store_results else "")
        return summaries


def classify_series(run: LoadedRun, paths: Sequence[Path], model_name: str, method: str = "gradcam",
                    uid_seed: str | None = None) -> tuple[dict[str, Any], list[Dataset]]:
    """The finding for one series of DICOM files, and the SR and SC datasets that record it.

    ``uid_seed`` (e.g. a hash of the job's input and run) makes the results' UIDs repeatable.
    """
    summary, objects, _ = diagnose_series(run, paths, model_name, method, uid_seed)
    return summary, objects


def diagnose_series(run: LoadedRun, paths: Sequence[Path], model_name: str, method: str = "gradcam",
                    uid_seed: str | None = None) -> tuple[dict[str, Any], list[Dataset], dict[str, Any]]:
    """:func:`classify_series`, and the prediction record of the finding (for the audit trail)."""
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    if run.spatial_dims == 3:
        image = read_image(Path(paths[0]).parent)
        record, heat, _ = predict_image(run, image, True, method)
        z, z_heat = slice_indices(image.shape[1], heat)
        slice_image, heat2d = image.numpy()[:, z], heat[z_heat]
        referenced_uid = image.meta["SOPInstanceUID"][z]
    else:
        best: tuple[float, Path] | None = None
        for path in paths:
            image = read_image(path)
            if image.ndim != 3:
                raise InputFileError(path.name, f"a 2D model cannot read a {image.ndim - 1}D image")
            record, _, _ = predict_image(run, image, False)
            score = 1.0 - record["probabilities"][run.class_names[0]]
            if best is None or score > best[0]:
                best = (score, path)
        if best is None:
            raise InputFileError("series", "no images")
        image = read_image(best[1])
        record, heat, _ = predict_image(run, image, True, method)
        slice_image, heat2d = image.numpy(), heat
        referenced_uid = image.meta["SOPInstanceUID"]
    referenced = next(ds for ds in sources if ds.SOPInstanceUID == referenced_uid)
    algorithm = Algorithm(model_name)
    finding = ClassificationFinding(record["label"], record["probabilities"])
    # The SC needs the referenced slice's pixels; the SR only headers.
    sc = secondary_capture(referenced, heat_on_image(slice_image, heat2d), algorithm, uid_seed=uid_seed)
    sr = classification_sr(sources, finding, algorithm, referenced=referenced, uid_seed=uid_seed)
    summary = {"model": model_name, "label": record["label"], "probabilities": record["probabilities"],
               "n_images": len(paths), "referenced_sop_instance_uid": referenced_uid}
    return summary, [sr, sc], record


def store_segmentation(client: DICOMwebClient, sources: Sequence[Dataset], mask: np.ndarray, model_name: str,
                       segment_labels: Sequence[str] = ("lesion",)) -> dict[str, Any]:
    """Store a mask over ``sources`` (one series, mask slices in the same order) as a DICOM SEG."""
    seg = segmentation(sources, mask, Algorithm(model_name), segment_labels)
    store(client, [seg])
    return _describe(seg)


def _describe(ds: Dataset) -> dict[str, str]:
    return {"sop_class": ds.SOPClassUID.name, "sop_class_uid": str(ds.SOPClassUID),
            "series_uid": str(ds.SeriesInstanceUID), "sop_instance_uid": str(ds.SOPInstanceUID)}
