"""Preprocess once, to disk, and stream: the on-disk cache of preprocessed cases.

Each case is read, preprocessed (resampled, resized, normalised) and written once, as one
NumPy ``.npy`` array in a compact dtype (uint8 for 8-bit pictures, float16 otherwise; label
maps uint8) beside a small JSON of what later steps need (source, spacing, shape). Training,
evaluation, export and every fold or ensemble member then read the arrays back per batch
(segmentation: memory-mapped patches), so memory no longer grows with the number of cases.

Layout, after nnU-Net's preprocessed folder::

    CACHE_DIR/<settings-hash>/settings.json        the preprocessing this folder holds
    CACHE_DIR/<settings-hash>/<ab>/<case-key>.npy  image (C, *S); .mask.npy, .loc.npy, .json

The case key hashes the case's files (path, size, modification time), so a changed file is
rebuilt alone; the settings hash covers every preprocessing setting, so a changed setting
gets a folder of its own. Entries are written to a temporary name and renamed, the JSON last:
a killed build leaves no entry that looks complete. Building runs over the cores in worker
processes with a progress bar; a rerun finds the entries and starts at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medsight.data.loading import Guarded
from medsight.data.types import Item
from medsight.errors import InputFileError, MedsightError

log = logging.getLogger(__name__)

CACHE_DIRNAME = ".medsight-cache"
CACHE_VERSION = 2  # 2: FitResized area-averages when shrinking
RAM_LIMIT_BYTES = 512 * 2**20  # a split whose cached arrays fit stays in memory (compact dtype)
PARALLEL_FROM = 24  # fewer missing cases: build in this process (worker start-up costs more)
LOCATIONS_PER_CLASS = 10_000  # foreground voxels kept per case and class for patch centres
FILE_KEYS = ("image", "mask")
FINGERPRINTS = "fingerprints"


def settings_hash(settings: dict[str, Any]) -> str:
    """A short, stable hash of the preprocessing settings (JSON, sorted keys)."""
    text = json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def case_key(item: Item) -> str:
    """Hash of the case's files (path, size, mtime) and id: changes when any file changes."""
    parts: list[Any] = [str(item.get("id"))]
    paths = [item.get(k) for k in FILE_KEYS] + list(item.get("extra_images") or [])
    for path in paths:
        if path is None:
            parts.append(None)
            continue
        try:
            st = os.stat(path)
            parts.append([str(Path(path).resolve()), st.st_size, st.st_mtime_ns])
        except OSError:
            parts.append([str(path), None, None])  # missing: reading it reports the problem
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def is_file_item(item: Item) -> bool:
    """Items whose image is a path are cached; in-memory sets (MedMNIST, synthetic) are not."""
    return not isinstance(item.get("image"), torch.Tensor)


def encoding_for(settings: dict[str, Any]) -> str:
    """uint8 for 8-bit pictures scaled from [0, 255] (no precision lost), else float16."""
    t = settings.get("transforms", {})
    rng = t.get("intensity_range")
    return "uint8" if t.get("intensity") == "scale01" and rng and list(rng) == [0.0, 255.0] else "float16"


