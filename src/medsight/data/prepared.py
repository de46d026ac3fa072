"""Deterministic preprocessing done once: items in, a split ready for the model out.

In-memory data sets (MedMNIST, synthetic) are preprocessed in memory and stacked; data sets
of files (manifest, folder, MSD) go through the on-disk cache (``data/cache.py``) and are
read back per batch, so memory does not grow with the number of cases. Random augmentation
then works batch by batch, so the expensive part (reading, resampling, windowing) is never
repeated per epoch, nor per run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from monai.transforms import Compose

from medsight.config import RunConfig
from medsight.data.cache import (
    CachedCases,
    CachedImages,
    CaseStore,
    build_entries,
    encode,
    is_file_item,
    sample_locations,
)
from medsight.data.types import Item, SplitData
from medsight.errors import InputFileError, MedsightError
from medsight.io.image import spacing_of

log = logging.getLogger(__name__)


@dataclass
class PreparedSplit:
    """One split ready for the model: images ``(N, C, *spatial)``, integer labels ``(N,)``.

    ``images`` is a tensor, or a ``CachedImages`` that reads the cache when indexed."""

    images: torch.Tensor | CachedImages
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
        images.append(_tensor(out["image"]))
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
    if uses_cache(data, splits):
        return prepare_cached(data, cfg, splits, channels)
    return prepare_loaded(load_splits(data, cfg, splits), cfg, channels)


def uses_cache(data: SplitData, splits: Sequence[str] = ("train", "val")) -> bool:
    """Files go through the on-disk cache; in-memory sets are already in memory."""
    return any(is_file_item(it) for s in splits for it in data.split(s))


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


def cache_root(cfg: RunConfig) -> Path:
    """``data.cache_dir``, else ``.medsight-cache`` in the working folder."""
    from medsight.data.cache import CACHE_DIRNAME

    return Path(cfg.data.cache_dir or (Path.cwd() / CACHE_DIRNAME))


def sample_fingerprint(cfg: RunConfig, kind: str, sample: list[Item], extra: Any,
                       compute: Callable[[], dict]) -> dict:
    """The planner's fingerprint of a sample of file cases, remembered in the cache."""
    from medsight.data.cache import case_key, remembered

    parts = {"sample": [case_key(it) for it in sample], "extra": extra,
             "require_deidentified": cfg.data.require_deidentified, "bad_files": cfg.data.bad_files}
    return remembered(cache_root(cfg), kind, parts, compute)


def cache_store(cfg: RunConfig, task: str, dims: int, channels: int) -> CaseStore:
    """The cache folder for this data set and preprocessing (``data.cache_dir``)."""
    root = cache_root(cfg)
    transforms = {**cfg.transforms.model_dump(mode="json", exclude={"augment"}), "channels": channels}
    settings = {"task": task, "data": str(cfg.data.path), "spatial_dims": dims,
                "require_deidentified": cfg.data.require_deidentified, "transforms": transforms}
    return CaseStore(root, settings)


def _first_image(data: SplitData, cfg: RunConfig, splits: Sequence[str]):
    """The first readable image (its channels and dimensionality stand for the set's)."""
    from medsight.data.loading import LazyItems

    for item in LazyItems([it for s in splits for it in data.split(s)], cfg.data):
        return item["image"]
    raise MedsightError("no readable image in the data set")


def prepare_cached(data: SplitData, cfg: RunConfig, splits: Sequence[str],
                   channels: int | None = None) -> tuple[dict[str, PreparedSplit], int]:
    """Classification splits through the on-disk cache: built where missing, read per batch."""
    from medsight.transforms import preprocessing

    first = None
    if not (channels or cfg.transforms.channels) or not cfg.model.spatial_dims:
        first = _first_image(data, cfg, splits)
    channels = int(channels or cfg.transforms.channels or first.shape[0])
    dims = int(cfg.model.spatial_dims or first.ndim - 1)
    store = cache_store(cfg, "classification", dims, channels)
    make = _ClassificationEntry(preprocessing(cfg.transforms, dims, channels), dims, store,
                                cfg.data.require_deidentified)
    # every split's entries first: the build's workers are forked before any split is held in RAM
    built = {}
    for split in splits:
        items = data.split(split)
        metas, skipped = build_entries(items, store, make, policy=cfg.data.bad_files, what=f"preprocessing {split}")
        data.skipped.extend(skipped)
        built[split] = [(it, m) for it, m in zip(items, metas) if m is not None], len(skipped)
    out = {}
    for split, (kept, n_skipped) in built.items():
        if not kept:
            raise MedsightError(f"the {split} split is empty" + (f" ({n_skipped} files skipped)" if n_skipped else ""))
        items, metas = zip(*kept)
        out[split] = PreparedSplit(
            images=CachedImages(store, list(metas)),
            labels=torch.tensor([int(it.get("label", -1)) for it in items], dtype=torch.long),
            ids=[str(it.get("id", i)) for i, it in enumerate(items)],
            sources=[m["source"] for m in metas],
            source_spacings=[tuple(m["spacing"]) for m in metas],
            clinical=[dict(it["clinical"]) for it in items] if "clinical" in items[0] else None,
        )
    return out, channels


