"""The fine-tuning rule: what a run starting from ``model.pretrained`` plans by default.

Pretrained weights are already good; large steps at the start would wreck them while the new
head is still random. So, unless the config says otherwise:

- ``train.finetune: full`` (every weight trains), but ``linear`` (the head alone) for a
  classifier from a ``medsight pretrain`` encoder of images like these (the same channels,
  modality and dimensions in both runs' fingerprints) with fewer than ``PROBE_ONLY_BELOW``
  labelled training cases: a few dozen labels cannot retrain a body without overfitting it. At 10% of the
  labels (3-minute runs, 5 seeds, the same encoder and subsets), fundus-dr referable DR (42 eyes)
  gave test AUC 0.715 against LP-FT's 0.675 and scratch's 0.616, and BUSI (45 images) 0.704
  against 0.711 and 0.677; the probe had the smaller spread on both (worst seed 0.579 and 0.675
  against 0.534 and 0.663). At 25% (104 and 113 cases) it stayed ahead on fundus-dr (0.754
  against 0.737) but fell behind on BUSI (0.70 against 0.78, whose weaker encoder needs
  fine-tuning); from ``PROBE_ONLY_BELOW`` cases on, such a classifier gets the LP-FT below
  (README: Label efficiency). An encoder of other images must adapt: probed, BUSI's encoder gave
  fundus-dr 0.486 and fundus-dr's gave BUSI 0.572, against 0.595 and 0.648 with LP-FT;
- ``train.lr``: a tenth of the from-scratch rate for ``full`` and ``partial``; the rate stays
  for ``linear`` and ``lora``, which train new weights only (a head, adapters that start at zero),
  and for an encoder from ``medsight pretrain``: self-supervised features are a start, not an
  answer, and a tenth froze them (BUSI malignant vs benign, 2 seeds: test AUC 0.673 with a
  tenth, 0.733 at the full rate with all labels; 0.640 and 0.678 with 10% of them);
- ``train.head_epochs: 1``: the first epoch trains the head alone (the body's rate is 0), so
  the body first sees gradients from a head that already fits (``full`` and ``partial``). Not
  for a segmentation net started from anything but a segmentation run: an encoder (a
  classifier, ``medsight pretrain``) leaves the whole decoder as fresh as the head, and a head
  over a frozen random decoder cannot fit (a U-Net from ``pretrain.method: restore`` has its
  decoder, but a self-supervised start, like the rate above, trains whole from the first epoch);
- ``train.head_fraction: 0.4`` instead for a classifier from a ``medsight pretrain`` encoder
  with ``PROBE_ONLY_BELOW`` labelled cases or more: the head alone for the first 40% of the
  epochs, then every weight (LP-FT, Kumar et al. 2022: a linear probe, then fine-tuning). One
  epoch of head was not enough: the first full-rate steps under a barely fitted head wrecked the
  features. fundus-dr referable DR, 42 labelled eyes, 3 seeds, the same encoder: test AUC 0.605
  with one head epoch, 0.689 with 40% (0.706 with 60 of ~155 epochs), 0.726 with the head alone
  throughout, 0.597 from scratch; with all 420 labels 0.807 against scratch's 0.816. On BUSI
  with all 452 labels, 3-minute fine-tunes gave 0.824 (0.839 with 10% head-alone) against 0.899
  for 11 minutes from scratch: mostly the pretraining's 8 minutes, not the probe (README: Label
  efficiency);
- ``train.warmup_epochs: 2``: then the rate rises over two epochs;
- ``train.layer_decay: 0.75`` for transformers (BEiT's and MAE's value for ViT-B: each block
  below the head learns at 0.75x the rate of the one above), 1.0 for CNNs, whose few stages
  fine-tune well at one rate.

Every value lands in plan.json's ``planned`` like any other; setting the key wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from medsight.config import RunConfig
from medsight.models.pretrained import source_plan
from medsight.models.registry import model_spec

LR_FACTOR = 0.1
PROBE_ONLY_BELOW = 64  # labelled cases; the probe matched LP-FT at 45 and lost at 104 (BUSI)
HEAD_EPOCHS = 1
SELF_SUPERVISED_HEAD_FRACTION = 0.4
WARMUP_EPOCHS = 2
TRANSFORMER_DECAY = 0.75
TRANSFORMERS = ("vit", "swinunetr", "unetr", "timm:vit", "timm:deit", "timm:swin", "timm:eva")
FROM_SCRATCH_LR = 1e-3  # when the task's planner chose none


def plan_finetune(cfg: RunConfig, planned: Mapping[str, Any],
                  fingerprint: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Planned fine-tuning keys (added to the task planner's), or nothing without ``model.pretrained``;
    ``fingerprint``: the classification planner's, of the training split."""
    if cfg.model.pretrained is None:
        return {}
    name = str(cfg.model.name or planned.get("model.name") or "")
    plan = source_plan(Path(cfg.model.pretrained))
    source = plan.get("task")
    fresh_decoder = bool(name) and model_spec(name).task == "segmentation" and source != "segmentation"
    probe_only = (source == "pretrain" and not fresh_decoder and fingerprint is not None
                  and fingerprint["n_cases"] < PROBE_ONLY_BELOW and alike(plan.get("fingerprint"), fingerprint))
    mode = cfg.train.finetune or ("linear" if probe_only else "full")
    lr = float(planned.get("train.lr") or FROM_SCRATCH_LR)
    new_weights_only = mode in ("linear", "lora")
    probe_first = source == "pretrain" and not (new_weights_only or fresh_decoder)  # LP-FT
    return {
        "train.finetune": mode,
        "train.lr": lr if new_weights_only or source == "pretrain" else round(lr * LR_FACTOR, 8),
        "train.head_epochs": 0 if new_weights_only or fresh_decoder or probe_first else HEAD_EPOCHS,
        "train.head_fraction": SELF_SUPERVISED_HEAD_FRACTION if probe_first else 0.0,
        "train.warmup_epochs": WARMUP_EPOCHS,
        "train.layer_decay": TRANSFORMER_DECAY if name.startswith(TRANSFORMERS) and mode != "lora" else 1.0,
    }


def alike(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    """Whether two fingerprints describe the same kind of image (channels, modality, dimensions)."""
    keys = ("channels", "modality", "spatial_dims")
    return bool(a) and all(a.get(k) == b.get(k) for k in keys)
