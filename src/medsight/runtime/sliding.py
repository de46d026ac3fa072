"""Whole-image segmentation by sliding windows (MONAI), with optional mirror test-time augmentation.

Windows of the training patch size overlap (``segmentation.sw_overlap``) and are blended with
Gaussian weights, so predictions near a window's border, where the network saw little
context, count less. Mirror TTA averages the softmax over every combination of flips along
the spatial axes (4 passes in 2D, 8 in 3D), as nnU-Net does.
"""

from __future__ import annotations

import itertools

import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medsight.runtime import Runtime


@torch.inference_mode()
def sliding_probabilities(model: nn.Module, image: torch.Tensor, patch: tuple[int, ...], runtime: Runtime,
                          batch_size: int = 4, overlap: float = 0.5, mirror: bool = False) -> torch.Tensor:
    """Class probabilities ``(K, *S)`` (fp32, CPU) for one image ``(C, *S)``."""
    model.eval()
    x = runtime.batch(image[None].float())
    dims = tuple(range(2, x.ndim))
    flips = [f for r in range(len(dims) + 1) for f in itertools.combinations(dims, r)] if mirror else [()]
    total = None
    for flip in flips:
        xi = x.flip(flip) if flip else x
        with runtime.autocast():
            logits = sliding_window_inference(xi, patch, batch_size, model, overlap=overlap, mode="gaussian")
        probs = torch.softmax(torch.as_tensor(logits).float(), 1)
        probs = probs.flip(flip) if flip else probs
        total = probs if total is None else total + probs
    return (total / len(flips))[0].cpu()
