"""Intensity normalisation: CT windows in HU, z-score or percentiles for MR, [0, 1] for photographs."""

from __future__ import annotations

from monai.transforms import (
    MapTransform,
    NormalizeIntensityd,
    ScaleIntensityd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
)

from medsight.config import TransformConfig, WindowConfig
from medsight.errors import ConfigError

# (level, width) in HU, as radiology workstations ship them.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
}


def window_range(cfg: WindowConfig) -> tuple[float, float]:
    """The HU interval ``[level - width/2, level + width/2]`` of a preset or explicit window."""
    if cfg.preset is not None:
        level, width = WINDOW_PRESETS[cfg.preset]
    elif cfg.level is not None and cfg.width is not None:
        level, width = cfg.level, cfg.width
    else:
        raise ConfigError("transforms.window: give a preset (lung, mediastinum, abdomen, brain, "
                          "bone) or both level and width")
    return level - width / 2, level + width / 2


def intensity_transform(cfg: TransformConfig, keys: list[str]) -> MapTransform | None:
    """The normalisation chosen in the config, or None for ``intensity: none``."""
    if cfg.intensity == "window":
        lo, hi = window_range(cfg.window)
        return ScaleIntensityRanged(keys, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)
    if cfg.intensity == "zscore":
        return NormalizeIntensityd(keys, channel_wise=True)
    if cfg.intensity == "percentile":  # robust to the odd extreme voxel (MR, microscopy)
        return ScaleIntensityRangePercentilesd(keys, lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True,
                                               channel_wise=True)
    if cfg.intensity in ("scale01", None):
        if cfg.intensity_range is not None:
            lo, hi = cfg.intensity_range
            return ScaleIntensityRanged(keys, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)
        return ScaleIntensityd(keys, minv=0.0, maxv=1.0)
    return None
