"""Box detection on the shared trainer: the task (batches, RetinaNet loss, mAP validation) and
``setup_detection``, config in, model, task and plan out (`train_run` dispatches VOC data here).

The loss is RetinaNet's: sigmoid focal loss (MONAI ``FocalLoss``, alpha 0.25, gamma 2) over every
anchor, plus smooth-L1 on the box deltas of the anchors that ATSS matched to an object, both
divided by the number of matched anchors. Validation is VOC mAP on the validation split, the
default monitored metric.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from monai.apps.detection.utils.detector_utils import preprocess_images
from monai.losses import FocalLoss
from torch import nn

from medsight.config import RunConfig
from medsight.data.cache import CachedArrays, CaseStore, build_entries
from medsight.data.prepared import cache_root
from medsight.data.voc import DetectionData, DetectionItem, load_detection_image, voc_dataset
from medsight.errors import ConfigError
from medsight.metrics.detection import detection_metrics
from medsight.models.detection import BOX_KEY, CLS_KEY, DETECTORS, AnchorBoxes, build_detector, default_anchor_sizes
from medsight.runtime import Runtime
from medsight.runtime.detection import BoxSelection, predict_boxes
from medsight.training.trainer import Setup
from medsight.transforms.boxes import BoxAugment, normalise, resize_with_boxes

log = logging.getLogger(__name__)
DEFAULT_DETECTOR = "retinanet-resnet18"
STATS_IMAGES = 512  # images the normalisation statistics are taken over (evenly spaced)
PREDICT_CHUNK = 64  # images normalised at a time for validation
Target = dict[str, torch.Tensor]


@dataclass
class PreparedBoxes:
    """One split, resized once: uint8 images ``(3, rows, cols)`` read from the on-disk cache
    when indexed (``data/cache.py``; memory does not grow with the number of images), their
    boxes in resized pixels and their shapes."""

    images: Sequence[torch.Tensor]
    targets: list[Target]  # boxes (N, 4) xyxy in resized pixels, labels (N,), difficult (N,)
    ids: list[str]
    shapes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.images)


class _ResizedEntry:
    """Read, check and resize one image, then write its cache entry (runs in workers)."""

    def __init__(self, store: CaseStore, scale: float):
        self.store, self.scale = store, scale

    def __call__(self, entry: dict) -> dict:
        item: DetectionItem = entry["item"]
        image = load_detection_image(item)
        resized, _ = resize_with_boxes(image, torch.zeros(0, 4), self.scale)
        pixels = resized.round().clamp(0, 255).to(torch.uint8).numpy()
        meta = {"source": str(item.image), "shape": list(pixels.shape), "read_shape": list(image.shape[1:])}
        return self.store.put(entry["_cache_key"], meta, {".npy": pixels})


def prepare_boxes(items: Sequence[DetectionItem], scale: float, cfg: RunConfig, what: str = "preprocessing") -> PreparedBoxes:
    """Read and resize every image of a split once, into the cache (in workers for a large
    split); a rerun, another fold or seed finds them there."""
    store = CaseStore(cache_root(cfg), {"task": "detection", "data": str(cfg.data.path), "scale": scale})
    # the annotation is a file of the case too: a changed <size> is checked again
    entries = [{"id": it.id, "image": str(it.image), "mask": str(it.annotation), "item": it} for it in items]
    metas, _ = build_entries(entries, store, _ResizedEntry(store, scale), what=what)
    targets = []
    for item, meta in zip(items, metas):
        (rows, cols), (new_rows, new_cols) = meta["read_shape"], meta["shape"][1:]
        factors = torch.tensor([new_cols / cols, new_rows / rows] * 2, dtype=torch.float32)
        targets.append({"boxes": torch.from_numpy(item.boxes).float() * factors, "labels": torch.from_numpy(item.labels),
                        "difficult": torch.from_numpy(item.difficult)})
    return PreparedBoxes(CachedArrays(store, [m["key"] for m in metas]), targets, [i.id for i in items],
                         [tuple(m["shape"][1:]) for m in metas])


def channel_stats(images: Sequence[torch.Tensor], limit: int = STATS_IMAGES) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation over a set of images (evenly spaced ``limit``
    of a larger set), for normalisation; summed image by image, never all held."""
    pick = torch.linspace(0, len(images) - 1, min(limit, len(images))).round().long().unique().tolist()
    total = sq = count = 0
    for i in pick:
        x = images[i].reshape(images[i].shape[0], -1).double()
        total, sq, count = total + x.sum(1), sq + (x * x).sum(1), count + x.shape[1]
    mean = total / count
    var = ((sq - count * mean * mean) / max(count - 1, 1)).clamp(min=0)
    return mean.tolist(), var.sqrt().clamp(min=1e-3).tolist()


