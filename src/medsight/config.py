"""Run configuration: typed objects loaded from YAML, every key overridable with ``--set``.

Unknown keys are errors (a typo must not silently fall back to a default), and the resolved
config is saved in every run folder so a run can be repeated exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medsight.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticConfig(_Strict):
    """The built-in synthetic chest-CT nodule set (see ``medsight.data.synthetic``)."""

    n_train: int = Field(600, ge=4)
    n_val: int = Field(150, ge=2)
    n_test: int = Field(200, ge=2)
    size: int = Field(64, ge=32)
    nodule_fraction: float = Field(0.5, gt=0, lt=1)
    seed: int = 0  # the data's own seed, independent of the training seed


class DataConfig(_Strict):
    dataset: Literal["synthetic", "medmnist", "manifest", "folder", "msd", "voc"] = "synthetic"
    path: Optional[Path] = None  # .npz, manifest CSV, folder or MSD folder or VOC root; unused for synthetic
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    # cross-validation: train+val pooled and cut into `folds` folds by patient; fold `fold`
    # is val, test stays as it is (medsight train --folds K trains every fold)
    folds: int = Field(0, ge=0)
    fold: int = Field(0, ge=0)
    bad_files: Literal["fail", "skip"] = "fail"
    patient_from: Literal["file", "prefix"] = "file"  # folder data sets: file stem before "_"
    require_deidentified: bool = False
    # manifest columns holding each case's images, stacked as channels in this order; the first
    # must be `path` (the grid the others are resampled to). None: path, then every path_<name>.
    images: Optional[list[str]] = None
    # manifest columns of clinical values (age, sex, labs) fused with the image (models/fusion.py)
    clinical: list[str] = Field(default_factory=list)
    clinical_categorical: list[str] = Field(default_factory=list)  # categories even if they look numeric
    synthetic: SyntheticConfig = SyntheticConfig()
    # preprocessed cases of file data sets (data/cache.py); None: `.medsight-cache` beside the
    # run folder, so reruns, folds, evaluate and ensembles share it
    cache_dir: Optional[Path] = None

    @model_validator(mode="after")
    def _needs_path(self) -> "DataConfig":
        if self.dataset != "synthetic" and self.path is None:
            raise ValueError(f"data.path is required for data.dataset={self.dataset!r}")
        if abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise ValueError("data.split_fractions must sum to 1")
        if self.folds == 1 or (self.folds and self.fold >= self.folds):
            raise ValueError(f"data.fold must be below data.folds ({self.folds}), and folds 0 (off) or >= 2")
        _check_case_columns(self)
        return self


def _check_case_columns(cfg: DataConfig) -> None:
    """Several images or clinical columns per case come from a manifest's columns."""
    if (cfg.images is not None or cfg.clinical) and cfg.dataset != "manifest":
        raise ValueError("data.images and data.clinical name manifest columns; use data.dataset: manifest")
    if cfg.images is not None and (not cfg.images or cfg.images[0] != "path"):
        raise ValueError("data.images must start with path (the image the others are resampled to)")
    for key, names in (("data.images", cfg.images or []), ("data.clinical", cfg.clinical)):
        if len(set(names)) != len(names):
            raise ValueError(f"{key} names a column twice")
    stray = sorted(set(cfg.clinical_categorical) - set(cfg.clinical))
    if stray:
        raise ValueError(f"data.clinical_categorical names columns not in data.clinical: {', '.join(stray)}")


class WindowConfig(_Strict):
    """CT window: a named preset or an explicit level/width in HU."""

    preset: Optional[Literal["lung", "mediastinum", "abdomen", "brain", "bone"]] = None
    level: Optional[float] = None
    width: Optional[float] = Field(None, gt=0)


class AugmentConfig(_Strict):
    rotate_degrees: float = Field(0.0, ge=0, le=180)
    flip: list[int] = Field(default_factory=list)  # spatial axes to flip at random
    zoom: float = Field(0.0, ge=0, lt=1)  # +/- fraction
    intensity_shift: float = Field(0.0, ge=0)  # +/- offset on the normalised image
    contrast: float = Field(0.0, ge=0, lt=1)  # gamma in [1-c, 1+c]
    noise_std: float = Field(0.0, ge=0)
    prob: float = Field(0.5, ge=0, le=1)

    @property
    def enabled(self) -> bool:
        return any([self.rotate_degrees, self.flip, self.zoom, self.intensity_shift,
                    self.contrast, self.noise_std])


class TransformConfig(_Strict):
    spatial_size: Optional[list[int]] = None  # resize to this; None keeps the size
    # stretch (None): to spatial_size exactly; fit: keep the aspect ratio, scale to fit inside
    # spatial_size, then pad with zeros (planned for large 2D images)
    resize: Optional[Literal["stretch", "fit"]] = None
    spacing: Optional[list[float]] = None  # resample to this spacing (mm) first
    # None: planned (classification: scale01; segmentation: from the data's fingerprint)
    intensity: Optional[Literal["window", "zscore", "scale01", "percentile", "none"]] = None
    # scale01 maps this fixed range to [0, 1] (e.g. [0, 255] for 8-bit photos); None: per image
    intensity_range: Optional[tuple[float, float]] = None
    window: WindowConfig = WindowConfig()
    channels: Optional[int] = Field(None, ge=1, le=4)  # None: as the data come
    augment: Optional[AugmentConfig] = None  # None: planned; {} for none


