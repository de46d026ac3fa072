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

The score (``inference/ood_score.py``) is Lee et al. 2018's feature ensemble: Mahalanobis
distances on the input's intensity statistics, each stage's pooled channel statistics and the
penultimate feature, each over its validation median, the largest of them; all read in the one
PyTorch forward pass (also when predictions run on the ONNX export). bench/guard.py on a
BreastMNIST run (3-minute budget): AUROC against RetinaMNIST (grey) and grey fundus photographs
0.756 / 0.763 on the penultimate feature alone, 0.996 / 0.997 with the ensemble; the energy score
(Liu et al. 2020) ranks several foreign sets as *more* familiar (the net is confident on them).
A version-1 profile (penultimate feature alone) is still scored as it was.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from medsight.errors import ForeignInputError
from medsight.inference.load import LoadedRun
from medsight.inference.ood_score import PENULTIMATE, VERSION, decoded_layers, ood_scores
from medsight.models.contrastive import feature_layer
from medsight.models.taps import tapped
from medsight.runtime.run_folder import PROFILE_FILE

log = logging.getLogger(__name__)
# Mean per-pixel colour spread (max - min over channels, over the image's range) above which an
# image counts as a colour picture; a grey image saved as RGB has 0, the colour photographs and
# fundus images of bench/guard.py 0.08 to 0.5.
COLOUR_SATURATION = 0.05
UNKNOWN_MODALITIES = {"", "OT", "NONE"}


@torch.no_grad()
def layer_features(run: LoadedRun, images: torch.Tensor, taps: Sequence[str] = (), batch_size: int = 64
                   ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features per layer (``PENULTIMATE`` and the ``taps`` of ``models/taps.py``, each ``(N, D)``)
    and logits ``(N, K)`` of model-space images, in one pass of the PyTorch model (also when
    predictions run on the ONNX export). A pretrain run's penultimate feature is its encoder's
    output and its "logits" the projection."""
    captured: list[torch.Tensor] = []
    hook = feature_layer(run.model).register_forward_hook(
        lambda _m, inputs, _out: captured.append(inputs[0].detach().float().flatten(1).cpu()))
    logits = []
    try:
        with tapped(run.model, list(taps)) as stages, torch.inference_mode(), run.runtime.autocast():
            for start in range(0, len(images), batch_size):
                logits.append(run.model(run.runtime.batch(images[start:start + batch_size])).float().cpu())
    finally:
        hook.remove()
    features = {name: torch.cat(v).numpy().astype(np.float64) for name, v in stages.items()}
    features[PENULTIMATE] = torch.cat(captured).numpy().astype(np.float64)
    return features, torch.cat(logits).numpy().astype(np.float64)


def features_and_logits(run: LoadedRun, images: torch.Tensor, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features ``(N, D)`` and logits ``(N, K)`` of model-space images."""
    features, logits = layer_features(run, images, batch_size=batch_size)
    return features[PENULTIMATE], logits


def profile_taps(ood: dict) -> list[str]:
    """The layers a profile's score reads besides the penultimate feature."""
    return [layer["name"] for layer in ood.get("layers", []) if layer["name"] != PENULTIMATE]


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
        features, logits = layer_features(run, images, profile_taps(self.ood))
        return ood_scores(self.ood, features, logits, self.layers)

    @cached_property
    def layers(self) -> list:
        """The score's decoded statistics (``decoded_layers``), once per loaded profile."""
        return decoded_layers(self.ood) if self.ood["method"] != "energy" else []

    def judge(self, score: float) -> str:
        """``"refuse"``, ``"flag"`` or ``"ok"`` for an OOD score."""
        if score > self.ood["refuse_threshold"]:
            return "refuse"
        return "flag" if score > self.ood["flag_threshold"] else "ok"


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
            if int(guard.ood.get("version", 1)) < VERSION:
                log.info("%s: an input profile of version %s (penultimate features only); `medsight calibrate "
                         "RUN` refits it with the feature ensemble, which tells foreign images apart better",
                         run.run_dir, guard.ood.get("version", 1))
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