def encode(image: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "uint8":
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return image.astype(np.float16)


def decode(array: np.ndarray) -> torch.Tensor:
    """Float32 tensor of an encoded array (uint8 back to [0, 1])."""
    x = torch.from_numpy(np.ascontiguousarray(array))
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


class CaseStore:
    """One settings folder of the cache: write and read entries by case key."""

    def __init__(self, root: str | Path, settings: dict[str, Any]):
        self.settings = settings
        self.encoding = encoding_for(settings)
        self.folder = Path(root) / settings_hash(settings)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MedsightError(f"{root}: cannot create the preprocessing cache ({exc.strerror or exc}); "
                                "set data.cache_dir to a writable folder") from None
        marker = self.folder / "settings.json"
        if not marker.is_file():
            _write_atomic(marker, json.dumps(settings, indent=1, sort_keys=True, default=str).encode())

    def path(self, key: str, suffix: str) -> Path:
        return self.folder / key[:2] / f"{key}{suffix}"

    def meta(self, key: str) -> dict | None:
        """The entry's metadata, or None when it is absent or was never completed."""
        try:
            return json.loads(self.path(key, ".json").read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, meta: dict, arrays: dict[str, np.ndarray]) -> dict:
        """Write the arrays (``.npy`` each), then the metadata that marks the entry complete."""
        for suffix, array in arrays.items():
            write_array(self.path(key, suffix), array)
        meta = {**meta, "key": key}
        _write_atomic(self.path(key, ".json"), json.dumps(meta).encode())
        return meta

    def load(self, key: str, suffix: str = ".npy", mmap: bool = False) -> np.ndarray:
        return np.load(self.path(key, suffix), mmap_mode="r" if mmap else None)


def write_array(path: Path, array: np.ndarray) -> None:
    """One ``.npy`` file, atomically, written straight from the array (no copy in memory)."""
    _write_atomic(path, lambda fh: np.save(fh, np.ascontiguousarray(array), allow_pickle=False))


def _write_atomic(path: Path, data: bytes | Callable[[Any], None]) -> None:
    """Temporary file and rename: a kill leaves the old file or none, never half of one.
    ``data`` is bytes, or a function writing to the open file (an array is not copied first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                data(fh)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MedsightError(f"{path.parent}: cannot write the preprocessing cache ({exc.strerror or exc}); "
                            "set data.cache_dir to a writable folder") from None


# ----------------------------------------------------------------------------- building


def build_entries(items: Sequence[Item], store: CaseStore, make: Callable[[Item], dict], *,
                  policy: str = "fail", progress: bool = True, workers: int | None = None,
                  what: str = "preprocessing") -> tuple[list[dict], list[tuple[str, str]]]:
    """Metadata of every item's cache entry, building the missing ones with ``make(item)``
    (which preprocesses and calls ``store.put``); return ``(metas, skipped)``, ``metas`` in item
    order with None for a skipped file."""
    # tqdm.std, not tqdm.auto: tqdm.auto's constructor calls iter() on what it wraps, which for a
    # DataLoader starts a second set of workers that then sit idle holding memory.
    from tqdm.contrib.logging import logging_redirect_tqdm
    from tqdm.std import tqdm

    keys = [case_key(it) for it in items]
    metas: list[dict | None] = [store.meta(k) for k in keys]
    missing = [i for i, m in enumerate(metas) if m is None]
    skipped: list[tuple[str, str]] = []
    if missing:
        n_workers = min(workers if workers is not None else (os.cpu_count() or 1), 4)
        n_workers = n_workers if len(missing) >= PARALLEL_FROM else 0
        todo = [{**items[i], "_cache_key": keys[i]} for i in missing]
        loader = torch.utils.data.DataLoader(Guarded(todo, make), batch_size=None, num_workers=n_workers,
                                             collate_fn=lambda x: x, prefetch_factor=4 if n_workers else None)
        if len(missing) < len(items):
            log.info("cache: %d of %d cases to preprocess (%s)", len(missing), len(items), store.folder)
        with logging_redirect_tqdm():
            bar = tqdm(loader, total=len(todo), desc=what, unit="case", disable=not progress or len(todo) < 20)
            for j, (meta, problem) in enumerate(bar):  # in order: the DataLoader keeps it
                if problem is not None:
                    if policy == "fail":
                        raise InputFileError(*problem)
                    log.warning("skipping %s: %s", *problem)
                    skipped.append(problem)
                    continue
                metas[missing[j]] = meta
    if skipped:
        log.warning("skipped %d of %d files", len(skipped), len(items))
    return metas, skipped


def sample_locations(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Up to LOCATIONS_PER_CLASS voxel coordinates per foreground class (a fixed subsample),
    as rows ``(class, *coords)``."""
    rng = np.random.default_rng(0)
    flat = mask.reshape(-1)
    rows = []
    for k in range(1, max(num_classes, int(flat.max(initial=0)) + 1)):
        idx = np.flatnonzero(flat == k)
        if not len(idx):
            continue
        if len(idx) > LOCATIONS_PER_CLASS:
            idx = np.sort(rng.choice(idx, LOCATIONS_PER_CLASS, replace=False))
        coords = np.stack(np.unravel_index(idx, mask.shape), axis=1)
        rows.append(np.concatenate([np.full((len(idx), 1), k), coords], axis=1))
    return np.concatenate(rows).astype(np.int32) if rows else np.zeros((0, 1 + mask.ndim), np.int32)


def remembered(root: str | Path, kind: str, parts: Any, compute: Callable[[], dict]) -> dict:
    """``compute()``'s JSON result, kept under ``root/fingerprints`` keyed by ``parts`` (the
    planner's fingerprint: a rerun or another fold does not read the sample again)."""
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = Path(root) / FINGERPRINTS / f"{kind}-{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    value = compute()
    _write_atomic(path, json.dumps(value).encode())
    return value


# ----------------------------------------------------------------------------- reading


class CachedImages:
    """The images of one split as a read-only stack ``(N, C, *S)``: indexing reads the
    cached arrays (or a compact copy in memory when the split is small) and returns float32."""

    def __init__(self, store: CaseStore, metas: list[dict]):
        self.store, self.keys = store, [m["key"] for m in metas]
        shapes = {tuple(m["shape"]) for m in metas}
        if len(shapes) > 1:
            a, b = sorted(shapes)[:2]
            raise MedsightError(f"images have different shapes after preprocessing (e.g. {a} and {b}); "
                                "set transforms.spatial_size (and transforms.channels)")
        self.case_shape = shapes.pop() if shapes else (0,)
        itemsize = 1 if store.encoding == "uint8" else 2
        self._ram: np.ndarray | None = None
        if self.keys and len(self.keys) * int(np.prod(self.case_shape)) * itemsize <= RAM_LIMIT_BYTES:
            first = store.load(self.keys[0])
            self._ram = np.empty((len(self.keys), *first.shape), first.dtype)  # filled in place: no 2x peak
            for i, key in enumerate(self.keys):
                self._ram[i] = first if i == 0 else store.load(key)

    @property
    def in_memory(self) -> bool:
        return self._ram is not None

    @property
    def shape(self) -> torch.Size:
        return torch.Size([len(self.keys), *self.case_shape])

    @property
    def ndim(self) -> int:
        return 1 + len(self.case_shape)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, (int, np.integer)):
            return self[[int(index)]][0]
        if isinstance(index, slice):
            index = range(*index.indices(len(self)))
        idx = [int(i) for i in (index.tolist() if isinstance(index, torch.Tensor) else index)]
        if self._ram is not None:
            return decode(self._ram[idx])
        if not idx:
            return torch.empty(0, *self.case_shape)
        return decode(np.stack([self.store.load(self.keys[i]) for i in idx]))

    def float(self) -> "CachedImages":
        return self

    def sample_stats(self, n: int = 256) -> tuple[float, float]:
        """Mean and standard deviation over an evenly spaced sample of at most ``n`` images."""
        pick = np.linspace(0, len(self) - 1, min(n, len(self))).round().astype(int).tolist()
        x = self[pick]
        return float(x.mean()), float(x.std())