class ModelConfig(_Strict):
    name: Optional[str] = None  # None: planned from the data (see plan.json)
    spatial_dims: Optional[int] = Field(None, ge=2, le=3)  # None: as the data come
    options: dict[str, Any] = Field(default_factory=dict)  # passed to the model factory
    # start from these weights: a safetensors/PyTorch file, a MONAI bundle or Hugging Face
    # folder, or a medsight run folder (models/pretrained.py); plan.json records what loaded
    pretrained: Optional[Path] = None


class EarlyStoppingConfig(_Strict):
    patience: int = Field(0, ge=0)  # 0 disables early stopping
    min_delta: float = 0.0
    # best.pt: the best epoch of the monitored metric's moving average, this weight on the newest
    # epoch (1: the raw metric's best); within_se also keeps later epochs within one standard
    # error of it, the rule before the average (training/early_stopping.py)
    smoothing: float = Field(0.3, gt=0, le=1)
    within_se: bool = False


class TrainConfig(_Strict):
    """Training settings. Keys left empty (None) are planned from the data (``planning/``):
    plan.json says what was chosen and why; setting a key here always wins."""

    epochs: Optional[int] = Field(None, ge=1)
    # stop in time: after the first epoch the epochs that fit are fixed and the schedule
    # fitted to them (the best checkpoint is kept as usual)
    time_budget_minutes: Optional[float] = Field(None, gt=0)
    batch_size: Optional[int] = Field(None, ge=1)
    optimizer: Optional[Literal["adam", "adamw", "sgd"]] = None
    lr: Optional[float] = Field(None, gt=0)
    weight_decay: Optional[float] = Field(None, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Optional[Literal["cosine", "step", "none"]] = None
    warmup_epochs: Optional[int] = Field(None, ge=0)
    step_size: int = Field(10, ge=1)
    gamma: float = Field(0.1, gt=0, le=1)
    class_weights: Optional[Literal["balanced", "none"]] = None
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # a key of the validation log ("..._loss" is minimised); None: val_auc / val_dice by task
    monitor: Optional[str] = None
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    # re-estimate BatchNorm statistics on this many clean training images before each
    # validation (training/batchnorm.py); 0 keeps the running averages
    precise_bn_samples: int = Field(256, ge=0)
    # fine-tuning (training/finetune.py; planned when model.pretrained is set): which weights
    # train (linear: the head; partial: the last `partial_stages` stages and the head; lora:
    # low-rank adapters on a ViT's attention and MLP, with the head), each stage's learning
    # rate scaled by layer_decay per stage below the head, and the head alone for head_epochs,
    # or for head_fraction of the epochs (fitted to the time budget): LP-FT, probe then fine-tune
    finetune: Optional[Literal["full", "linear", "partial", "lora"]] = None
    partial_stages: int = Field(2, ge=1)
    layer_decay: Optional[float] = Field(None, gt=0, le=1)
    head_epochs: Optional[int] = Field(None, ge=0)
    head_fraction: Optional[float] = Field(None, ge=0, lt=1)
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    channels_last: bool = True
    threads: Optional[int] = Field(None, ge=1)  # None: the cores this process may use
    seed: int = 0


class PretrainConfig(_Strict):
    """Self-supervised pretraining (``medsight pretrain``, ``task: pretrain``, ``training/pretrain.py``):
    ``simclr`` trains an encoder on two augmented views of each unlabelled image; ``restore`` trains
    a whole U-Net (DynUNet unless ``model.name`` says otherwise) to restore images with cut-out and
    shuffled blocks (MONAI's self-supervised recipe), so a segmentation net starts with its decoder
    pretrained too."""

    method: Literal["simclr", "restore"] = "simclr"
    temperature: float = Field(0.1, gt=0, le=2)  # NT-Xent (MONAI ContrastiveLoss)
    projection_dim: int = Field(128, ge=8)  # the projection head's output; the encoder's is the model's
    crop_min: float = Field(0.4, gt=0, le=1)  # smallest crop, as a fraction of the image's area (volume)
    rotate_degrees: float = Field(15.0, ge=0, le=180)
    flip: bool = True  # along every spatial axis
    intensity: float = Field(0.2, ge=0, lt=1)  # +/- scale and shift of the normalised image (RGB: half)
    noise_std: float = Field(0.05, ge=0)
    blur_prob: float = Field(0.3, ge=0, le=1)  # gaussian blur


class LesionConfig(_Strict):
    """Lesions from a probability map: connected components, and how they are matched."""

    threshold: float = Field(0.5, gt=0, lt=1)
    # FROC candidates: components above this, scored by their maximum probability, so the
    # curve sweeps from confident to doubtful detections
    candidate_threshold: float = Field(0.1, gt=0, lt=1)
    min_size: float = Field(0.0, ge=0)  # mm^3 in 3D, mm^2 in 2D
    max_lesions: int = Field(1000, ge=1)  # per class and image, the most probable
    hit_rule: Literal["center", "iou"] = "center"  # centre inside a reference lesion, or IoU
    iou_threshold: float = Field(0.1, gt=0, le=1)


class SegmentationConfig(_Strict):
    """Segmentation settings; None means the planner chooses (plan.json says what)."""

    patch_size: Optional[list[int]] = None
    foreground_oversample: float = Field(0.33, ge=0, le=1)  # share of patches centred on a label
    iterations_per_epoch: Optional[int] = Field(None, ge=1)
    deep_supervision: bool = True  # DynUNet only
    sw_overlap: float = Field(0.5, ge=0, lt=1)  # sliding-window inference
    # average over flips along every spatial axis at inference; None: planned (2D on, 3D off)
    mirror_tta: Optional[bool] = None
    lesions: LesionConfig = LesionConfig()


class EvaluationConfig(_Strict):
    threshold: float = Field(0.5, gt=0, lt=1)
    target_sensitivity: Optional[float] = Field(None, gt=0, le=1)
    n_bootstrap: int = Field(1000, ge=0)
    # "needs review" above this normalised predictive entropy; None: the entropy that the
    # review_fraction most uncertain validation cases exceed (chosen by `medsight calibrate`)
    review_threshold: Optional[float] = Field(None, ge=0, le=1)
    review_fraction: float = Field(0.1, gt=0, lt=1)


class DetectionConfig(_Strict):
    """Box detection (``data.dataset: voc``): classes, image scale, anchors, augmentation, box selection."""

    classes: Optional[list[str]] = None  # in this order; None: the sorted names in the annotations
    scale: float = Field(1.0, gt=0, le=4)  # every image (and its boxes) is resized by this first
    fpn_stages: list[int] = Field(default_factory=lambda: [2, 3, 4])  # ResNet stages: strides 8, 16, 32
    # Anchor sides in pixels after scaling, one list per FPN level; None: 3 x stride x 2^(0, 1/3, 2/3).
    anchor_sizes: Optional[list[list[float]]] = None
    aspect_ratios: list[float] = Field(default_factory=lambda: [1.0])  # height / width
    flip: bool = True  # random flips along both axes
    zoom: float = Field(0.2, ge=0, lt=1)  # random zoom in [1 - zoom, 1 + zoom], image size kept
    intensity: float = Field(0.1, ge=0, lt=1)  # random per-channel scale and shift of the normalised image
    score_threshold: float = Field(0.05, ge=0, lt=1)  # detections below are dropped
    nms_iou: float = Field(0.5, gt=0, le=1)  # per-class non-maximum suppression
    max_detections: int = Field(100, ge=1)  # per image
    iou_threshold: float = Field(0.5, gt=0, lt=1)  # a detection finds an object above this IoU (VOC: 0.5)


class RunConfig(_Strict):
    name: str = "run"
    # the task kinds of medsight.tasks; a VOC folder holds boxes, so data.dataset=voc selects detection
    # pretrain: an encoder learnt from unlabelled images (medsight pretrain)
    task: Literal["classification", "segmentation", "detection", "pretrain"] = "classification"
    data: DataConfig = DataConfig()
    transforms: TransformConfig = TransformConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    segmentation: SegmentationConfig = SegmentationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    detection: DetectionConfig = DetectionConfig()
    pretrain: PretrainConfig = PretrainConfig()

    @model_validator(mode="after")
    def _task_matches_data(self) -> "RunConfig":
        if self.data.dataset == "voc" and self.task != "detection":
            object.__setattr__(self, "task", "detection")  # the data set decides (configs written before)
        elif self.task == "detection" and self.data.dataset != "voc":
            raise ValueError(f"task detection reads box annotations: set data.dataset=voc "
                             f"(not {self.data.dataset!r})")
        return self


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (or start from defaults) and apply ``key=value`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        raw = _resolve_paths(read_yaml_mapping(path), path.parent)
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw, source=str(path) if path else "defaults")


def read_yaml_mapping(path: Path, what: str = "config file") -> dict[str, Any]:
    """The mapping a YAML file holds; a missing file, bad YAML or a non-mapping is one ConfigError line."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_first_line(exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def config_from_dict(raw: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{source}: {where}: {err['msg']}") from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` to a nested dict; the value is parsed as YAML (numbers, lists)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=0.01")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {part} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:
        node[parts[-1]] = value


def save_config(cfg: RunConfig, path: str | Path) -> None:
    from medsight.utils.atomic import write_text

    write_text(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """A relative data path (or model.pretrained) is looked up beside the config file first, then from the shell's
    folder; it is stored absolute so the saved run config works from anywhere."""
    for section, key in (("data", "path"), ("model", "pretrained")):
        node = raw.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str):
            p = Path(node[key])
            if not p.is_absolute():
                node[key] = str((base / p if (base / p).exists() else p).resolve())
    return raw


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
