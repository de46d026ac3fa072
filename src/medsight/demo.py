"""``medsight demo``: the whole pipeline on the built-in synthetic chest-CT set.

Trains a nodule classifier, evaluates it with confidence intervals, writes a few held-out
slices as real DICOM files, diagnoses them through the normal reader with Grad-CAM
heatmaps, and puts everything in one HTML report. No download.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from medsight.config import load_config
from medsight.data.synthetic import synthetic_sample
from medsight.errors import ConfigError
from medsight.evaluation.calibrate import fit_on_val
from medsight.evaluation.evaluate import evaluate_run
from medsight.evaluation.run_report import write_report
from medsight.inference.batch import predict_paths
from medsight.io.dicom_write import write_ct_slice
from medsight.io.image import spacing_of
from medsight.tasks import CLASSIFICATION, SEGMENTATION
from medsight.training.run import train_run

log = logging.getLogger(__name__)
N_EXAMPLES = 6


def demo_config_path(task: str = CLASSIFICATION.name) -> Path:
    if task not in DEMOS:
        raise ConfigError(f"unknown demo task {task!r}; choose {' or '.join(DEMOS)}")
    return Path(str(resources.files("medsight") / "resources" / DEMOS[task][0]))


def run_demo(out: Path, epochs: int | None = None, overrides: list[str] | None = None,
             task: str = CLASSIFICATION.name) -> Path:
    """Run the demo into ``out``; the run folder is ``out/run``."""
    config = demo_config_path(task)
    out = Path(out)
    overrides = list(overrides or []) + ([f"train.epochs={epochs}"] if epochs else [])
    cfg = load_config(config, overrides)
    run_dir = train_run(cfg, out / "run", overwrite=True, calibrate=fit_on_val)
    return DEMOS[task][1](out, run_dir, cfg)


def _classification_demo(out: Path, run_dir: Path, cfg) -> Path:
    """Evaluate (AUC with CIs, calibration), then diagnose held-out DICOM slices into the report."""
    evaluate_run(run_dir, split="test")
    examples = write_examples(out / "examples", cfg.data.synthetic.seed, cfg.data.synthetic.size)
    predictions = predict_paths(run_dir, examples, out / "predictions").results
    write_report(run_dir, run_dir, CLASSIFICATION, predictions=predictions)
    return run_dir


def _segmentation_demo(out: Path, run_dir: Path, cfg) -> Path:
    """Evaluate (Dice, HD95, FROC), then segment held-out DICOM slices: NIfTI, DICOM SEG, lesions."""
    from medsight.evaluation.evaluate_segmentation import evaluate_segmentation
    from medsight.inference.segment import segment_paths

    evaluate_segmentation(run_dir, split="test")
    examples = write_examples(out / "examples", cfg.data.synthetic.seed, cfg.data.synthetic.size)
    segment_paths(run_dir, examples, out / "segmentations")
    return run_dir


# the task kinds with a demo (medsight.tasks): their config and what follows training
DEMOS: dict[str, tuple[str, Callable[[Path, Path, Any], Path]]] = {
    CLASSIFICATION.name: ("demo.yaml", _classification_demo),
    SEGMENTATION.name: ("demo-segmentation.yaml", _segmentation_demo),
}
TASKS = tuple(DEMOS)


def write_examples(folder: Path, seed: int, size: int) -> list[Path]:
    """Held-out test slices as CT DICOM files, half with a nodule."""
    paths, want = [], {0: N_EXAMPLES // 2, 1: N_EXAMPLES - N_EXAMPLES // 2}
    index = 0
    while any(want.values()):
        item = synthetic_sample(seed, "test", index, size)
        if want[item["label"]]:
            want[item["label"]] -= 1
            name = f"test{index:04d}_{'nodule' if item['label'] else 'clear'}.dcm"
            paths.append(write_ct_slice(item["image"][0].numpy(), folder / name,
                                        spacing_of(item["image"]), instance=index + 1))
        index += 1
    return paths
