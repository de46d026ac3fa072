"""Temperature scaling (Guo et al., 2017): calibrated probabilities ``softmax(logits / T)``.

One scalar ``T > 0`` is fitted on the validation split by minimising the negative
log-likelihood; ``T > 1`` softens an over-confident model. Dividing every logit by the same
positive number never changes the arg-max, and for two classes it keeps the order of the
cases, so AUC and the decisions at 0.5 stay as they were; only the confidence moves.

With test-time augmentation the probabilities are the mean of ``softmax(logits_v / T)``
over the views ``v``, and that mixture gets its own temperature, fitted the same way.
``RUN/calibration.json`` (written by ``medsight calibrate`` and at the end of training,
see :mod:`medsight.evaluation.calibrate`) holds both; this module reads it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from medsight.errors import InputFileError, MedsightError
from medsight.inference.engine import file_sha256
from medsight.runtime.run_folder import CALIBRATION_FILE

log = logging.getLogger(__name__)
# Search range for T: wide enough for any real model (over-confident nets need 1.5-5).
T_MIN, T_MAX = 1e-2, 1e2


@dataclass(frozen=True)
class Calibration:
    """What predict, evaluate and the service need from ``calibration.json``."""

    temperature: float
    review_threshold: float | None = None  # normalised entropy above which a case needs review
    tta_temperature: float | None = None
    tta_review_threshold: float | None = None

    def temperature_for(self, tta: bool) -> float:
        return float(self.tta_temperature if tta and self.tta_temperature is not None else self.temperature)

    def review_threshold_for(self, tta: bool) -> float | None:
        return self.tta_review_threshold if tta and self.tta_review_threshold is not None else self.review_threshold


def as_views(logits: torch.Tensor) -> torch.Tensor:
    """Logits as a stack of views ``(V, N, K)``; a plain ``(N, K)`` is one view."""
    logits = torch.as_tensor(logits)
    if logits.ndim == 2:
        return logits[None]
    if logits.ndim != 3:
        raise MedsightError(f"logits must have shape (N, K) or (views, N, K), got {tuple(logits.shape)}")
    return logits


def calibrated_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``softmax(logits / T)`` over the class axis (the last one), in fp32."""
    if not temperature > 0:
        raise MedsightError(f"temperature must be > 0, got {temperature}")
    return torch.softmax(torch.as_tensor(logits).float() / temperature, dim=-1)


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under the view-averaged ``softmax(logits / T)``."""
    views = as_views(logits).double()
    labels = torch.as_tensor(labels).long()
    log_p = torch.log_softmax(views / temperature, dim=-1)
    # log of the mean over views, computed stably in log space
    log_mean = torch.logsumexp(log_p, dim=0) - math.log(views.shape[0])
    return float(-log_mean.gather(1, labels[:, None]).mean())


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The ``T`` in ``[T_MIN, T_MAX]`` minimising :func:`nll` (bounded Brent search on ``log T``).

    For one view the NLL is convex in ``1/T``, so the search finds the global minimum. A bounded
    search rather than unconstrained LBFGS: on a separable validation split the NLL keeps falling
    as ``T -> 0`` and an unbounded optimiser runs away.
    """
    views = as_views(logits).double()
    labels = torch.as_tensor(labels).long()
    if views.shape[1] == 0 or views.shape[1] != labels.shape[0]:
        raise MedsightError(f"cannot fit a temperature on {views.shape[1]} logits and {labels.shape[0]} labels")
    result = minimize_scalar(lambda log_t: nll(views, labels, math.exp(log_t)),
                             bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded",
                             options={"xatol": 1e-5})
    return float(math.exp(result.x))


def read_calibration(run_dir: Path, checkpoint_file: Path | None = None) -> Calibration | None:
    """``RUN/calibration.json`` as a :class:`Calibration`, or None when there is none.

    When ``checkpoint_file`` is given and the calibration was fitted on another checkpoint (a
    resumed or replaced model), it is stale: ignored with a warning (``medsight calibrate`` refits).
    """
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        temperature = float(raw["temperature"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"not a calibration file ({type(exc).__name__}: {exc}); "
                                   "run `medsight calibrate` again") from None
    if not (np.isfinite(temperature) and temperature > 0):
        raise InputFileError(path, f"temperature must be a positive number, got {temperature}")
    fitted_on = raw.get("checkpoint_sha256")
    if checkpoint_file is not None and fitted_on and fitted_on != file_sha256(checkpoint_file):
        log.warning("%s was fitted on another checkpoint; using uncalibrated probabilities. "
                    "Run `medsight calibrate %s` again.", path, run_dir)
        return None
    tta = raw.get("tta") or {}
    return Calibration(temperature, _optional(raw.get("review_threshold")),
                       _optional(tta.get("temperature")), _optional(tta.get("review_threshold")))


def _optional(value) -> float | None:
    return None if value is None else float(value)


def rescale_threshold(threshold: float, chosen_at: float, temperature: float) -> float:
    """A binary threshold chosen on ``softmax(logits / chosen_at)``, moved to ``softmax(logits / T)``.

    With ``d`` the logit difference, ``sigmoid(d / T0) >= t`` means ``d >= T0 * logit(t)``, so the
    same decisions at ``T`` need the threshold ``sigmoid(logit(t) * T0 / T)``.
    """
    if chosen_at == temperature:
        return float(threshold)
    t = min(max(float(threshold), 1e-12), 1 - 1e-12)
    return float(1.0 / (1.0 + math.exp(-math.log(t / (1 - t)) * chosen_at / temperature)))
