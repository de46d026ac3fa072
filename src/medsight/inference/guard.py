"""The input guard: refuse what a model was never trained on, flag what looks unlike its data.

A classification run keeps ``RUN/input_profile.json`` (fitted by ``inference/guard_profile.py``
at the end of training and by ``medsight calibrate``). Before a prediction the guard checks:

- clearly foreign, **refused** (``ForeignInputError``, one line naming the file and why):
  another dimensionality (a volume to a 2D model), a colour photograph to a grey model, another
  modality when both are known (MR to a CT model), or an out-of-distribution score beyond the
  run's refuse threshold;
- **flagged**: a score beyond the flag threshold (the score the most unusual ``flag_fraction``
  of validation cases exceed) marks the prediction ``out_of_distribution: true`` and
  ``needs_review: true``. An 8-bit picture (0..255) sent to a model trained on CT in Hounsfield
  units (a CT slice exported as PNG, an X-ray) is flagged with that reason as ``ood_note``,
  never refused by its score: the content may be right, the units are not.

``allow_foreign`` predicts a refused input anyway; the prediction is then marked out of
distribution and carries the reason as ``foreign_override``. A run without a profile (trained
before the guard existed) predicts as before, unguarded, with a log line saying so.

The score is the Mahalanobis distance of the penultimate-layer features to the nearest class
mean under a shared covariance (Lee et al. 2018), divided by the feature count. bench/guard.py
measured it against the energy score (Liu et al. 2020) on a BreastMNIST run (planned, 3-minute
budget, val AUC 0.70), its test split against each foreign set: AUROC Mahalanobis / energy =
0.73 / 0.53 RetinaMNIST (grey), 1.00 / 0.00 AdrenalMNIST3D mid-slices, 1.00 / 0.21 synthetic CT,
0.67 / 0.64 fundus photographs (grey), 1.00 / 0.24 blood smears (grey). Energy ranks several
foreign sets as *more* familiar (the net is confident on them), so Mahalanobis is used.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.errors import ForeignInputError
from medsight.inference.load import LoadedRun
from medsight.models.contrastive import feature_layer
from medsight.runtime.run_folder import PROFILE_FILE

log = logging.getLogger(__name__)
# Mean per-pixel colour spread (max - min over channels, over the image's range) above which an
# image counts as a colour picture; a grey image saved as RGB has 0, the colour photographs and
# fundus images of bench/guard.py 0.08 to 0.5.
COLOUR_SATURATION = 0.05
UNKNOWN_MODALITIES = {"", "OT", "NONE"}


def encode_array(a: np.ndarray) -> dict:
    """A float32 array as JSON: shape and base64 bytes (a 256x256 precision matrix: 350 kB)."""
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(a.shape), "float32_base64": base64.b64encode(a.tobytes()).decode()}


def decode_array(d: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["float32_base64"]), dtype="<f4").reshape(d["shape"]).astype(np.float64)


@torch.no_grad()
def features_and_logits(run: LoadedRun, images: torch.Tensor, batch_size: int = 64
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features ``(N, D)`` and logits ``(N, K)`` of model-space images, from the
    PyTorch model (also when predictions run on the ONNX export). A pretrain run's features are
    its encoder's output and its "logits" the projection."""
    captured: list[torch.Tensor] = []
    hook = feature_layer(run.model).register_forward_hook(
        lambda _m, inputs, _out: captured.append(inputs[0].detach().float().flatten(1).cpu()))
    logits = []
    try:
        with torch.inference_mode(), run.runtime.autocast():
            for start in range(0, len(images), batch_size):
                logits.append(run.model(run.runtime.batch(images[start:start + batch_size])).float().cpu())
    finally:
        hook.remove()
    return torch.cat(captured).numpy().astype(np.float64), torch.cat(logits).numpy().astype(np.float64)


