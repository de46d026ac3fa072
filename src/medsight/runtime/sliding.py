"""Whole-image segmentation by sliding windows (MONAI), with optional mirror test-time augmentation.

Windows of the training patch size overlap (``segmentation.sw_overlap``) and are blended with
Gaussian weights, so predictions near a window's border, where the network saw little
context, count less. Mirror TTA averages the softmax over every combination of flips along
the spatial axes (4 passes in 2D, 8 in 3D), as nnU-Net does.

Memory: a 512x512x300 CT is 315 MB per float32 channel, so every full-size copy counts. Only
the windows are moved to the runtime's memory format, the softmax is taken in place and flips
are summed into one buffer: the peak is MONAI's output and weight maps plus the image.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Sequence

import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medsight.runtime import Runtime


class OverBudget(RuntimeError):
    """A whole-image prediction would end after its deadline; ``seconds``: its estimated length
    (infinite when the deadline had passed before a window was timed)."""

    def __init__(self, seconds: float):
        super().__init__(f"would take about {seconds:.0f} s")
        self.seconds = seconds


def window_count(shape: Sequence[int], patch: Sequence[int], overlap: float) -> int:
    """How many windows MONAI's ``sliding_window_inference`` runs over an image of ``shape``."""
    count = 1
    for size, p in zip(shape, patch):
        step = max(int(p * (1 - overlap)), 1)
        count *= 1 if size <= p else math.ceil((size - p) / step) + 1
    return count


@torch.no_grad()  # not inference_mode: callers normalise and edit the result in place
def sliding_probabilities(model: nn.Module, image: torch.Tensor, patch: tuple[int, ...], runtime: Runtime,
                          batch_size: int = 4, overlap: float = 0.5, mirror: bool = False,
                          deadline: float | None = None) -> torch.Tensor:
    """Class probabilities ``(K, *S)`` (fp32, CPU) for one image ``(C, *S)``.

    ``deadline`` (``time.monotonic()`` seconds): raise :class:`OverBudget` as soon as the
    windows timed so far say the image would not be done by then."""
    model.eval()
    x = image[None].float()
    dims = tuple(range(2, x.ndim))
    flips = [f for r in range(len(dims) + 1) for f in itertools.combinations(dims, r)] if mirror else [()]
    calls = math.ceil(window_count(x.shape[2:], patch, overlap) / batch_size) * len(flips)
    predictor = _Predictor(model, runtime, calls, deadline)
    total = None
    for flip in flips:
        xi = x.flip(flip) if flip else x
        with runtime.autocast():
            logits = sliding_window_inference(xi, patch, batch_size, predictor, overlap=overlap, mode="gaussian")
        del xi
        probs = _softmax_(torch.as_tensor(logits).float())
        del logits
        probs = probs.flip(flip) if flip else probs
        total = probs if total is None else total.add_(probs)
        del probs
    return total.div_(len(flips))[0].cpu()


class _Predictor:
    """The model on one batch of windows (in the runtime's memory format), watching the deadline."""

    def __init__(self, model: nn.Module, runtime: Runtime, calls: int, deadline: float | None):
        self.model, self.runtime, self.calls, self.deadline = model, runtime, calls, deadline
        self.done, self.first_done = 0, 0.0

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        if self.deadline is not None:
            now = time.monotonic()
            # the first call carries one-off kernel set-up, so the rate comes from the calls after it
            if self.done >= 2:
                per_call = (now - self.first_done) / (self.done - 1)
                if now + per_call * (self.calls - self.done) > self.deadline:
                    raise OverBudget(per_call * self.calls)
            elif now > self.deadline:
                raise OverBudget(float("inf"))
        out = self.model(self.runtime.batch(windows))
        self.done += 1
        if self.done == 1:
            self.first_done = time.monotonic()
        return out


def _softmax_(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 in place: no second full-size copy of a whole volume's scores."""
    logits.sub_(logits.amax(1, keepdim=True)).exp_()
    return logits.div_(logits.sum(1, keepdim=True))
