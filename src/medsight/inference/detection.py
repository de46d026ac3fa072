"""``load_detector`` turns a detection run folder into something that finds boxes in new images,
in those images' own pixels (the decoding is ``medsight.runtime.detection``); ``detect_paths`` is
``medsight predict`` on such a run: ``OUT/predictions.json`` with boxes, scores and class names."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from medsight.config import RunConfig
from medsight.data.voc import detection_pixels
from medsight.errors import InputFileError, MedsightError
from medsight.inference.batch import PREDICTIONS_FILE, BatchReport
from medsight.inference.predict import expand_inputs
from medsight.io.read import read_image
from medsight.models.detection import AnchorBoxes, build_detector
from medsight.runtime import Runtime
from medsight.runtime.checkpoint import BEST, load_checkpoint
from medsight.runtime.detection import BoxSelection, Detections, predict_boxes
from medsight.runtime.run_folder import PLAN_FILE, checkpoint_path, read_run
from medsight.tasks import DETECTION, task_of
from medsight.transforms.boxes import normalise, resize_with_boxes
from medsight.utils.atomic import write_json


@dataclass
class LoadedDetector:
    """A detection run ready for new images: the model, its anchors and its preprocessing."""

    run_dir: Path
    cfg: RunConfig
    plan: dict
    model: nn.Module
    anchors: AnchorBoxes
    runtime: Runtime
    selection: BoxSelection

    @property
    def class_names(self) -> list[str]:
        return list(self.plan["class_names"])

    @property
    def image_columns(self) -> list[str]:
        """One picture per case (the same attribute as a ``LoadedRun``'s)."""
        return ["path"]

    def detect(self, images: Sequence[torch.Tensor], batch_size: int = 8) -> list[Detections]:
        """Detections for uint8 images ``(3, rows, cols)`` at their own size, in their own pixels."""
        scale = float(self.plan["scale"])
        norm = self.plan["normalise"]
        ready, factors = [], []
        for image in images:
            resized, _ = resize_with_boxes(image, torch.zeros(0, 4), scale)
            ready.append(normalise(resized, norm["mean"], norm["std"]))
            rows, cols = image.shape[-2:]
            factors.append(torch.tensor([cols / resized.shape[-1], rows / resized.shape[-2]] * 2))
        found = predict_boxes(self.model, self.anchors, ready, self.runtime, self.selection, batch_size)
        return [{**d, "boxes": d["boxes"] * f} for d, f in zip(found, factors)]

    def record(self, found: Detections, shape: Sequence[int]) -> dict[str, Any]:
        """The JSON of one image's detections: ``boxes`` ``[xmin, ymin, xmax, ymax]`` in the image's
        pixels, ``scores`` in [0, 1] and ``labels`` (class names), best first."""
        names = self.class_names
        return {"boxes": [[round(float(v), 2) for v in box] for box in found["boxes"].tolist()],
                "scores": [round(float(s), 4) for s in found["scores"].tolist()],
                "labels": [names[int(k)] for k in found["labels"].tolist()],
                "shape": [int(n) for n in shape]}


def read_picture(path: str | Path) -> torch.Tensor:
    """An image file as the uint8 ``(3, rows, cols)`` a detector reads (one error line if it is not one)."""
    return detection_pixels(read_image(path).as_tensor(), path)


def detect_paths(run_dir: str | Path, inputs: Sequence[Path], out_dir: Path, fail_fast: bool = False,
                 batch_size: int = 8) -> BatchReport:
    """``medsight predict`` on a detection run: ``out_dir/predictions.json``, one record per readable
    input in input order (``input``, ``boxes``, ``scores``, ``labels``, ``shape``); a bad file is
    listed in ``failures`` (or raised with ``fail_fast``) and the rest are done."""
    t0 = time.perf_counter()
    loaded = load_detector(run_dir)
    paths = expand_inputs(list(inputs), 2)
    results: list[dict] = []
    failures: list[tuple[str, str]] = []
    for start in range(0, len(paths), batch_size):
        pictures = []
        for path in paths[start:start + batch_size]:
            try:
                pictures.append((path, read_picture(path)))
            except MedsightError as exc:
                if fail_fast:
                    raise
                failures.append((str(path), getattr(exc, "problem", str(exc))))
        found = loaded.detect([p for _, p in pictures]) if pictures else []
        results += [{"input": str(path), **loaded.record(d, picture.shape[1:])}
                    for (path, picture), d in zip(pictures, found)]
    write_json(Path(out_dir) / PREDICTIONS_FILE, results)
    return BatchReport(results, failures, 0, time.perf_counter() - t0)


def load_detector(run_dir: str | Path, checkpoint: str = BEST) -> LoadedDetector:
    run_dir = Path(run_dir)
    cfg, plan = read_run(run_dir)
    if task_of(plan, run_dir / PLAN_FILE) is not DETECTION:
        raise InputFileError(run_dir, f"not a box-detection run (task {plan.get('task', 'classification')!r})")
    runtime = Runtime.create(cfg.train.precision, cfg.train.channels_last, cfg.train.threads, 2)
    anchors = AnchorBoxes.from_description(plan["anchors"])
    model = build_detector(cfg.model.name, int(plan["in_channels"]), len(plan["class_names"]), anchors,
                           **cfg.model.options)
    model.load_state_dict(load_checkpoint(checkpoint_path(run_dir, checkpoint))["model"])
    model = runtime.model(model, 2).eval()
    return LoadedDetector(run_dir, cfg, plan, model, anchors, runtime, BoxSelection(**plan["box_selection"]))