class CachedArrays(Sequence):
    """Cached arrays of any shapes as a read-only list of tensors, read when indexed."""

    def __init__(self, store: CaseStore, keys: list[str]):
        self.store, self.keys = store, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return torch.from_numpy(self.store.load(self.keys[index]))


@dataclass
class CachedCases:
    """Segmentation cases in the cache: whole cases or patches, read memory-mapped."""

    store: CaseStore
    metas: list[dict]

    def __len__(self) -> int:
        return len(self.metas)

    def shape(self, i: int) -> tuple[int, ...]:
        return tuple(self.metas[i]["shape"][1:])

    def read(self, i: int, region: tuple[slice, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``(C, *R)`` float32 and mask ``(*R)`` uint8 of the case, or of ``region``."""
        key = self.metas[i]["key"]
        image = self.store.load(key, ".npy", mmap=True)
        mask = self.store.load(key, ".mask.npy", mmap=True)
        if region is not None:
            image, mask = image[(slice(None), *region)], mask[region]
        return decode(np.array(image)), torch.from_numpy(np.array(mask))

    def locations(self, i: int) -> dict[int, np.ndarray]:
        rows = self.store.load(self.metas[i]["key"], ".loc.npy")
        return {int(k): rows[rows[:, 0] == k, 1:] for k in np.unique(rows[:, 0])}


# ----------------------------------------------------------------------------- management


def cache_info(root: str | Path) -> list[dict[str, Any]]:
    """One row per settings folder: entries, size on disk, and what it holds."""
    rows = []
    folders = sorted(p for p in Path(root).iterdir() if p.is_dir() and p.name != FINGERPRINTS) \
        if Path(root).is_dir() else []
    for folder in folders:
        files = [f for f in folder.rglob("*") if f.is_file()]
        try:
            settings = json.loads((folder / "settings.json").read_text())
        except (OSError, ValueError):
            settings = {}
        rows.append({"folder": str(folder), "cases": sum(f.suffix == ".json" and f.name != "settings.json"
                                                         for f in files),
                     "mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
                     "task": settings.get("task", "?"), "data": settings.get("data", "?")})
    return rows


def clear_cache(root: str | Path) -> int:
    """Delete the cache folder; return the bytes freed."""
    root = Path(root)
    if not root.is_dir():
        return 0
    if root.name != CACHE_DIRNAME and not any((p / "settings.json").is_file() for p in root.iterdir()):
        raise MedsightError(f"{root}: not a medsight cache folder; nothing deleted")
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    shutil.rmtree(root)
    return size
