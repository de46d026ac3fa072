"""Intensity normalisation: CT windows in HU, z-score or percentiles for MR, [0, 1] for photographs."""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import MapTransform, NormalizeIntensityd, ScaleIntensityd, ScaleIntensityRanged

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
        return PercentileScaled(keys, lower=0.5, upper=99.5)
    if cfg.intensity in ("scale01", None):
        if cfg.intensity_range is not None:
            lo, hi = cfg.intensity_range
            return ScaleIntensityRanged(keys, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)
        return ScaleIntensityd(keys, minv=0.0, maxv=1.0)
    return None


class PercentileScaled(MapTransform):
    """Each channel's ``lower``..``upper`` percentiles mapped to 0..1, clipped: the numbers of
    MONAI's ``ScaleIntensityRangePercentilesd(b_min=0, b_max=1, clip=True, channel_wise=True)``.

    MONAI's chain of out-of-place operations holds three full-size copies at once; this holds
    one, which decides how many 512x512x300 CT volumes the cache build's workers can preprocess
    side by side: the output buffer is first numpy's scratch space for the percentiles
    (``overwrite_input``, the same numbers), then receives the scaled input. The input is left
    untouched."""

    def __init__(self, keys, lower: float = 0.5, upper: float = 99.5):
        super().__init__(keys)
        self.lower, self.upper = lower, upper

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            source = d[key]
            out = source.clone().float()  # a MetaTensor stays one, with its affine and meta
            plain = source.as_tensor() if hasattr(source, "as_tensor") else source
            for c, channel in enumerate(out):
                values = channel.as_tensor() if hasattr(channel, "as_tensor") else channel
                lo, hi = np.percentile(values.numpy(), [self.lower, self.upper], overwrite_input=True)
                torch.sub(plain[c], float(lo), out=values)  # the scratch's values back, in order
                if hi > lo:
                    values.div_(float(hi - lo)).clamp_(0.0, 1.0)
                # else a constant channel: MONAI's rule, minus a_min
            d[key] = out
        return d
