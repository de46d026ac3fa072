"""Fit ``RUN/input_profile.json``, what the input guard (``inference/guard.py``) checks against.

The profile holds what the training images were (dimensionality, channels, modality, size and
spacing ranges, intensities: from the planner's fingerprint in ``plan.json``) and the
out-of-distribution score fitted on the model's penultimate-layer features:

- class means and a shared covariance on the training split (at most ``MAX_FIT_CASES``),
  shrunk towards a scaled identity (``SHRINKAGE``) so it stays invertible when the features
  outnumber the cases (BreastMNIST: 546 training images, 256 features);
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
from medsight.inference.guard import PROFILE_FILE, encode_array, energy_scores, features_and_logits, mahalanobis_scores
from medsight.inference.load import LoadedRun
from medsight.runtime.checkpoint import BEST
from medsight.utils.atomic import write_json

log = logging.getLogger(__name__)
FLAG_FRACTION = 0.05
MAX_FIT_CASES = 2000
SHRINKAGE = 0.1
# Refuse at 3x the val 99.9th percentile (the val maximum on small sets): far enough that on
# BreastMNIST (bench/guard.py) none of the 156 test images was refused (9% flagged), while all
# AdrenalMNIST3D slices and a fifth of the blood smears were; nearer foreign sets are flagged.
REFUSE_MULTIPLE = 3.0
METHOD = ("Mahalanobis distance of the penultimate features to the nearest class mean, shared "
          "covariance (Lee et al. 2018), divided by the feature count")


def _features(run: LoadedRun, split: PreparedSplit, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, logits and labels of at most ``limit`` cases (a seeded sample), read in chunks
    so that a split streamed from the cache is never held whole."""
    n = len(split)
    index = np.arange(n) if n <= limit else np.sort(np.random.default_rng(0).choice(n, limit, replace=False))
    feats, logits = [], []
    for start in range(0, len(index), 64):
        f, g = features_and_logits(run, split.images[index[start:start + 64].tolist()].float())
        feats.append(f)
        logits.append(g)
    return np.concatenate(feats), np.concatenate(logits), split.labels[torch.as_tensor(index)].numpy()


def fit_ood(run: LoadedRun, train: PreparedSplit, val: PreparedSplit, flag_fraction: float = FLAG_FRACTION) -> dict:
    """The OOD score's statistics (train) and thresholds (val)."""
    feats, _, labels = _features(run, train, MAX_FIT_CASES)
    classes = sorted(set(labels.tolist()))
    means = np.stack([feats[labels == k].mean(0) for k in classes])
    centred = feats - means[np.searchsorted(classes, labels)]
    cov = centred.T @ centred / len(feats)
    d = cov.shape[0]
    cov = (1 - SHRINKAGE) * cov + SHRINKAGE * np.trace(cov) / d * np.eye(d)
    precision = np.linalg.inv(cov)
    vfeats, vlogits, _ = _features(run, val, MAX_FIT_CASES)
    scores = mahalanobis_scores(vfeats, means, precision)
    flag = float(np.quantile(scores, 1 - flag_fraction))
    refuse = REFUSE_MULTIPLE * max(float(np.quantile(scores, 0.999)), flag)
    energy = energy_scores(vlogits)
    return {"method": "mahalanobis", "description": METHOD, "features": d, "n_fit": len(feats),
            "n_val": len(scores), "flag_fraction": flag_fraction, "flag_threshold": flag,
            "refuse_threshold": refuse, "refuse_rule": f"{REFUSE_MULTIPLE:g} x max(val 99.9th percentile, flag)",
            "flagged_on_val": float((scores > flag).mean()),
            "val_score": {"median": float(np.median(scores)), "p99_9": float(np.quantile(scores, 0.999))},
            "val_energy": {"median": float(np.median(energy)), "p95": float(np.quantile(energy, 0.95))},
            "class_means": encode_array(means), "precision": encode_array(precision)}


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
