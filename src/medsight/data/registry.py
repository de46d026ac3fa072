"""Data sets by name: ``build_dataset(cfg.data)`` returns the items of every split."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from medsight.config import DataConfig
from medsight.data.splits import fold_splits
from medsight.data.types import SplitData
from medsight.errors import ConfigError


def _synthetic(cfg: DataConfig, seed: int, unsplit: str | None) -> SplitData:
    from medsight.data.synthetic import synthetic_dataset

    s = cfg.synthetic
    return synthetic_dataset(s.n_train, s.n_val, s.n_test, s.size, s.nodule_fraction, s.seed)


def _medmnist(cfg: DataConfig, seed: int, unsplit: str | None) -> SplitData:
    from medsight.data.medmnist import medmnist_dataset

    return medmnist_dataset(_existing(cfg.path))


def _manifest(cfg: DataConfig, seed: int, unsplit: str | None) -> SplitData:
    from medsight.data.manifest import manifest_dataset

    return manifest_dataset(_existing(cfg.path), seed=seed, fractions=cfg.split_fractions, unsplit=unsplit,
                            images=cfg.images, clinical=cfg.clinical)


def _folder(cfg: DataConfig, seed: int, unsplit: str | None) -> SplitData:
    from medsight.data.folder import folder_dataset

    return folder_dataset(_existing(cfg.path), seed=seed, fractions=cfg.split_fractions,
                          patient_from=cfg.patient_from, unsplit=unsplit)


def _msd(cfg: DataConfig, seed: int, unsplit: str | None) -> SplitData:
    from medsight.data.msd import msd_dataset

    return msd_dataset(_existing(cfg.path), seed=seed, fractions=cfg.split_fractions, unsplit=unsplit)


DATASETS: dict[str, Callable[[DataConfig, int, str | None], SplitData]] = {
    "synthetic": _synthetic,
    "medmnist": _medmnist,
    "manifest": _manifest,
    "folder": _folder,
    "msd": _msd,
}


def build_dataset(cfg: DataConfig, seed: int = 0, unsplit: str | None = None) -> SplitData:
    """Items for every split of the configured data set (images may still be paths).

    ``unsplit``: put every item of a data set that has no split of its own into this split
    instead of splitting by patient (for evaluating on an external set).
    """
    if cfg.dataset == "voc":
        raise ConfigError("data.dataset=voc holds boxes for detection, not classification labels")
    try:
        factory = DATASETS[cfg.dataset]
    except KeyError:
        raise ConfigError(f"unknown data set {cfg.dataset!r}; known: {', '.join(DATASETS)}") from None
    data = factory(cfg, seed, unsplit)
    return refold(data, cfg.folds, cfg.fold, seed) if cfg.folds and unsplit is None else data


def refold(data: SplitData, folds: int, fold: int, seed: int) -> SplitData:
    """Cross-validation fold ``fold`` of ``folds``: train+val re-split by patient, test kept."""
    items = data.train + data.val + data.test
    splits = ["train"] * len(data.train) + ["val"] * len(data.val) + ["test"] * len(data.test)
    patients = [str(it.get("patient_id", it.get("id", i))) for i, it in enumerate(items)]
    labels = [it.get("label", 0) for it in items]
    new = fold_splits(patients, labels, splits, folds, fold, seed)
    parts: dict[str, list] = {s: [] for s in ("train", "val", "test")}
    for item, split in zip(items, new):
        parts[split].append(item)
    return SplitData(parts["train"], parts["val"], parts["test"], data.class_names, data.skipped)


def dataset_kind(path: Path) -> str:
    """Guess the data set kind of a path given on the command line (``--data``)."""
    if path.is_dir():
        msd = (path / "dataset.json").is_file() or ((path / "imagesTr").is_dir() and (path / "labelsTr").is_dir())
        return "msd" if msd else "folder"
    if path.suffix.lower() == ".npz":
        return "medmnist"
    if path.suffix.lower() in (".csv", ".tsv"):
        return "manifest"
    raise ConfigError(f"{path}: cannot tell the data set kind; use a .npz, a manifest .csv or a folder")


def implied_task(path: Path, kind: str) -> str | None:
    """The task a data set can only serve: segmentation for MSD folders and mask-only manifests."""
    from medsight.data.manifest import is_segmentation_manifest

    if kind == "msd" or (kind == "manifest" and is_segmentation_manifest(path)):
        return "segmentation"
    return None


def _existing(path: Path | None) -> Path:
    if path is None or not Path(path).exists():
        raise ConfigError(f"{path}: data path not found")
    return Path(path)
