"""Pooled statistics of a net's input and intermediate stages, read in the same forward pass.

An out-of-distribution score on the penultimate feature alone misses what the classifier has
learnt to ignore: a grey fundus photograph and a breast ultrasound can land near each other
there. The earlier stages still tell their textures and intensities apart (Lee et al. 2018's
feature ensemble; Sastry & Oore 2020). The stages are those of ``models/stages.py`` (the
top-level children in forward order, blocks opened), so every registered classifier has them
without a table per architecture; each stage's output is reduced to its channel means and
standard deviations over space (or over tokens, for a transformer's ``(N, L, D)``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from medsight.models.stages import stages

INPUT = "input"
MAX_TAPS = 8  # evenly spaced stages at most (EfficientNet has 20): the guard runs on every prediction
QUANTILES = torch.linspace(0.02, 0.98, 9)
MAX_INPUT_VALUES = 65536  # per image and channel, for the input quantiles (a 3D volume is strided)
# Standard deviations too while a stage has at most this many channels: the guard keeps a DxD
# precision matrix per stage in the run's profile (512 features: 1.4 MB of JSON)
MAX_STD_CHANNELS = 256


def tap_names(model: nn.Module) -> list[str]:
    """``INPUT`` and the stages whose outputs are tapped, input to output: all but the head, at
    most ``MAX_TAPS``."""
    names = [name for name, _ in stages(model)][:-1]
    if len(names) > MAX_TAPS:
        step = (len(names) - 1) / (MAX_TAPS - 1)
        names = [names[round(i * step)] for i in range(MAX_TAPS)]
    return [INPUT, *names]


def pooled(x: torch.Tensor) -> torch.Tensor:
    """``(N, 2C)``: channel means and standard deviations of a stage's output (``(N, C)`` means
    beyond ``MAX_STD_CHANNELS``)."""
    if isinstance(x, (tuple, list)):
        x = x[0]
    x = x.detach().float()
    if x.ndim == 2:
        return x
    x = x.transpose(1, 2) if x.ndim == 3 else x.flatten(2)  # tokens (N, L, D) -> (N, D, L)
    if x.shape[1] > MAX_STD_CHANNELS:
        return x.mean(2)
    return torch.cat([x.mean(2), x.std(2, correction=0)], 1)


def input_statistics(x: torch.Tensor) -> torch.Tensor:
    """``(N, C * 11)``: each channel's mean, standard deviation and quantiles (the histogram's shape)."""
    x = x.detach().float().flatten(2)
    x = x[..., :: max(1, x.shape[2] // MAX_INPUT_VALUES)]
    q = torch.quantile(x, QUANTILES.to(x.device), dim=2).permute(1, 2, 0)  # (N, C, 9)
    return torch.cat([x.mean(2, keepdim=True), x.std(2, correction=0, keepdim=True), q], 2).flatten(1)


@contextlib.contextmanager
def tapped(model: nn.Module, names: list[str]) -> Iterator[dict[str, list[torch.Tensor]]]:
    """While open, each forward of ``model`` appends each named stage's pooled output to the
    yielded lists, on the CPU; ``INPUT`` among the names: the input's statistics."""
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    hooks = []
    if INPUT in names:
        hooks.append(model.register_forward_pre_hook(
            lambda _m, inputs: captured[INPUT].append(input_statistics(inputs[0]).cpu())))
    for name in (n for n in names if n != INPUT):
        hooks.append(model.get_submodule(name).register_forward_hook(
            lambda _m, _in, out, name=name: captured[name].append(pooled(out).cpu())))
    try:
        yield captured
    finally:
        for hook in hooks:
            hook.remove()
