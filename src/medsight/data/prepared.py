"""Deterministic preprocessing done once per run: items in, stacked tensors out.

Random augmentation then works on these tensors batch by batch, so the expensive part
(reading, resampling, windowing) is never repeated per epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch
from monai.transforms import Compose

from medsight.config import RunConfig
from medsight.data.types import Item, SplitData
from medsight.errors import InputFileError, MedsightError
from medsight.io.image import spacing_of

log = logging.getLogger(__name__)


@dataclass
class PreparedSplit:
    """One split ready for the model: images ``(N, C, *spatial)``, integer labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    sources: list[str]
    masks: torch.Tensor | None = None
    source_spacings: list[tuple[float, ...]] | None = None  # before resampling
    clinical: list[dict[str, str]] | None = None  # raw clinical values per case (data.clinical)

    def __len__(self) -> int:
        return len(self.labels)


def _checked_source(item: Item, spatial_dims: int) -> str:
    """The item's source name, after checking its image has the model's dimensionality."""
    source = str(item["image"].meta.get("source", item.get("id", "?")))
    ndim = item["image"].ndim - 1
    if ndim != spatial_dims:
        raise InputFileError(source, f"is a {ndim}D image of shape {tuple(item['image'].shape[1:])}, "
                             f"but the model is {spatial_dims}D (model.spatial_dims)")
    return source


def prepare_items(items: list[Item], preprocess: Compose, spatial_dims: int,
                  mask_key: str | None = None) -> PreparedSplit:
    """Apply ``preprocess`` to loaded items and stack them (all must end up one shape)."""
    if not items:
        raise MedsightError("no items to prepare (empty split)")
    images, masks, sources, spacings = [], [], [], []
    for item in items:
        source = _checked_source(item, spatial_dims)
        spacings.append(spacing_of(item["image"]))
        keys = {"image": item["image"]}
        if mask_key:
            keys[mask_key] = item[mask_key]
        out = _apply(preprocess, keys, source)
        images.append(out["image"].as_tensor() if hasattr(out["image"], "as_tensor") else out["image"])
        if mask_key:
            masks.append(torch.as_tensor(out[mask_key]))
        sources.append(source)
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        raise MedsightError(f"images have different shapes after preprocessing (e.g. {a} and {b}); "
                            "set transforms.spatial_size (and transforms.channels)")
    return PreparedSplit(
        images=torch.stack(images).float(),
        labels=torch.tensor([int(it.get("label", -1)) for it in items], dtype=torch.long),
        ids=[str(it.get("id", i)) for i, it in enumerate(items)],
        sources=sources,
        masks=torch.stack(masks) if mask_key else None,
        source_spacings=spacings,
        clinical=[dict(it["clinical"]) for it in items] if "clinical" in items[0] else None,
    )


def _apply(preprocess: Compose, data: dict, source: str) -> dict:
    """Run the transforms; a value error inside one (e.g. an unusable channel count) is the
    file's problem, reported on one line, not a MONAI traceback."""
    try:
        return preprocess(data)
    except RuntimeError as exc:
        root: BaseException = exc
        while root.__cause__ is not None:
            root = root.__cause__
        if isinstance(root, (ValueError, MedsightError)):
            raise InputFileError(source, f"cannot preprocess: {str(root).splitlines()[0]}") from None
        raise


def prepare_data(data: SplitData, cfg: RunConfig, splits: Sequence[str],
                 channels: int | None = None) -> tuple[dict[str, PreparedSplit], int]:
    """Load (bad-file policy applied) and preprocess the named splits once."""
    return prepare_loaded(load_splits(data, cfg, splits), cfg, channels)


def load_splits(data: SplitData, cfg: RunConfig, splits: Sequence[str]) -> dict[str, list[Item]]:
    """Read the named splits' files under the bad-file policy; an empty split is an error."""
    from medsight.data.loading import load_items

    loaded = {}
    for split in splits:
        items, skipped = load_items(data.split(split), policy=cfg.data.bad_files,
                                    require_deidentified=cfg.data.require_deidentified)
        data.skipped.extend(skipped)
        if not items:
            raise MedsightError(f"the {split} split is empty" + (f" ({len(skipped)} files skipped)" if skipped else ""))
        loaded[split] = items
    return loaded


def prepare_loaded(loaded: dict[str, list[Item]], cfg: RunConfig,
                   channels: int | None = None) -> tuple[dict[str, PreparedSplit], int]:
    """Preprocess loaded splits into stacked tensors (the run's transforms, built once)."""
    from medsight.transforms import preprocessing

    first = next(iter(loaded.values()))
    channels = channels or cfg.transforms.channels or int(first[0]["image"].shape[0])
    dims = cfg.model.spatial_dims or first[0]["image"].ndim - 1
    pre = preprocessing(cfg.transforms, dims, channels)
    return {split: prepare_items(items, pre, dims) for split, items in loaded.items()}, int(channels)


@dataclass
class PreparedCases:
    """Segmentation cases after preprocessing, one tensor each (sizes may differ).

    ``images[i]`` is ``(C, *S_i)`` float32, ``masks[i]`` the label map ``(*S_i)`` uint8, on the
    resampled grid whose voxel size is ``spacings[i]``.
    """

    images: list[torch.Tensor]
    masks: list[torch.Tensor]
    ids: list[str]
    sources: list[str]
    spacings: list[tuple[float, ...]]

    def __len__(self) -> int:
        return len(self.images)


def prepare_cases(items: list[Item], preprocess: Compose, spatial_dims: int) -> PreparedCases:
    """Apply ``preprocess`` (image and ``mask`` keys) to loaded segmentation items, unstacked."""
    if not items:
        raise MedsightError("no cases to prepare (empty split)")
    images, masks, ids, sources, spacings = [], [], [], [], []
    for item in items:
        source = _checked_source(item, spatial_dims)
        out = _apply(preprocess, {"image": item["image"], "mask": item["mask"]}, source)
        image = out["image"]
        images.append(torch.as_tensor(image.as_tensor() if hasattr(image, "as_tensor") else image).float())
        masks.append(torch.as_tensor(out["mask"])[0].round().clamp(0, 255).to(torch.uint8))
        spacings.append(spacing_of(image))
        ids.append(str(item.get("id", len(ids))))
        sources.append(source)
    return PreparedCases(images, masks, ids, sources, spacings)