def mahalanobis_scores(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """min over classes of (f - mu_k)^T P (f - mu_k) / D: 1 on average for the training features."""
    d2 = np.stack([np.einsum("nd,de,ne->n", features - mu, precision, features - mu) for mu in means], 1)
    return d2.min(1) / features.shape[1]


def energy_scores(logits: np.ndarray) -> np.ndarray:
    """Negative free energy -logsumexp(logits) (Liu et al. 2020): higher is more foreign."""
    m = logits.max(1, keepdims=True)
    return -(m[:, 0] + np.log(np.exp(logits - m).sum(1)))


@dataclass
class InputGuard:
    profile: dict[str, Any]

    @property
    def ood(self) -> dict[str, Any]:
        return self.profile["ood"]

    def refusal(self, image) -> str | None:
        """Why a raw image (channel first, as ``read_image`` returns it) is clearly foreign, or None."""
        p = self.profile
        shape = [int(s) for s in image.shape[1:]]
        dims = sum(s > 1 for s in shape)
        if dims > p["spatial_dims"]:
            return (f"a {len(shape)}D image of shape {shape}; the model was trained on {p['spatial_dims']}D "
                    "images (foreign input)")
        modality = str(image.meta.get("modality") or "").upper() if hasattr(image, "meta") else ""
        trained = str(p.get("modality") or "").upper()
        if modality not in UNKNOWN_MODALITIES and trained not in UNKNOWN_MODALITIES and modality != trained:
            return f"modality {modality}; the model was trained on {trained} images (foreign input)"
        if p["channels"] == 1 and image.shape[0] >= 3:
            spread = colour_saturation(_array(image[:3]))
            if spread > COLOUR_SATURATION:
                return (f"a colour image (saturation {spread:.2f}); the model was trained on grey images "
                        "(foreign input)")
        return None

    def caveat(self, image) -> str | None:
        """Why an image that is not refused may be misread (8-bit pixels to a Hounsfield model), or None."""
        if self.profile.get("hounsfield") and image.numel():
            low, high = float(image.min()), float(image.max())
            if low >= 0 and high <= 255:
                return "8-bit picture values (0..255); the model was trained on CT in Hounsfield units"
        return None

    def scores(self, run: LoadedRun, images: torch.Tensor) -> np.ndarray:
        feats, logits = features_and_logits(run, images)
        return score_features(self.ood, feats, logits)

    def judge(self, score: float) -> str:
        """``"refuse"``, ``"flag"`` or ``"ok"`` for an OOD score."""
        if score > self.ood["refuse_threshold"]:
            return "refuse"
        return "flag" if score > self.ood["flag_threshold"] else "ok"


def score_features(ood: dict, features: np.ndarray, logits: np.ndarray) -> np.ndarray:
    if ood["method"] == "energy":
        return energy_scores(logits)
    return mahalanobis_scores(features, decode_array(ood["class_means"]), decode_array(ood["precision"]))


def _array(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        return image.detach().cpu().float().numpy()  # a MetaTensor too: its pixels, not its meta
    return np.asarray(image, dtype=np.float32)


def colour_saturation(pixels: np.ndarray) -> float:
    """Mean over pixels of the spread between colour channels, relative to the image's range."""
    rgb = pixels[:3].reshape(3, -1)
    span = float(rgb.max() - rgb.min()) or 1.0
    return float((rgb.max(0) - rgb.min(0)).mean() / span)


_guards: dict[tuple[str, int], InputGuard | None] = {}


def guard_of(run: LoadedRun) -> InputGuard | None:
    """The run's guard (cached per profile file), or None with one log line for a run without a profile."""
    path = Path(run.run_dir) / PROFILE_FILE
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
    except OSError:
        key = (str(path.resolve()), -1)
    if key not in _guards:
        guard = None
        if key[1] >= 0:
            guard = InputGuard(json.loads(path.read_text()))
        else:
            log.info("%s: no %s (trained before the input guard): predictions are not checked for foreign "
                     "input; `medsight calibrate RUN` fits one", run.run_dir, PROFILE_FILE)
        _guards[key] = guard
    return _guards[key]


def check_image(run: LoadedRun, image, source: str, allow_foreign: bool = False) -> tuple[str | None, str | None]:
    """Raise ``ForeignInputError`` for a clearly foreign raw image; else (with ``allow_foreign``)
    return the refusal reason it overrides and the guard's caveat (each None if none applies)."""
    guard = guard_of(run)
    if guard is None:
        return None, None
    reason = guard.refusal(image)
    if reason and not allow_foreign:
        raise ForeignInputError(source, reason)
    return reason, None if reason else guard.caveat(image)


def ood_fields(run: LoadedRun, images: torch.Tensor, overridden: list[str | None], allow_foreign: bool,
               caveats: list[str | None] | None = None) -> list[dict | str]:
    """Per model-space image: the fields the prediction carries (``out_of_distribution``,
    ``ood_score``, ``foreign_override``), or the refusal reason when its score is beyond the
    refuse threshold and foreign input is not allowed. ``overridden``: refusals already allowed;
    ``caveats``: known reasons an image looks foreign, which flag it instead of refusing it."""
    guard = guard_of(run)
    if guard is None:
        return [{} for _ in overridden]
    out: list[dict | str] = []
    for score, reason, caveat in zip(guard.scores(run, images), overridden, caveats or [None] * len(overridden)):
        verdict = guard.judge(float(score))
        if caveat:
            verdict = "flag"
        if verdict == "refuse" and reason is None:
            reason = (f"out-of-distribution score {score:.3g} is beyond the refuse threshold "
                      f"{guard.ood['refuse_threshold']:.3g}: unlike the training images (foreign input)")
            if not allow_foreign:
                out.append(reason)
                continue
        fields = {"out_of_distribution": bool(reason) or verdict != "ok", "ood_score": round(float(score), 4)}
        if reason:
            fields["foreign_override"] = reason
        if caveat:
            fields["ood_note"] = caveat
        out.append(fields)
    return out


def apply_fields(record: dict, fields: dict) -> dict:
    """The prediction with the guard's fields; out of distribution means it needs review."""
    record.update(fields)
    if fields.get("out_of_distribution"):
        record["needs_review"] = True
    return record