class _ClassificationEntry:
    """Read, check and preprocess one case, then write its cache entry (runs in workers)."""

    def __init__(self, preprocess: Compose, dims: int, store: CaseStore, require_deidentified: bool):
        self.preprocess, self.dims, self.store, self.require = preprocess, dims, store, require_deidentified

    def __call__(self, item: Item) -> dict:
        from medsight.data.loading import load_item

        loaded = load_item(item, self.require)
        source = _checked_source(loaded, self.dims)
        out = _apply(self.preprocess, {"image": loaded["image"]}, source)
        image = _numpy(out["image"])
        meta = {"source": source, "shape": list(image.shape), "spacing": list(spacing_of(loaded["image"]))}
        return self.store.put(item["_cache_key"], meta, {".npy": encode(image, self.store.encoding)})


class _SegmentationEntry(_ClassificationEntry):
    def __call__(self, item: Item) -> dict:
        from medsight.data.loading import load_item

        loaded = load_item(item, self.require)
        source = _checked_source(loaded, self.dims)
        out = _apply(self.preprocess, {"image": loaded.pop("image"), "mask": loaded.pop("mask")}, source)
        # a 512x512x300 CT is 315 MB per float32 copy, and the workers build cases side by side:
        # each input is let go as soon as it is used
        mask = label_map(out.pop("mask")).numpy()
        image = _numpy(out["image"])
        meta = {"source": source, "shape": list(image.shape), "spacing": list(spacing_of(out["image"])),
                "mask_max": int(mask.max(initial=0))}
        arrays = {".npy": encode(image, self.store.encoding), ".mask.npy": mask,
                  ".loc.npy": sample_locations(mask, 0)}
        return self.store.put(item["_cache_key"], meta, arrays)


def label_map(mask) -> torch.Tensor:
    """``(*S)`` uint8 labels of a preprocessed ``(1, *S)`` mask: as it is when uint8 (as read,
    see ``loading.compact_mask``), else rounded (a resampled mask may be float)."""
    labels = _tensor(mask)[0]
    return labels if labels.dtype == torch.uint8 else labels.float().round_().clamp_(0, 255).to(torch.uint8)


def _tensor(x) -> torch.Tensor:
    """A plain tensor (no MetaTensor bookkeeping) sharing ``x``'s memory where it can."""
    return torch.as_tensor(x.as_tensor() if hasattr(x, "as_tensor") else x).detach().cpu()


def _numpy(x) -> np.ndarray:
    return np.asarray(_tensor(x).float().numpy(), dtype=np.float32)


def prepare_cached_cases(items: list[Item], cfg: RunConfig, preprocess: Compose, dims: int, channels: int,
                         what: str = "preprocessing") -> tuple[CachedCases, list[tuple[str, str]]]:
    """Segmentation cases through the on-disk cache (image, mask and patch centres per case)."""
    store = cache_store(cfg, "segmentation", dims, channels)
    make = _SegmentationEntry(preprocess, dims, store, cfg.data.require_deidentified)
    metas, skipped = build_entries(items, store, make, policy=cfg.data.bad_files, what=what)
    metas = [m for m in metas if m is not None]
    if not metas:
        raise MedsightError("no cases to prepare (empty split)" + (f"; {len(skipped)} files skipped" if skipped else ""))
    return CachedCases(store, metas), skipped


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
    _locations: dict = field(default_factory=dict, repr=False)  # patch centres, per case once

    def __len__(self) -> int:
        return len(self.images)

    # the reading interface it shares with ``CachedCases``
    def shape(self, i: int) -> tuple[int, ...]:
        return tuple(self.masks[i].shape)

    def read(self, i: int, region: tuple[slice, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if region is None:
            return self.images[i], self.masks[i]
        return self.images[i][(slice(None), *region)], self.masks[i][region]

    def locations(self, i: int) -> dict[int, np.ndarray]:
        if i not in self._locations:
            rows = sample_locations(self.masks[i].numpy(), 0)
            self._locations[i] = {int(k): rows[rows[:, 0] == k, 1:] for k in np.unique(rows[:, 0])}
        return self._locations[i]


def prepare_cases(items: list[Item], preprocess: Compose, spatial_dims: int) -> PreparedCases:
    """Apply ``preprocess`` (image and ``mask`` keys) to loaded segmentation items, unstacked."""
    if not items:
        raise MedsightError("no cases to prepare (empty split)")
    images, masks, ids, sources, spacings = [], [], [], [], []
    for item in items:
        source = _checked_source(item, spatial_dims)
        out = _apply(preprocess, {"image": item["image"], "mask": item["mask"]}, source)
        image = out["image"]
        images.append(_tensor(image).float())
        masks.append(label_map(out["mask"]))
        spacings.append(spacing_of(image))
        ids.append(str(item.get("id", len(ids))))
        sources.append(source)
    return PreparedCases(images, masks, ids, sources, spacings)
