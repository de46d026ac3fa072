"""Self-supervised pretraining (``task: pretrain``), by ``pretrain.method``:

- ``simclr``: each image gives two random views (``transforms/contrastive.py``); the encoder
  (the planned classifier without its class-score layer) and a projection MLP are trained so
  that the two views of one image are nearer to each other than to every other image's views
  in the batch (``monai.losses.ContrastiveLoss``, Chen et al. 2020).
- ``restore``: a whole U-Net (the segmentation planner's DynUNet for the input size, or the
  ``model.name`` given) restores images from distorted copies (``transforms/restore.py``,
  MONAI's self-supervised recipe), L1 loss. A segmentation net fine-tuned from it gets its
  encoder *and* decoder; only the output layer starts fresh.

Only these tasks are new: the planner's input size, cache, trainer, time budget, resume,
progress bar and run folder are the classification run's. The val split scores the same loss
on fixed views or distortions (``val_loss``, which picks ``best.pt``).

Under DistributedDataParallel each process contrasts its own slice of the batch (fewer
negatives than one process with the whole batch; no gather across processes).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable, Iterator

import torch
from monai.losses import ContrastiveLoss
from torch import nn

from medsight.config import RunConfig
from medsight.data.prepared import PreparedSplit
from medsight.data.unlabelled import unlabelled_dataset
from medsight.errors import ConfigError
from medsight.models.contrastive import contrastive_model
from medsight.models.registry import build_model, model_spec
from medsight.planning import apply_plan, open_keys
from medsight.planning.classification import plan_classification
from medsight.planning.segmentation import LR, VOXELS_PER_STEP, WEIGHT_DECAY, dynunet_options
from medsight.runtime import Runtime
from medsight.runtime.checkpoint import BEST, load_checkpoint
from medsight.runtime.run_folder import checkpoint_path
from medsight.training.classification import data_fingerprint, describe, make_plan, prepare_splits
from medsight.training.trainer import Setup
from medsight.transforms.contrastive import ContrastiveViews
from medsight.transforms.restore import Distortions
from medsight.utils.atomic import write_bytes
from medsight.utils.figures import styled, to_png
from medsight.utils.prefetch import prefetch

log = logging.getLogger(__name__)
VAL_SEED = 12345  # the val views are the same every epoch, so val_loss compares epochs
# What pretraining plans differently from classification: its own augmentation (none of the
# classifier's), the contrastive loss on val as the monitor, no class weights.
PRETRAIN_PLAN = {"transforms.augment": {}, "train.monitor": "val_loss", "train.class_weights": "none"}
# restore: the segmentation planner's model, batch (a U-Net's step is ~60x a small
# classifier's) and rate, not the classification planner's
RESTORATION_FIGURE, FIGURE_IMAGES = "restoration.png", 4
RESTORE_PLANS = ("model.name", "model.options", "train.batch_size", "train.lr", "train.weight_decay")


def setup_pretrain(cfg: RunConfig, runtime: Runtime) -> Setup:
    """Unlabelled data, the classification planner's input size; its classifier and the
    contrastive task (simclr), or the planned U-Net and the restoration task (restore)."""
    data = unlabelled_dataset(cfg.data, cfg.train.seed)
    fp, loaded = data_fingerprint(cfg, data)
    restore, given = cfg.pretrain.method == "restore", cfg
    planner = plan_classification(fp, cfg)
    planner_batch = planner["train.batch_size"]
    if restore:  # the classifier planner's input size and schedule, not its classifier or batch
        planner = {k: v for k, v in planner.items() if not k.startswith(RESTORE_PLANS)}
    planned = open_keys(cfg, {**planner, **PRETRAIN_PLAN})
    cfg = apply_plan(cfg, planned)
    log.info("plan: %s", describe(planned))
    prepared, channels = prepare_splits(cfg, data, loaded, fp)
    train, val = prepared["train"], prepared["val"]
    size = tuple(train.images.shape[2:])
    if restore:
        network = open_keys(given, restore_plan(given, size, int(planner_batch)))
        planned.update(network)
        cfg = apply_plan(cfg, network)
    torch.manual_seed(cfg.train.seed)
    plan = {**make_plan(cfg, data, prepared, channels), "task": "pretrain", "class_names": [],
            "method": cfg.pretrain.method, "fingerprint": fp, "planned": planned}
    plan.pop("train_class_counts", None)
    if restore:
        def build() -> nn.Module:
            return build_model(cfg.model.name, channels, channels, cfg.model.spatial_dims, input_size=size,
                               **cfg.model.options)

        task: PretrainTask = RestoreTask(train, val, cfg.train.batch_size, Distortions(size), build)
        return Setup(cfg, build(), task, plan)
    model = contrastive_model(cfg.model.name, channels, cfg.model.spatial_dims, cfg.pretrain.projection_dim,
                              input_size=size, **cfg.model.options)
    views = ContrastiveViews(cfg.pretrain, cfg.model.spatial_dims, size, channels)
    task = PretrainTask(train, val, cfg.train.batch_size, views, cfg.pretrain.temperature)
    plan.update({"feature_dim": model.projection[0].in_features, "projection_dim": cfg.pretrain.projection_dim})
    return Setup(cfg, model, task, plan)


def restore_plan(cfg: RunConfig, size: tuple[int, ...], max_batch: int) -> dict:
    """The net ``pretrain.method: restore`` trains and its batch and rate (dotted config keys),
    as the segmentation planner would give them for this input size (the batch no larger than
    the classifier's, ``max_batch``: small images would get hundreds): DynUNet unless
    ``model.name`` names another segmentation net. Image in, image out: one output channel per
    input channel, no deep supervision."""
    batch = max(2, min(max_batch, int(VOXELS_PER_STEP[len(size)] // math.prod(size))))
    steps = {"train.batch_size": batch,
             "train.lr": LR, "train.weight_decay": WEIGHT_DECAY}
    name = cfg.model.name or "dynunet"
    if model_spec(name).task != "segmentation":
        raise ConfigError(f"pretrain.method restore trains an image-to-image net (a segmentation model such as "
                          f"dynunet, unet or flexunet); model {name!r} is a classifier: use pretrain.method simclr")
    if name != "dynunet":
        return {"model.name": name, **steps}
    options = dynunet_options(size, [1.0] * len(size))
    strides = options["model.options.strides"]
    # every level must halve the input exactly, or the skip connections do not line up
    def uneven() -> bool:
        return any(s % math.prod(st[a] for st in strides) for a, s in enumerate(size))

    while len(strides) > 2 and uneven():
        strides.pop()
        options["model.options.kernel_size"].pop()
        options["model.options.filters"].pop()
    if uneven():
        raise ConfigError(f"pretrain.method restore: a U-Net needs even input sides, got {'x'.join(map(str, size))}; "
                          "set transforms.spatial_size")
    return {"model.name": name, **options, "model.options.deep_supervision": False, **steps}


class PretrainTask:
    """Batches of two views per image, NT-Xent loss, and the same loss on val's fixed views."""

    def __init__(self, train: PreparedSplit, val: PreparedSplit, batch_size: int, views: ContrastiveViews,
                 temperature: float):
        self.train, self.val, self.batch_size, self.views = train, val, max(2, batch_size), views
        self.criterion = ContrastiveLoss(temperature=temperature)

    def _batches(self, split: PreparedSplit, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # an image alone in a batch has no negatives to contrast with: batches of at least 2
        batches = [idx for idx in (order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size))
                   if len(idx) >= 2]
        images = split.images
        streamed = getattr(images, "in_memory", True) is False
        reads = prefetch(batches, images.__getitem__) if streamed else (images[idx] for idx in batches)
        for idx, x in zip(batches, reads):
            yield idx, x

    def train_batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))
        self.views.seed(seed)
        for idx, x in self._batches(self.train, order):
            yield self.views(x), torch.zeros(len(idx))  # no targets: the pairing is the label

    def norm_batches(self, seed: int, max_images: int) -> Iterator[torch.Tensor]:
        """Clean training images (a seeded subset) for BatchNorm re-estimation: the statistics
        the encoder's features are later read with."""
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed + 1))[:max_images]
        for _, x in self._batches(self.train, order):
            yield x

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = outputs.float()
        return self.criterion(z[:, 0], z[:, 1])

    @torch.no_grad()
    def validate(self, model: nn.Module, runtime: Runtime) -> dict[str, float]:
        model.eval()
        self.views.seed(VAL_SEED)
        total, count = 0.0, 0
        for idx, x in self._batches(self.val, torch.arange(len(self.val))):
            total, count = total + float(self._val_loss(model, runtime, x)) * len(idx), count + len(idx)
        model.train()
        return {"val_loss": total / count if count else float("nan")}

    def _val_loss(self, model: nn.Module, runtime: Runtime, x: torch.Tensor) -> torch.Tensor:
        views = runtime.batch(self.views(x))  # outside autocast: MONAI's affine grid stays float32
        with runtime.autocast():
            z = model(views)
        return self.loss(z, None)


