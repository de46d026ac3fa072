"""Turning items' image paths into images, once per run, under the bad-file policy.

``policy="fail"`` stops at the first unusable file (the safe default: a silently shrinking
data set changes results); ``policy="skip"`` logs each bad file on one line and carries on.
Only file paths are logged, never metadata, which may hold patient data.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from medsight.data.types import Item
from medsight.errors import ConfigError, InputFileError
from medsight.io.read import read_image

logger = logging.getLogger(__name__)

Policy = Literal["fail", "skip"]
# segmentation items carry a mask path too; read first, so the compact mask is all that is
# held while the image is read (a 512x512x300 CT is 315 MB per float32 copy)
IMAGE_KEYS = ("mask", "image")
DICOM_FORMATS = ("dicom", "dicom-series")
PROGRESS_THRESHOLD = 50  # below this, reading is quick and a bar is only noise
NOT_DEIDENTIFIED = "not de-identified (PatientIdentityRemoved != YES); run `medsight deid` first"


def load_items(
    items: Sequence[Item],
    *,
    policy: Policy = "fail",
    require_deidentified: bool = False,
    progress: bool = True,
) -> tuple[list[Item], list[tuple[str, str]]]:
    """Read every item's image (and mask) path; return the loaded items and the skipped
    ``(source, problem)`` pairs. Items whose images are already tensors pass through."""
    if policy not in ("fail", "skip"):
        raise ConfigError(f"unknown bad-file policy {policy!r}; use 'fail' or 'skip'")
    loaded: list[Item] = []
    skipped: list[tuple[str, str]] = []
    n_files = sum(not isinstance(it.get("image"), torch.Tensor) for it in items)
    show_bar = progress and n_files > PROGRESS_THRESHOLD
    # Redirect logging through tqdm so skip warnings do not tear the progress bar.
    with logging_redirect_tqdm():
        for item in tqdm(items, desc="reading images", unit="file", disable=not show_bar):
            try:
                loaded.append(load_item(item, require_deidentified))
            except InputFileError as exc:
                if policy == "fail":
                    raise
                logger.warning("skipping %s", exc)
                skipped.append((exc.path, exc.problem))
    if skipped:
        logger.warning("skipped %d of %d files", len(skipped), len(items))
    return loaded, skipped


class LazyItems(Sequence):
    """Items read one at a time when indexed or iterated, never all held: for one pass over
    a large set (the planner's fingerprint). A bad file is skipped or fails per ``data.bad_files``."""

    def __init__(self, items: Sequence[Item], data_cfg):
        self.items, self.policy, self.require = list(items), data_cfg.bad_files, data_cfg.require_deidentified

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return load_item(self.items[i], self.require)

    def __iter__(self):
        for item in self.items:
            try:
                yield load_item(item, self.require)
            except InputFileError:
                if self.policy == "fail":
                    raise  # the skip policy reports the file when the cache is built

    def map(self, fn: Callable[[Item], Any], workers: int = 0) -> Iterator[Any]:
        """``fn(case)`` of each readable case, in order; with ``workers``, cases are read and
        ``fn`` runs in that many processes, each holding one case at a time (``fn``'s result
        should be small: it is sent back)."""
        if not workers:
            yield from map(fn, self)
            return
        loader = torch.utils.data.DataLoader(Guarded(self, fn), batch_size=None, num_workers=workers,
                                             collate_fn=lambda x: x)
        for value, problem in loader:
            if problem is not None and self.policy == "fail":
                raise InputFileError(*problem)
            if problem is None:
                yield value


class Guarded(torch.utils.data.Dataset):
    """``fn(items[i])`` as ``(value, None)``, or ``(None, (path, problem))`` for a bad file, for
    DataLoader workers: the bad-file policy is the main process's."""

    def __init__(self, items: Sequence, fn: Callable[[Any], Any]):
        self.items, self.fn = items, fn

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            return self.fn(self.items[i]), None
        except InputFileError as exc:
            return None, (exc.path, exc.problem)


def is_deidentified(meta: Mapping[str, object]) -> bool:
    """Whether an image may be used when de-identification is required.

    Only DICOM carries the PatientIdentityRemoved flag; other formats hold no patient fields.
    """
    if meta.get("format") not in DICOM_FORMATS:
        return True
    return str(meta.get("PatientIdentityRemoved", "")).upper() == "YES"


def load_item(item: Item, require_deidentified: bool) -> Item:
    """Read one item's image (several stacked as channels) and mask, and check them."""
    result = dict(item)
    for key in IMAGE_KEYS:
        value = item.get(key)
        if value is None:
            continue
        is_tensor = isinstance(value, torch.Tensor)
        image = value if is_tensor else read_image(value)
        meta = getattr(image, "meta", {})
        if require_deidentified and key == "image" and not is_deidentified(meta):
            source = str(meta.get("source", item.get("id", ""))) if is_tensor else value
            raise InputFileError(source, NOT_DEIDENTIFIED)
        result[key] = compact_mask(image) if key == "mask" and not is_tensor else image
        del image  # a float32 mask is not held while the image is read
    if item.get("extra_images"):  # several images per case: stacked as channels on the first's grid
        result["image"] = _stack_case(result["image"], item, require_deidentified)
        del result["extra_images"]  # stacked now; loading the item again must not stack twice
    if item.get("mask") is not None:
        check_mask_matches(result["image"], result["mask"], item)
    return result


def compact_mask(mask):
    """A label map read from a file as uint8 (a quarter of float32), rounded as every
    consumer rounds it; one with values outside 0..255 is left for the consumer to refuse."""
    if mask.dtype == torch.uint8 or not mask.numel():
        return mask
    if float(mask.min()) < 0 or float(mask.max()) > 255:
        return mask
    return mask.round_().to(torch.uint8)


def _stack_case(first, item: Item, require_deidentified: bool):
    from medsight.transforms.stacking import stack_on_grid

    images, sources = [first], [str(first.meta.get("source", item.get("id", "")))]
    for value in item["extra_images"]:
        image = value if isinstance(value, torch.Tensor) else read_image(value)
        source = str(getattr(image, "meta", {}).get("source", value))
        if require_deidentified and not is_deidentified(getattr(image, "meta", {})):
            raise InputFileError(source, NOT_DEIDENTIFIED)
        images.append(image)
        sources.append(source)
    return stack_on_grid(images, sources)


def check_mask_matches(image, mask, item: Item) -> None:
    """A mask must lie on its image's grid: same spatial shape and affine (to 1e-3 mm)."""
    def name(key: str) -> str:
        value = item.get(key)
        return value if isinstance(value, str) else str(getattr(value, "meta", {}).get("source", item.get("id")))

    problem = None
    if tuple(image.shape[1:]) != tuple(mask.shape[1:]):
        problem = f"shape {tuple(mask.shape[1:])} differs from the image's {tuple(image.shape[1:])}"
    elif hasattr(image, "affine") and hasattr(mask, "affine"):
        diff = float((image.affine.double() - mask.affine.double()).abs().max())
        if diff > 1e-3:
            problem = f"affine differs from the image's by up to {diff:.3g} mm"
    if problem:
        raise InputFileError(name("mask"), f"mask does not match its image {name('image')}: {problem}")
