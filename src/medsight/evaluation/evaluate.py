"""``medsight evaluate``: a run's model on a split, with CIs, plots and an HTML report.

Writes into the run folder (or ``out_dir``): ``metrics.json``, ``cases_<split>.csv`` (one row
per case with its probabilities, so the report can be rebuilt) and ``report.html``. With a
target sensitivity the threshold is chosen on the validation split and saved as
``decision.json`` in the run folder, where ``predict`` picks it up.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from medsight.data.prepared import prepare_data
from medsight.data.registry import build_dataset, dataset_kind
from medsight.errors import ConfigError, MedsightError
from medsight.evaluation.classification import (
    classification_metrics,
    threshold_for_sensitivity,
)
from medsight.evaluation.outputs import METRICS_FILE, write_cases
from medsight.evaluation.run_report import write_report
from medsight.evaluation.trust import trust_metrics
from medsight.inference.calibration import calibrated_softmax
from medsight.inference.load import load_run
from medsight.runtime.ensemble_folder import run_task
from medsight.runtime.run_folder import RunFolder
from medsight.tasks import CLASSIFICATION, DETECTION, SEGMENTATION, require_command
from medsight.utils.atomic import write_json

log = logging.getLogger(__name__)


def evaluate_run(run: Path, split: str = "test", data: Path | None = None,
                 target_sensitivity: float | None = None, threshold: float | None = None,
                 out_dir: Path | None = None, tta: bool = False, save_decision: bool = True) -> dict:
    """Evaluate a run on a split; ``tta`` averages the calibrated softmax over test-time views
    (segmentation: the probabilities over mirrored views, whatever the run's ``mirror_tta``).

    A threshold chosen for ``target_sensitivity`` is saved as the run's ``decision.json``
    unless ``save_decision`` is False."""
    kind = run_task(run)
    require_command(kind, "evaluate", run)
    if kind is not CLASSIFICATION:
        if target_sensitivity is not None or threshold is not None:
            raise ConfigError("--target-sensitivity and --threshold apply to classification runs")
        if kind is SEGMENTATION:  # tta: mirroring; without --tta, the run's own setting
            return _other_tasks()[kind.name](run, split, data, out_dir, mirror=True if tta else None)
        if tta:
            raise ConfigError(f"--tta applies to classification and segmentation runs, not {kind.name}")
        return _other_tasks()[kind.name](run, split, data, out_dir)
    return _evaluate_classification(run, split, data, target_sensitivity, threshold, out_dir, tta, save_decision)


def _other_tasks() -> dict[str, Callable[..., dict]]:
    """The evaluation of each task kind but classification (imported when used: each pulls its own
    metrics and plots), as ``(run, split, data, out_dir) -> metrics``."""
    from medsight.evaluation.detection_run import evaluate_detection
    from medsight.evaluation.evaluate_segmentation import evaluate_segmentation

    return {SEGMENTATION.name: evaluate_segmentation, DETECTION.name: evaluate_detection}


def _evaluate_classification(run: Path, split: str, data: Path | None, target_sensitivity: float | None,
                             threshold: float | None, out_dir: Path | None, tta: bool, save_decision: bool) -> dict:
    loaded = load_run(run)
    cfg = loaded.inference_config()
    if data is not None:
        cfg.data = cfg.data.model_copy(update={"dataset": dataset_kind(Path(data)), "path": Path(data)})
    # An external set without its own splits is evaluated as a whole.
    dataset = build_dataset(cfg.data, cfg.train.seed, unsplit=split if data is not None else None)
    names = loaded.class_names
    if dataset.class_names != names:
        raise MedsightError(f"{data or cfg.data.path}: classes {dataset.class_names} do not match "
                            f"the model's {names}")
    binary = len(names) == 2
    target_sensitivity = target_sensitivity or cfg.evaluation.target_sensitivity
    if target_sensitivity is not None and not binary:
        raise ConfigError("--target-sensitivity applies to binary tasks only")
    splits = [split] + (["val"] if target_sensitivity is not None and split != "val" else [])
    prepared, _ = prepare_data(dataset, cfg, splits, channels=int(loaded.plan["in_channels"]))
    prepared = {name: loaded.with_clinical(part) for name, part in prepared.items()}  # fused runs: + table

    logits: dict[str, torch.Tensor] = {}  # (views, N, K) per split, for the trust metrics

    def probabilities(name: str) -> tuple[np.ndarray, np.ndarray]:
        part = prepared[name]
        logits[name] = loaded.view_logits(part.images, tta)
        return part.labels.numpy(), calibrated_softmax(logits[name], loaded.temperature(tta)).mean(0).numpy()

    y, probs = probabilities(split)
    source = "default"
    thr = cfg.evaluation.threshold
    if threshold is not None:
        thr, source = threshold, "given"
    elif target_sensitivity is not None:
        y_val, p_val = probabilities("val")
        thr = threshold_for_sensitivity(y_val, p_val[:, 1], target_sensitivity)
        source = f"val split, target sensitivity {target_sensitivity:g}"
        if save_decision:
            write_json(RunFolder(run).decision, {"threshold": thr, "target_sensitivity": target_sensitivity,
                                                     "chosen_on": "val", "temperature": loaded.temperature(),
                                                     "tta": tta})
    metrics = classification_metrics(y, probs, names, threshold=thr if binary else None,
                                     n_bootstrap=cfg.evaluation.n_bootstrap, seed=cfg.train.seed)
    if loaded.members:  # an ensemble: each member beside it, on the same images
        metrics["members"] = [_member_row(m, prepared[split], y, names, thr if binary else None, tta)
                              for m in loaded.members]
    metrics.update({"split": split, "data": str(data or cfg.data.path or cfg.data.dataset),
                    "threshold_source": source if binary else "argmax", "model": cfg.model.name,
                    "skipped_files": len(dataset.skipped)})
    trust, columns = trust_metrics(y, logits[split], loaded.temperature(tta), loaded.review_threshold(tta),
                                   thr if binary else None, names, [v.name for v in loaded.views(tta)])
    metrics.update(trust)
    out = Path(out_dir) if out_dir is not None else Path(run)
    write_json(out / METRICS_FILE, metrics)
    write_cases(out / f"cases_{split}.csv", prepared[split].ids, prepared[split].sources, y, probs, names,
                columns)
    write_report(out, Path(run), CLASSIFICATION, metrics)
    return metrics


def _member_row(member, part, y: np.ndarray, names: list[str], threshold: float | None, tta: bool) -> dict:
    probs = member.probabilities(part.images, tta).mean(0).numpy()
    m = classification_metrics(y, probs, names, threshold=threshold, n_bootstrap=0)
    return {"run": str(member.run_dir), "auc": m["auc"], "accuracy": m["accuracy"], "ece": m["ece"]}
