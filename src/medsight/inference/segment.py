"""``medsight segment``: a mask per input in the source's own grid, lesions, overlays, DICOM SEG.

The image goes through the run's preprocessing (resampling to the planned spacing, intensity
normalisation), is segmented by sliding windows (optionally with mirror TTA), and the class
probabilities are mapped back to the source grid with the inverse of that preprocessing, so
the NIfTI mask carries the source's affine and overlays correctly in ITK-SNAP or 3D Slicer.
Lesions are the connected components of each class's probability map.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from tqdm.auto import tqdm

from medsight.errors import InputFileError
from medsight.inference.lesions import find_lesions
from medsight.inference.load import LoadedRun, load_run
from medsight.inference.postprocess import keep_largest, largest_component_classes
from medsight.inference.predict import expand_inputs
from medsight.io import read_image
from medsight.io.write import write_nifti
from medsight.runtime.sliding import sliding_probabilities
from medsight.tasks import require_command
from medsight.utils.atomic import write_bytes, write_json
from medsight.utils.paths import safe_stem

log = logging.getLogger(__name__)
LESIONS_FILE = "lesions.json"


@dataclass
class Segmentation:
    labels: MetaTensor  # (1, *S) integer label map on the source grid, source affine
    probabilities: torch.Tensor  # (K, *S) on the source grid
    lesions: list[dict]


def segment_image(run: LoadedRun, image: MetaTensor, mirror: bool | None = None,
                  postprocess: bool = True, deadline: float | None = None) -> Segmentation:
    """Segment one image (as read by ``read_image``) with a segmentation run.

    ``postprocess``: apply the run's post-processing chosen on validation (``postprocess.py``).
    ``deadline``: raise ``runtime.sliding.OverBudget`` early when the image would not be done by
    then (``time.monotonic()`` seconds)."""
    require_command(run.kind, "segment", run.run_dir)
    if image.ndim - 1 != run.spatial_dims:
        raise InputFileError(image.meta.get("source", "input"), f"is {image.ndim - 1}D, but the model is "
                             f"{run.spatial_dims}D")
    pre = run.preprocess()
    x = pre({"image": image})["image"]
    seg = run.cfg.segmentation
    mirror = bool(seg.mirror_tta) if mirror is None else mirror
    probs = sliding_probabilities(run.model, torch.as_tensor(x.as_tensor()), tuple(seg.patch_size), run.runtime,
                                  int(run.cfg.train.batch_size), seg.sw_overlap, mirror, deadline)
    meta, operations = x.meta, x.applied_operations
    del x  # a whole volume's worth of float32, no longer needed
    # back to the source grid: the inverse of the (spatial) preprocessing, MONAI-tracked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no invertible transforms" when nothing was resampled
        restored = pre.inverse({"image": MetaTensor(probs, meta=meta, applied_operations=operations)})["image"]
    del probs
    probs = restored.as_tensor().float()
    del restored
    probs = probs.div_(probs.sum(0, keepdim=True).clamp_(min=1e-6))
    label_map = probs.argmax(0, keepdim=True).to(torch.uint8)
    largest = largest_component_classes(run.run_dir, run.class_names) if postprocess else []
    if largest:
        label_map = keep_largest(label_map, largest)
        for k in largest:  # lesions agree with the mask: none outside the kept component
            probs[k] = torch.where(label_map[0] == k, probs[k], torch.zeros_like(probs[k]))
    labels = MetaTensor(label_map, affine=image.affine, meta={k: v for k, v in image.meta.items() if k != "affine"})
    affine = image.affine.detach().cpu().numpy()
    lesions = []
    cfg = seg.lesions
    for k, name in enumerate(run.class_names[1:], start=1):
        for lesion in find_lesions(probs[k].numpy(), affine, cfg.threshold, cfg.min_size, class_index=k,
                                   max_lesions=cfg.max_lesions):
            lesions.append({"class": name, **lesion})
    lesions.sort(key=lambda r: -r["probability"])
    return Segmentation(labels, probs, lesions)


def segment_paths(run_dir: Path, inputs: Sequence[Path], out_dir: Path, mirror: bool | None = None,
                  overlays: bool = True) -> list[dict]:
    """Segment every input; write masks (NIfTI; DICOM SEG for DICOM), overlays and lesions.json."""
    from medsight.inference.contours import overlay_cases_png

    run = load_run(run_dir)
    out_dir = Path(out_dir)
    results, all_lesions = [], []
    for i, path in enumerate(tqdm(expand_inputs(list(inputs), run.spatial_dims), desc="segment", unit="image",
                                  disable=None)):
        t0 = time.perf_counter()
        image = read_image(path)
        result = segment_image(run, image, mirror)
        stem = f"{i:04d}_{safe_stem(path)}"
        mask_path = out_dir / "masks" / f"{stem}.nii.gz"
        write_nifti(result.labels, mask_path)
        record = {"input": str(path), "mask": str(mask_path), "dicom_seg": None,
                  "voxels_per_class": {n: int((result.labels == k).sum()) for k, n in enumerate(run.class_names)
                                       if k > 0},
                  "lesions": len(result.lesions)}
        if image.meta.get("format") in ("dicom", "dicom-series"):
            record["dicom_seg"] = str(write_dicom_seg(path, image, result.labels, run, out_dir / "dicom-seg" /
                                                      f"{stem}.dcm"))
        if overlays:
            png = out_dir / "overlays" / f"{stem}.png"
            pred = result.labels[0].numpy()
            write_bytes(png, overlay_cases_png([{"image": image[0].numpy(), "ref": np.zeros_like(pred),
                                                 "pred": pred, "spacing": list(image.meta.get("spacing", [])) or None,
                                                 "caption": f"{path.name}: {len(result.lesions)} lesion(s)"}],
                                               run.class_names))
            record["overlay"] = str(png)
        all_lesions += [{"input": str(path), **lesion} for lesion in result.lesions]
        record["seconds"] = round(time.perf_counter() - t0, 2)
        log.info("segmented %s (%s voxels) in %.1f s", path.name, "x".join(map(str, image.shape[1:])),
                 record["seconds"])
        results.append(record)
    write_json(out_dir / LESIONS_FILE, all_lesions)
    write_json(out_dir / "segmentations.json", results)
    return results


def write_dicom_seg(source: Path, image: MetaTensor, labels: MetaTensor, run: LoadedRun, out: Path) -> Path:
    """A DICOM SEG over the source image or series, in the order the reader stacked it."""
    import pydicom

    logging.getLogger("highdicom").setLevel(logging.WARNING)  # it logs every module it copies
    from medsight.io.dicom_results import Algorithm
    from medsight.io.dicom_seg import segmentation

    files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
    datasets = {}
    for f in files:
        try:
            ds = pydicom.dcmread(f)
        except Exception:  # not every file in a series folder is DICOM; the reader already chose
            continue
        datasets[str(ds.SOPInstanceUID)] = ds
    order = image.meta.get("SOPInstanceUID")
    order = order if isinstance(order, (list, tuple)) else [order]
    sources = [datasets[uid] for uid in order if uid in datasets]
    mask = labels[0].numpy().astype(np.uint8)
    seg = segmentation(sources, mask if mask.ndim == 3 else mask[None], Algorithm(run.run_dir.name, "1"),
                       segment_labels=run.class_names[1:])
    out.parent.mkdir(parents=True, exist_ok=True)
    from medsight.utils.atomic import atomic_path

    with atomic_path(out) as tmp:
        seg.save_as(tmp)
    return out
