"""``medsight predict``: label, class probabilities and a Grad-CAM heatmap per image.

The same function serves the command line and (later) the REST service.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from tqdm.auto import tqdm

from medsight.errors import InputFileError
from medsight.inference.explain import explain
from medsight.inference.load import LoadedRun, load_run
from medsight.inference.overlay import overlay_png
from medsight.io import read_image
from medsight.utils.atomic import write_bytes, write_json

log = logging.getLogger(__name__)
PREDICTIONS_FILE = "predictions.json"


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


def predict_image(run: LoadedRun, image: MetaTensor, heatmap: bool = True, method: str = "gradcam"
                  ) -> tuple[dict, np.ndarray | None, np.ndarray]:
    """Diagnose one image: the result record, its heatmap (or None) and the model-space image."""
    from medsight.data.prepared import prepare_items

    prepared = prepare_items([{"image": image, "label": -1}], run.preprocess(), run.spatial_dims)
    x = prepared.images[0]
    probs = torch.softmax(run.engine(x[None]), 1)[0].numpy()
    names = run.class_names
    if len(names) == 2:
        threshold = run.threshold()
        index = int(probs[1] >= threshold)
    else:
        threshold, index = None, int(probs.argmax())
    heat = explain(run.model, run.cfg.model.name, run.runtime.batch(x[None])[0], index, method) if heatmap else None
    record = {
        "label": names[index],
        "label_index": index,
        "probabilities": {n: round(float(p), 6) for n, p in zip(names, probs)},
        "threshold": threshold,
        "modality": image.meta.get("modality"),
        "shape": list(image.shape[1:]),
    }
    return record, heat, x.numpy()


def predict_paths(run_dir: Path, inputs: Iterable[Path], out_dir: Path, heatmaps: bool = True,
                  method: str = "gradcam") -> list[dict]:
    """Predict every input; write heatmap PNGs and ``predictions.json`` into ``out_dir``."""
    run = load_run(run_dir)
    out_dir = Path(out_dir)
    paths = expand_inputs(list(inputs), run.spatial_dims)
    results = []
    for i, path in enumerate(tqdm(paths, desc="predict", unit="image", disable=None)):
        record, heat, x = predict_image(run, read_image(path), heatmaps, method)
        record = {"input": str(path), **record, "heatmap": None, "heatmap_method": method if heat is not None else None}
        if heat is not None:
            png = out_dir / "heatmaps" / f"{i:04d}_{_safe_stem(path)}.png"
            caption = f"{record['label']} ({record['probabilities'][record['label']]:.2f})"
            write_bytes(png, overlay_png(x, heat, caption))
            record["heatmap"] = str(png)
        results.append(record)
    write_json(out_dir / PREDICTIONS_FILE, results)
    log.info("predicted %d image(s) into %s", len(results), out_dir)
    return results


def _safe_stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80] or "image"