class DetectionTask:
    """RetinaNet training over prepared images: augmented batches, focal + box loss, mAP."""

    def __init__(self, train: PreparedBoxes, val: PreparedBoxes, anchors: AnchorBoxes, class_names: list[str],
                 batch_size: int, mean: Sequence[float], std: Sequence[float], augment: BoxAugment | None = None,
                 selection: BoxSelection = BoxSelection(), iou_threshold: float = 0.5):
        self.train, self.val, self.anchors = train, val, anchors
        self.class_names, self.batch_size = class_names, batch_size
        self.mean, self.std = mean, std
        self.augment, self.selection, self.iou_threshold = augment, selection, iou_threshold
        self.focal = FocalLoss(gamma=2.0, alpha=0.25, reduction="none")

    def train_batches(self, seed: int) -> Iterator[tuple[torch.Tensor, list[Target]]]:
        """Shuffled, augmented, padded batches with their boxes; identical for the same ``seed``."""
        n = len(self.train)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        if self.augment is not None:
            self.augment.set_random_state(seed)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size].tolist()
            if len(idx) < 2 and n > 1:  # BatchNorm cannot train on a batch of one
                continue
            images, targets = [], []
            for i in idx:
                image = normalise(self.train.images[i], self.mean, self.std)
                boxes, labels = self.train.targets[i]["boxes"], self.train.targets[i]["labels"]
                if self.augment is not None:
                    image, boxes, labels = self.augment(image, boxes, labels)
                images.append(image)
                targets.append({"boxes": boxes, "labels": labels})
            batch, _ = preprocess_images(images, 2, self.anchors.size_divisible)
            yield batch, targets

    def loss(self, outputs: dict[str, list[torch.Tensor]], targets: list[Target]) -> torch.Tensor:
        logits = self.anchors.flatten(outputs[CLS_KEY]).float()
        deltas = self.anchors.flatten(outputs[BOX_KEY]).float()
        anchors, locations = self.anchors.anchors(outputs)
        cls_loss, box_loss, matched = logits.new_zeros(()), logits.new_zeros(()), 0
        for b, target in enumerate(targets):
            index = self.anchors.match(target["boxes"], anchors, locations)
            fg = index >= 0
            onehot = torch.zeros_like(logits[b])
            onehot[fg, target["labels"][index[fg]]] = 1.0
            cls_loss = cls_loss + self.focal(logits[b], onehot).sum()
            if fg.any():
                wanted = self.anchors.encode(target["boxes"][index[fg]], anchors[fg])
                box_loss = box_loss + F.smooth_l1_loss(deltas[b][fg], wanted, beta=1 / 9, reduction="sum")
            matched += int(fg.sum())
        return (cls_loss + box_loss) / max(1, matched)

    def predict(self, model: nn.Module, runtime: Runtime, split: PreparedBoxes) -> list[dict]:
        out = []
        for start in range(0, len(split), PREDICT_CHUNK):  # a chunk of normalised images at a time
            images = [normalise(split.images[i], self.mean, self.std)
                      for i in range(start, min(start + PREDICT_CHUNK, len(split)))]
            out += predict_boxes(model, self.anchors, images, runtime, self.selection, self.batch_size)
        return out

    def validate(self, model: nn.Module, runtime: Runtime) -> dict[str, float]:
        metrics = detection_metrics(self.predict(model, runtime, self.val), self.val.targets, self.class_names,
                                    self.iou_threshold)
        return {"val_map": metrics["map"], **{f"val_ap_{name}": ap for name, ap in metrics["ap"].items()}}


