"""The input guard's out-of-distribution score: Mahalanobis distances on several layers at once.

Lee et al. 2018's feature ensemble: per layer (the input's intensity statistics, each stage's
pooled channel means and standard deviations, ``models/taps.py``, and the penultimate feature)
the Mahalanobis distance to the nearest class mean under a shared covariance, divided by the
feature count; each layer's distance divided by its median on validation (so 1 is a typical
validation case on every layer), and the largest of these is the score. Without foreign data
to weigh the layers (Lee et al. fit a regression on some), the maximum lets whichever layer
sees the difference decide: the early ones tell textures and intensities apart (a grey fundus
photograph from a breast ultrasound), the penultimate one what the classifier has learnt.

bench/guard.py, BreastMNIST run (3-minute budget), test split against RetinaMNIST (grey) and
grey fundus photographs: AUROC 0.756 / 0.763 on the penultimate feature alone (profile version
1), 0.996 / 0.997 with the ensemble (README, "The input guard").
"""

from __future__ import annotations

import base64

import numpy as np

from medsight.errors import MedsightError

VERSION = 2  # 1: the penultimate feature alone (still scored as it was)
SHRINKAGE = 0.1
PENULTIMATE = "penultimate"
METHOD = ("feature ensemble (Lee et al. 2018): per layer (input intensities, each stage's pooled channel "
          "statistics, the penultimate feature) the Mahalanobis distance to the nearest class mean, shared "
          "covariance, over the feature count and the layer's val median; the largest over layers")


def encode_array(a: np.ndarray) -> dict:
    """A float32 array as JSON: shape and base64 bytes (a 512x512 precision matrix: 1.4 MB)."""
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(a.shape), "float32_base64": base64.b64encode(a.tobytes()).decode()}


def decode_array(d: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["float32_base64"]), dtype="<f4").reshape(d["shape"]).astype(np.float64)


def mahalanobis_scores(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """min over classes of (f - mu_k)^T P (f - mu_k) / D: 1 on average for the training features."""
    d2 = np.stack([np.einsum("nd,de,ne->n", features - mu, precision, features - mu) for mu in means], 1)
    return d2.min(1) / features.shape[1]


def energy_scores(logits: np.ndarray) -> np.ndarray:
    """Negative free energy -logsumexp(logits) (Liu et al. 2020): higher is more foreign."""
    m = logits.max(1, keepdims=True)
    return -(m[:, 0] + np.log(np.exp(logits - m).sum(1)))


def fit_gaussian(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the shared precision, the covariance shrunk towards a scaled identity
    (``SHRINKAGE``) so it stays invertible when features outnumber cases or one is constant."""
    classes = sorted(set(labels.tolist()))
    means = np.stack([features[labels == k].mean(0) for k in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    cov = centred.T @ centred / len(features)
    d = cov.shape[0]
    scale = np.trace(cov) / d or 1.0
    cov = (1 - SHRINKAGE) * cov + SHRINKAGE * scale * np.eye(d)
    return means, np.linalg.inv(cov)


def fit_layers(train: dict[str, np.ndarray], labels: np.ndarray, val: dict[str, np.ndarray]) -> list[dict]:
    """Per layer: the Gaussian fitted on ``train`` features and the median distance on ``val``."""
    layers = []
    for name, feats in train.items():
        means, precision = fit_gaussian(feats, labels)
        median = float(np.median(mahalanobis_scores(val[name], means, precision)))
        layers.append({"name": name, "features": int(feats.shape[1]), "val_median": median or 1.0,
                       "class_means": encode_array(means), "precision": encode_array(precision)})
    return layers


def _version(ood: dict) -> int:
    """The profile's score version, one this code reads (else one clear error)."""
    version = int(ood.get("version", 1))
    if version > VERSION:
        raise MedsightError(f"the input profile's OOD score is version {version}; this medsight reads up to "
                            f"{VERSION}: upgrade medsight or refit it with `medsight calibrate RUN`")
    return version


def decoded_layers(ood: dict) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """``(name, class means, precision, val median)`` per layer of a Mahalanobis profile; a
    version-1 profile is its penultimate feature alone, unscaled. Decoding costs ~12 ms for a
    ResNet's layers, so the guard does it once, not per prediction."""
    if _version(ood) == 1:
        return [(PENULTIMATE, decode_array(ood["class_means"]), decode_array(ood["precision"]), 1.0)]
    return [(layer["name"], decode_array(layer["class_means"]), decode_array(layer["precision"]),
             layer["val_median"]) for layer in ood["layers"]]


def layer_scores(ood: dict, features: dict[str, np.ndarray], layers: list | None = None) -> dict[str, np.ndarray]:
    """Each layer's distance over its val median ``(N,)`` (``layers``: ``decoded_layers(ood)``, if at hand)."""
    return {name: mahalanobis_scores(features[name], means, precision) / median
            for name, means, precision, median in (layers or decoded_layers(ood))}


def ood_scores(ood: dict, features: dict[str, np.ndarray], logits: np.ndarray, layers: list | None = None
               ) -> np.ndarray:
    """The profile's score ``(N,)`` of the features ``layer_features`` returns (higher is more foreign)."""
    _version(ood)
    if ood["method"] == "energy":
        return energy_scores(logits)
    return np.max(np.stack(list(layer_scores(ood, features, layers).values())), 0)