class RestoreTask(PretrainTask):
    """Distorted images in, the images out (L1); the same loss on val's fixed distortions."""

    def __init__(self, train: PreparedSplit, val: PreparedSplit, batch_size: int, distort: Distortions,
                 build: Callable[[], nn.Module]):
        self.train, self.val, self.batch_size, self.views = train, val, max(2, batch_size), distort
        self.criterion = nn.L1Loss()
        self.build = build  # a fresh net of the trained kind, for the figure after training

    def train_batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))
        self.views.seed(seed)
        for _, x in self._batches(self.train, order):
            x = x.float()
            yield self.views(x), x

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.criterion(outputs.float(), targets.float())

    def _val_loss(self, model: nn.Module, runtime: Runtime, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        with runtime.autocast():
            out = model(runtime.batch(self.views(x)))
        return self.loss(out, x.to(runtime.device))

    def after_training(self, run_dir: Path) -> None:
        """``RUN/restoration.png``: a few val images distorted, restored by ``best.pt`` (fp32),
        and as they were, so a person can see what the pretraining learnt."""
        model = self.build()
        model.load_state_dict(load_checkpoint(checkpoint_path(run_dir, BEST))["model"])
        x = self.val.images[torch.arange(min(FIGURE_IMAGES, len(self.val)))].float()
        self.views.seed(VAL_SEED)
        distorted = self.views(x)
        with torch.no_grad():
            restored = model.eval()(distorted).float()
        write_bytes(run_dir / RESTORATION_FIGURE, restoration_png(distorted, restored, x))


@styled
def restoration_png(distorted: torch.Tensor, restored: torch.Tensor, original: torch.Tensor) -> bytes:
    """One row per image: distorted, restored, original (channel 0; the middle slice in 3D)."""
    from matplotlib.figure import Figure

    rows = len(original)
    fig = Figure(figsize=(7.5, 2.5 * rows))
    for i in range(rows):
        low, high = float(original[i, 0].min()), float(original[i, 0].max())
        for j, (title, images) in enumerate((("distorted", distorted), ("restored", restored),
                                             ("original", original))):
            image = images[i, 0]
            while image.ndim > 2:  # a volume: its middle slice
                image = image[image.shape[0] // 2]
            ax = fig.add_subplot(rows, 3, 3 * i + j + 1)
            ax.imshow(image.numpy(), cmap="gray", vmin=low, vmax=high)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title)
    fig.suptitle("restoration pretraining: val images (best.pt)")
    return to_png(fig)
