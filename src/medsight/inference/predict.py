"""Diagnosis of one image: label, calibrated class probabilities, uncertainty and a heatmap.

``predict_image`` serves the REST service and, through ``inference/batch.py``, the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from monai.data import MetaTensor

from medsight.errors import InputFileError
from medsight.inference.explain import explain
from medsight.inference.load import LoadedRun
from medsight.inference.uncertainty import uncertainty_records


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


def model_input(run: LoadedRun, image: MetaTensor) -> torch.Tensor:
    """The image as the model sees it: the run's preprocessing, fitted to the trained size."""
    from medsight.data.prepared import prepare_items

    return prepare_items([{"image": image, "label": -1}], run.preprocess(), run.spatial_dims).images[0]


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


def diagnose(run: LoadedRun, images: torch.Tensor, tta: bool = False) -> list[dict]:
    """For each model-space image of a batch: label, calibrated probabilities, threshold,
    uncertainty and the "needs review" flag (``tta``: averaged over test-time views)."""
    views = run.probabilities(images, tta).numpy()
    extra = uncertainty_records(views, run.review_threshold(tta))
    return [{**decide(run, p), **u} for p, u in zip(views.mean(0), extra)]


def predict_image(run: LoadedRun, image: MetaTensor, heatmap: bool = True, method: str = "gradcam",
                  tta: bool = False) -> tuple[dict, np.ndarray | None, np.ndarray]:
    """Diagnose one image: the result record, its heatmap (or None) and the model-space image."""
    x = model_input(run, image)
    record = diagnose(run, x[None], tta)[0]
    heat = (explain(run.model, run.cfg.model.name, run.runtime.batch(x[None])[0], record["label_index"], method)
            if heatmap else None)
    record.update({"modality": image.meta.get("modality"), "shape": list(image.shape[1:])})
    return record, heat, x.numpy()
