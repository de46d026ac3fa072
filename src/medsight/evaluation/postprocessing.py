"""Choose a segmentation run's post-processing on its validation split (nnU-Net's rule).

For each foreground class, keeping only its largest connected component is adopted when it
raises the mean per-case validation Dice of that class (on the source grid, as evaluate
measures). The choice is written to ``RUN/postprocessing.json`` and applied by ``segment``,
``evaluate`` and the service (see :mod:`medsight.inference.postprocess`).

After a training with a time budget, the choice gets a share of that budget
(:func:`after_training_budget`): whole 512x512x300 CT volumes take minutes each on a CPU, and a
ten-minute training should not be followed by an hour of validation. It segments the cases that
fit; when not even one fits, it chooses nothing and says how to choose on demand
(``medsight calibrate RUN``, with no limit), as nnU-Net chooses post-processing after training.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from medsight.data.loading import load_items
from medsight.data.registry import build_dataset
from medsight.errors import ConfigError
from medsight.inference.engine import file_sha256
from medsight.inference.load import LoadedRun, load_run
from medsight.inference.postprocess import POSTPROCESSING_FILE, keep_largest
from medsight.inference.segment import segment_image
from medsight.runtime.checkpoint import BEST
from medsight.runtime.run_folder import checkpoint_path
from medsight.runtime.sliding import OverBudget, window_count
from medsight.tasks import SEGMENTATION
from medsight.utils.atomic import write_json

log = logging.getLogger(__name__)
# validation cases segmented for the choice (evenly spaced when there are more): whole volumes
# are minutes each on a CPU, so 3D gets fewer
MAX_CASES = {2: 200, 3: 10}
# after a time-budgeted training, the choice may take this share of the budget (at least a minute)
AFTER_TRAINING_SHARE = 0.25
AFTER_TRAINING_MIN_S = 60.0


def after_training_budget(minutes: float | None) -> float | None:
    """Seconds the choice may take after a training of ``minutes`` (None: no limit)."""
    return None if minutes is None else max(AFTER_TRAINING_MIN_S, AFTER_TRAINING_SHARE * 60 * minutes)


def choose_postprocessing(run_dir: str | Path, budget_s: float | None = None) -> dict:
    """Compare Dice with and without largest-component filtering on val; save and return the choice.

    ``budget_s``: stop before a case that would end after this many seconds (None: no limit)."""
    run_dir = Path(run_dir)
    loaded = load_run(run_dir)
    if loaded.kind is not SEGMENTATION:
        raise ConfigError(f"{run_dir}: post-processing applies to segmentation runs, not {loaded.kind.name}")
    cfg = loaded.cfg
    items = build_dataset(cfg.data, cfg.train.seed).split("val")
    most = MAX_CASES[2 if loaded.spatial_dims == 2 else 3]
    if len(items) > most:
        items = [items[i] for i in np.linspace(0, len(items) - 1, most).round().astype(int)]
    n_val = len(items)
    classes = list(range(1, len(loaded.class_names)))
    plain, largest = ({k: [] for k in classes} for _ in range(2))
    deadline = None if budget_s is None else time.monotonic() + budget_s
    stopped = None
    if budget_s is not None:
        # a median case that cannot fit is not even read: a CT read, preprocessed and given
        # MONAI's output buffers costs the training process ~2 GB more for nothing
        per_case = case_seconds(loaded)
        if per_case > budget_s:
            stopped, items = per_case, items[:0]
    for item in tqdm(items, desc="choosing post-processing on val", unit="case", disable=None):
        got, _ = load_items([item], policy="skip", progress=False)
        if not got or got[0].get("mask") is None:
            continue
        try:
            labels = segment_image(loaded, got[0]["image"], postprocess=False, deadline=deadline).labels.as_tensor()
        except OverBudget as over:
            stopped = over.seconds
            break
        ref = torch.as_tensor(np.asarray(got[0]["mask"])).round().long()
        for k in classes:
            plain[k].append(_dice(labels == k, ref == k))
            largest[k].append(_dice(keep_largest(labels, [k]) == k, ref == k))
    n = len(plain[classes[0]]) if classes else 0
    if stopped is not None:
        log.warning("post-processing chosen on %d of %d val cases, within the %.0f s allotted after training%s%s",
                    n, n_val, budget_s, "" if stopped == float("inf") else
                    f" (the next would take about {stopped:.0f} s)",
                    "; choose it on demand, with no limit: medsight calibrate RUN" if n == 0 else "")
    chosen, scores = [], {}
    for k in classes:
        name = loaded.class_names[k]
        if not plain[k]:
            continue
        before, after = (round(float(np.mean(v)), 4) for v in (plain[k], largest[k]))
        scores[name] = {"none": before, "largest_component": after}
        if after > before:
            chosen.append(name)
    result = {"rule": "keep the largest component of a class where that raised its mean val Dice",
              "largest_component": chosen, "val_dice": scores, "n": n, "val_cases": n_val,
              "budget_s": budget_s, "checkpoint_sha256": file_sha256(checkpoint_path(run_dir, BEST))}
    write_json(run_dir / POSTPROCESSING_FILE, result)
    if scores:
        log.info("post-processing on val: %s", ", ".join(
            f"{n}: Dice {s['none']:.3f} -> {s['largest_component']:.3f} with the largest component"
            f"{' (kept)' if n in chosen else ' (not kept)'}" for n, s in scores.items()))
    return result


def case_seconds(run: LoadedRun) -> float:
    """Seconds a median case of the run's training set takes by sliding windows on this machine:
    its preprocessed shape (from the plan's fingerprint) in windows, times one timed batch."""
    cfg, fp = run.cfg, run.plan.get("fingerprint") or {}
    seg = cfg.segmentation
    patch, batch = tuple(seg.patch_size), int(cfg.train.batch_size)
    shape = [float(s) for s in fp.get("shape_median") or patch]
    if cfg.transforms.spatial_size:
        shape = list(cfg.transforms.spatial_size)
    elif cfg.transforms.spacing and fp.get("spacing_median"):
        shape = [s * a / b for s, a, b in zip(shape, fp["spacing_median"], cfg.transforms.spacing)]
    flips = 2 ** len(patch) if seg.mirror_tta else 1
    calls = math.ceil(window_count([round(s) for s in shape], patch, seg.sw_overlap) / batch) * flips
    x = run.runtime.batch(torch.zeros(batch, int(run.plan["in_channels"]), *patch))
    run.model.eval()
    with torch.inference_mode(), run.runtime.autocast():
        run.model(x)  # one-off kernel set-up
        start = time.perf_counter()
        run.model(x)
    return calls * (time.perf_counter() - start)


def _dice(pred: torch.Tensor, ref: torch.Tensor) -> float:
    """Dice of two boolean masks; both empty counts as 1 (as evaluate counts it)."""
    total = int(pred.sum()) + int(ref.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & ref).sum()) / total
