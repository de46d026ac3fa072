"""Fit ``RUN/input_profile.json``, what the input guard (``inference/guard.py``) checks against.

The profile holds what the training images were (dimensionality, channels, modality, size and
spacing ranges, intensities: from the planner's fingerprint in ``plan.json``) and the
out-of-distribution score (``inference/ood_score.py``) fitted on the model's features at several
layers (``models/taps.py``):

- per layer, class means and a shared covariance on the training split (at most
  ``MAX_FIT_CASES``), shrunk towards a scaled identity so it stays invertible when the features
  outnumber the cases (BreastMNIST: 546 training images, up to 512 features), and the layer's
  median distance on the validation split, which scales it;
- thresholds chosen on the validation split: **flag** above the score the most unusual
  ``flag_fraction`` (default 5%) of validation cases exceed; **refuse** above ``REFUSE_MULTIPLE``
  times the largest of the validation scores' 99.9th percentile and the flag threshold.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from medsight.data.prepared import PreparedSplit
from medsight.inference.engine import file_sha256
from medsight.inference.guard import PROFILE_FILE, layer_features
from medsight.inference.load import LoadedRun
from medsight.inference.ood_score import METHOD, VERSION, energy_scores, fit_layers, ood_scores
from medsight.models.taps import tap_names
from medsight.runtime.checkpoint import BEST
from medsight.utils.atomic import write_json

log = logging.getLogger(__name__)
FLAG_FRACTION = 0.05
MAX_FIT_CASES = 2000
# Refuse at 3x the val 99.9th percentile (the val maximum on small sets): far enough that on
# BreastMNIST (bench/guard.py) none of the 156 test images was refused, while all AdrenalMNIST3D
# slices, synthetic CT slices and blood smears were; nearer foreign sets are flagged.
REFUSE_MULTIPLE = 3.0


def _features(run: LoadedRun, split: PreparedSplit, taps: list[str], limit: int
              ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Features per layer, logits and labels of at most ``limit`` cases (a seeded sample), read
    in chunks so that a split streamed from the cache is never held whole."""
    n = len(split)
    index = np.arange(n) if n <= limit else np.sort(np.random.default_rng(0).choice(n, limit, replace=False))
    feats: dict[str, list[np.ndarray]] = {}
    logits = []
    for start in range(0, len(index), 64):
        f, g = layer_features(run, split.images[index[start:start + 64].tolist()].float(), taps)
        for name, v in f.items():
            feats.setdefault(name, []).append(v)
        logits.append(g)
    return ({name: np.concatenate(v) for name, v in feats.items()}, np.concatenate(logits),
            split.labels[torch.as_tensor(index)].numpy())


def fit_ood(run: LoadedRun, train: PreparedSplit, val: PreparedSplit, flag_fraction: float = FLAG_FRACTION) -> dict:
    """The OOD score's statistics (train, val medians) and thresholds (val)."""
    taps = tap_names(run.model)
    feats, _, labels = _features(run, train, taps, MAX_FIT_CASES)
    vfeats, vlogits, _ = _features(run, val, taps, MAX_FIT_CASES)
    ood = {"version": VERSION, "method": "feature-ensemble", "description": METHOD,
           "layers": fit_layers(feats, labels, vfeats)}
    scores = ood_scores(ood, vfeats, vlogits)
    flag = float(np.quantile(scores, 1 - flag_fraction))
    refuse = REFUSE_MULTIPLE * max(float(np.quantile(scores, 0.999)), flag)
    energy = energy_scores(vlogits)
    return {**ood, "n_fit": len(labels), "n_val": len(scores), "flag_fraction": flag_fraction,
            "flag_threshold": flag, "refuse_threshold": refuse,
            "refuse_rule": f"{REFUSE_MULTIPLE:g} x max(val 99.9th percentile, flag)",
            "flagged_on_val": float((scores > flag).mean()),
            "val_score": {"median": float(np.median(scores)), "p99_9": float(np.quantile(scores, 0.999))},
            "val_energy": {"median": float(np.median(energy)), "p95": float(np.quantile(energy, 0.95))}}


def fit_profile(run: LoadedRun, train: PreparedSplit, val: PreparedSplit,
                flag_fraction: float = FLAG_FRACTION) -> dict:
    """Fit and write ``RUN/input_profile.json`` for a classification run; return it."""
    plan = run.plan
    fp = plan.get("fingerprint") or {}
    spacings = np.array(train.source_spacings or [], dtype=float)
    intensity = fp.get("intensity") or {}
    profile = {
        "task": plan.get("task", "classification"),
        "spatial_dims": int(plan["spatial_dims"]),
        "channels": int(fp.get("channels") or plan["in_channels"]),
        "in_channels": int(plan["in_channels"]),
        "modality": fp.get("modality"),
        # CT in Hounsfield units (air at -1000): the planner windows it (planning/classification.py)
        "hounsfield": str(fp.get("modality")).upper() == "CT" and intensity.get("min", 0) < -200,
        "size_range": [fp.get("shape_min"), fp.get("shape_max")],
        "spacing_range": ([spacings.min(0).tolist(), spacings.max(0).tolist()] if spacings.size else None),
        "intensity": intensity,
        "intensity_after_preprocessing": plan.get("intensity_after_preprocessing"),
        "ood": fit_ood(run, train, val, flag_fraction),
        "checkpoint_sha256": file_sha256(Path(run.run_dir) / "checkpoints" / BEST),
    }
    write_json(Path(run.run_dir) / PROFILE_FILE, profile)
    ood = profile["ood"]
    log.info("input profile: OOD flag above %.3g (%.1f%% of val), refuse above %.3g (%s)", ood["flag_threshold"],
             100 * ood["flagged_on_val"], ood["refuse_threshold"], PROFILE_FILE)
    return profile