def detection_anchors(cfg: RunConfig) -> AnchorBoxes:
    d = cfg.detection
    sizes = d.anchor_sizes if d.anchor_sizes is not None else default_anchor_sizes(d.fpn_stages)
    return AnchorBoxes(sizes, d.aspect_ratios, d.fpn_stages)


def detection_config(cfg: RunConfig) -> RunConfig:
    """The config with detection's defaults where the user left classification's untouched."""
    cfg = cfg.model_copy(deep=True)
    if "name" not in cfg.model.model_fields_set:
        cfg.model.name = DEFAULT_DETECTOR
    if "monitor" not in cfg.train.model_fields_set:
        cfg.train.monitor = "val_map"
    if cfg.model.name not in DETECTORS:
        raise ConfigError(f"model.name {cfg.model.name!r} is not a box detector; choose {', '.join(DETECTORS)}")
    if cfg.model.spatial_dims is None:
        cfg.model.spatial_dims = 2
    if cfg.model.spatial_dims != 2:
        raise ConfigError("box detection is 2D: set model.spatial_dims=2")
    return cfg


def build_detection(cfg: RunConfig, data: DetectionData, runtime: Runtime) -> tuple[nn.Module, DetectionTask, dict]:
    """Model, task and plan for a detection run (images are read and resized here, once)."""
    d = cfg.detection
    prepared = {s: prepare_boxes(data.split(s), d.scale, cfg, f"preprocessing {s}") for s in ("train", "val")}
    if not len(prepared["train"]) or not len(prepared["val"]):
        raise ConfigError(f"{cfg.data.path}: train and val splits must not be empty")
    mean, std = channel_stats(prepared["train"].images)
    anchors = detection_anchors(cfg)
    torch.manual_seed(cfg.train.seed)  # the same initial weights for the same seed
    model = build_detector(cfg.model.name, 3, len(data.class_names), anchors, **cfg.model.options)
    augment = BoxAugment(d.flip, d.zoom, d.intensity)
    selection = BoxSelection(d.score_threshold, d.nms_iou, d.max_detections)
    task = DetectionTask(prepared["train"], prepared["val"], anchors, data.class_names, cfg.train.batch_size,
                         mean, std, augment, selection, d.iou_threshold)
    counts = Counter(int(k) for t in prepared["train"].targets for k in t["labels"])
    plan = {
        "task": "detection",
        "class_names": data.class_names,
        "in_channels": 3,
        "spatial_dims": 2,
        "scale": d.scale,
        "input_shape_median": _median_shape(prepared["train"].shapes),
        "normalise": {"mean": mean, "std": std},
        "anchors": anchors.describe(),
        "box_selection": asdict(selection),
        "iou_threshold": d.iou_threshold,
        "splits_from": data.split_source,
        "n_items": {s: len(p) for s, p in prepared.items()},
        "train_box_counts": {name: counts.get(k, 0) for k, name in enumerate(data.class_names)},
        "dropped_degenerate_boxes": data.dropped_boxes,
    }
    return model, task, plan


def setup_detection(cfg: RunConfig, runtime: Runtime) -> Setup:
    """Model, task and plan of a box-detection run on a VOC-layout folder."""
    cfg = detection_config(cfg)
    data = load_voc(cfg)
    model, task, plan = build_detection(cfg, data, runtime)
    log.info("detection: %s on %s; %d train / %d val images; classes %s", cfg.model.name,
             runtime.precision, len(task.train), len(task.val), ", ".join(data.class_names))
    return Setup(cfg, model, task, plan)


def load_voc(cfg: RunConfig) -> DetectionData:
    if cfg.data.dataset != "voc" or cfg.data.path is None:
        raise ConfigError("box detection reads data.dataset=voc with data.path set to the VOC folder")
    return voc_dataset(cfg.data.path, cfg.detection.classes, cfg.train.seed, cfg.data.split_fractions)


def _median_shape(shapes: Sequence[tuple[int, int]]) -> list[int]:
    return [int(v) for v in torch.tensor(shapes, dtype=torch.float32).median(0).values.tolist()]
