"""``medsight calibrate``: fit a classification run's temperature and review threshold on val.

Writes ``RUN/calibration.json``, which predict, evaluate and the service then use (see
:mod:`medsight.inference.calibration`)::

    temperature, ece_before, ece_after, nll_before, nll_after   on the val split, n cases
    review_fraction, review_threshold    the normalised entropy the review_fraction most
                                         uncertain val cases exceed ("needs review" above it)
    tta: {views, temperature, ece_*, nll_*, review_threshold}   the same for test-time augmentation
    checkpoint_sha256                    the checkpoint it was fitted on (stale otherwise)

It runs by itself at the end of every classification training, and then chooses the engine
predict uses on this CPU (``inference/engine_choice.py``: ``RUN/engine.json``). The review threshold is chosen
on calibrated probabilities, so at the default fraction about one case in ten of a population
like the validation split is flagged; ``evaluation.review_threshold`` in the config overrides it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from medsight.data.prepared import PreparedSplit
from medsight.errors import ConfigError
from medsight.evaluation.calibration import expected_calibration_error
from medsight.inference.calibration import CALIBRATION_FILE, calibrated_softmax, fit_temperature, nll, read_calibration
from medsight.inference.engine import file_sha256
from medsight.inference.engine_choice import choose_engine
from medsight.inference.guard_profile import FLAG_FRACTION, fit_profile
from medsight.inference.load import LoadedRun, load_run
from medsight.inference.uncertainty import normalised_entropy, review_threshold
from medsight.runtime.checkpoint import BEST
from medsight.runtime.ensemble_folder import run_task
from medsight.runtime.run_folder import checkpoint_path, read_config
from medsight.tasks import CLASSIFICATION, SEGMENTATION, require_command
from medsight.utils.atomic import write_json

log = logging.getLogger(__name__)
METHOD = "temperature scaling (Guo et al. 2017): T minimising the NLL of softmax(logits / T) on val"


def fit_on_val(run_dir: str | Path, val: PreparedSplit | None = None, train: PreparedSplit | None = None) -> dict:
    """What a run fits on its val split once trained: temperature, review threshold and the
    input profile (classification; ``train`` feeds the profile), or post-processing
    (segmentation, :mod:`.postprocessing`)."""
    if run_task(Path(run_dir)) is SEGMENTATION:
        from medsight.evaluation.postprocessing import after_training_budget, choose_postprocessing

        minutes = read_config(run_dir).train.time_budget_minutes
        return choose_postprocessing(run_dir, budget_s=after_training_budget(minutes))
    return calibrate_run(run_dir, val=val, train=train)


def calibrate_run(run_dir: str | Path, val: PreparedSplit | None = None, review_fraction: float | None = None,
                  tta: bool = True, train: PreparedSplit | None = None, ood_fraction: float = FLAG_FRACTION,
                  profile: bool = True) -> dict:
    """Fit and save ``calibration.json`` for a classification run, and its input profile
    (``input_profile.json``, the input guard's: ``profile``); return the calibration.

    ``val``/``train``: the prepared splits when the caller has them (training), else they are
    prepared from the run's config. ``tta``: also fit the test-time-augmentation temperature and
    threshold. ``ood_fraction``: the share of val cases the guard's flag threshold flags.
    """
    run_dir = Path(run_dir)
    kind = run_task(run_dir)
    if kind.hint:  # a pretrain run: one line saying to fine-tune it first
        require_command(kind, "calibrate", run_dir)
    if kind is not CLASSIFICATION:
        raise ConfigError(f"{run_dir}: calibration applies to classification runs, not {kind.name}")
    loaded = load_run(run_dir)
    fraction = review_fraction if review_fraction is not None else loaded.cfg.evaluation.review_fraction
    val = val if val is not None else val_split(loaded)
    y = val.labels
    # The identity is the first test-time view: one pass serves both fits.
    logits = loaded.view_logits(val.images, tta=tta)
    result = {"method": METHOD, "split": "val", "n": len(y), **_fit(logits[:1], y, fraction),
              "review_fraction": fraction, "engine": loaded.engine.name,
              "checkpoint_sha256": file_sha256(checkpoint_path(run_dir, BEST))}
    if tta:
        result["tta"] = {"views": [v.name for v in loaded.views(True)], **_fit(logits, y, fraction)}
    write_json(run_dir / CALIBRATION_FILE, result)
    log.info("calibration: temperature %.3f; val ECE %.3f -> %.3f, NLL %.3f -> %.3f (n = %d)",
             result["temperature"], result["ece_before"], result["ece_after"], result["nll_before"],
             result["nll_after"], len(y))
    if profile and loaded.clinical is None:  # fused runs' features hold the table too: not profiled
        fit_profile(loaded, train if train is not None else val_split(loaded, "train"), val, ood_fraction)
    if loaded.clinical is None:  # fused runs (images + table) run in PyTorch only
        loaded.calibration = read_calibration(run_dir, checkpoint_path(run_dir, BEST))
        choose_engine(loaded, val.images)
    return result


def val_split(loaded: LoadedRun, split: str = "val") -> PreparedSplit:
    """The run's validation (or another) split, preprocessed as the model expects."""
    return loaded.prepared_splits([split])[split]


def _fit(logits: torch.Tensor, y: torch.Tensor, fraction: float) -> dict:
    """Temperature, ECE and NLL before and after, and the review threshold, for views ``(V, N, K)``."""
    t = fit_temperature(logits, y)
    before = calibrated_softmax(logits, 1.0).mean(0).numpy()
    after = calibrated_softmax(logits, t).mean(0).numpy()
    labels, entropy = y.numpy(), normalised_entropy(after)
    threshold = review_threshold(entropy, fraction)
    return {"temperature": round(t, 6),
            "ece_before": expected_calibration_error(labels, before),
            "ece_after": expected_calibration_error(labels, after),
            "nll_before": nll(logits, y, 1.0), "nll_after": nll(logits, y, t),
            # ties (e.g. many saturated cases) can make the flagged share differ from the fraction
            "review_threshold": threshold, "flagged_on_val": float((entropy > threshold).mean())}
