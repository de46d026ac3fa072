"""Diagnosis of one image: label, calibrated class probabilities, uncertainty and a heatmap.

``predict_image`` serves the REST service and, through ``inference/batch.py``, the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor

from medsight.errors import ForeignInputError, InputFileError, MedsightError
from medsight.inference.explain import explain
from medsight.inference.guard import apply_fields, check_image, ood_fields
from medsight.inference.load import LoadedRun
from medsight.inference.uncertainty import uncertainty_records
from medsight.io.validate import as_image
from medsight.transforms.fusion_batch import FusionBatch


def expand_inputs(inputs: Sequence[Path], spatial_dims: int) -> list[Path]:
    """Files as given; folders become their files, except a DICOM series for a 3D model."""
    paths: list[Path] = []
    for p in map(Path, inputs):
        if not p.exists():
            raise InputFileError(p, "no such file or folder")
        if p.is_dir() and spatial_dims == 2:
            paths.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")))
        else:
            paths.append(p)
    if not paths:
        raise InputFileError(", ".join(map(str, inputs)), "no image files found")
    return paths


def model_input(run: LoadedRun, image: MetaTensor, clinical: Mapping[str, str] | None = None
                ) -> torch.Tensor | FusionBatch:
    """The image as the model sees it: the run's preprocessing, fitted to the trained size.

    ``image`` holds every image of the case stacked as channels (``load_items`` does that for
    cases with several); fused runs need the case's ``clinical`` values (a missing key is an
    error, an empty value a missing value) and get a one-case ``FusionBatch``.
    """
    from medsight.data.prepared import prepare_items

    item = {"image": image, "label": -1, **({"clinical": dict(clinical)} if clinical is not None else {})}
    if run.clinical is not None:
        absent = [c for c in run.clinical.names if clinical is None or c not in clinical]
        if absent:
            raise MedsightError(f"the model also reads clinical values: give {', '.join(absent)} "
                                "(an empty value counts as missing)")
    return run.with_clinical(prepare_items([item], run.preprocess(), run.spatial_dims)).images[0]


def image_part(x: torch.Tensor | FusionBatch) -> torch.Tensor:
    """The preprocessed image of a model input (for overlays and viewers)."""
    return x.images if isinstance(x, FusionBatch) else x


def check_single_image(run: LoadedRun, clinical_given: bool = False) -> None:
    """A run trained on several images per case, or on clinical values too, cannot read an
    image alone: say how to give it whole cases."""
    columns = run.image_columns + (run.clinical.names if run.clinical is not None else [])
    if len(run.image_columns) > 1:
        what = f"{len(run.image_columns)} images per case ({', '.join(run.image_columns)})"
    elif run.clinical is not None and not clinical_given:
        what = f"clinical values too ({', '.join(run.clinical.names)})"
    else:
        return
    raise MedsightError(f"the model reads {what}; give cases as a CSV with columns {','.join(columns)}: "
                        "medsight predict RUN --cases cases.csv")


def decide(run: LoadedRun, probs: np.ndarray) -> dict:
    """Label, probabilities and the threshold used (binary: the run's decision threshold)."""
    names = run.class_names
    if len(names) == 2:
        threshold = run.threshold()
        index = int(probs[1] >= threshold)
    else:
        threshold, index = None, int(probs.argmax())
    return {"label": names[index], "label_index": index,
            "probabilities": {n: round(float(p), 6) for n, p in zip(names, probs)}, "threshold": threshold}


def diagnose(run: LoadedRun, images: torch.Tensor | FusionBatch, tta: bool = False) -> list[dict]:
    """For each model-space image of a batch: label, calibrated probabilities, threshold,
    uncertainty and the "needs review" flag (``tta``: averaged over test-time views)."""
    views = run.probabilities(images, tta).numpy()
    extra = uncertainty_records(views, run.review_threshold(tta))
    return [{**decide(run, p), **u} for p, u in zip(views.mean(0), extra)]


def predict_image(run: LoadedRun, image: MetaTensor | np.ndarray | torch.Tensor, heatmap: bool = True,
                  method: str = "gradcam", tta: bool = False, clinical: Mapping[str, str] | None = None,
                  allow_foreign: bool = False, source: str = "input"
                  ) -> tuple[dict, np.ndarray | None, np.ndarray]:
    """Diagnose one image (and, for fused runs, its ``clinical`` values): the result record,
    its heatmap (or None) and the model-space image.

    ``image`` as ``read_image`` returns it, or an array or tensor channel first (a 2D numpy
    array is one grey channel; see :func:`medsight.io.validate.as_image`). The input guard
    (``inference/guard.py``) refuses a foreign image with ``ForeignInputError`` naming ``source``,
    unless ``allow_foreign``."""
    check_single_image(run, clinical is not None)
    return predict_case(run, as_image(image), heatmap, method, tta, clinical, allow_foreign, source)


def predict_case(run: LoadedRun, image: MetaTensor, heatmap: bool = True, method: str = "gradcam",
                 tta: bool = False, clinical: Mapping[str, str] | None = None, allow_foreign: bool = False,
                 source: str = "input") -> tuple[dict, np.ndarray | None, np.ndarray]:
    """:func:`predict_image` for a case whose images are already stacked (``load_items``)."""
    overridden, caveat = check_image(run, image, source, allow_foreign)
    x = model_input(run, image, clinical)
    fields = ood_fields(run, x[None], [overridden], allow_foreign, [caveat])[0] if clinical is None else {}
    if isinstance(fields, str):
        raise ForeignInputError(source, fields)
    record = apply_fields(diagnose(run, x[None], tta)[0], fields)
    heat = (explain(run.model, run.cfg.model.name, run.runtime.batch(x[None])[0], record["label_index"], method)
            if heatmap else None)
    record.update({"modality": image.meta.get("modality"), "shape": list(image.shape[1:])})
    return record, heat, image_part(x).numpy()
