"""Loading a run for inference, by its task kind (``medsight.tasks``): classifiers and segmenters
load as :class:`~medsight.inference.load.LoadedRun`, box detectors as
:class:`~medsight.inference.detection.LoadedDetector`. The API and the service load through here."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

from medsight.inference.detection import LoadedDetector, load_detector
from medsight.inference.load import LoadedRun, load_run
from medsight.runtime.ensemble_folder import run_task
from medsight.tasks import CLASSIFICATION, DETECTION, SEGMENTATION, require_command

Loaded = Union[LoadedRun, LoadedDetector]
LOADERS: dict[str, Callable[[Path], Loaded]] = {
    CLASSIFICATION.name: load_run,
    SEGMENTATION.name: load_run,
    DETECTION.name: load_detector,
}


def load_for_inference(run_dir: str | Path) -> Loaded:
    """A run folder (or ensemble) ready to predict, loaded the way its task kind needs."""
    kind = run_task(run_dir)
    if kind.name not in LOADERS:  # a pretrain run: an encoder, nothing to predict with
        require_command(kind, "predict", run_dir)
    return LOADERS[kind.name](Path(run_dir))
