"""Grad-CAM explanations (MONAI's implementation) for any registered classifier."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.visualize import GradCAM
from torch import nn

from medsight.models import model_spec


def gradcam(model: nn.Module, model_name: str, image: torch.Tensor, class_index: int) -> np.ndarray:
    """Heatmap in [0, 1] with the spatial shape of ``image`` (C, *spatial), for one class.

    Computed in fp32: bf16 gradients make coarse maps noisier for no useful speed-up here.
    """
    cam = GradCAM(nn_module=model, target_layers=model_spec(model_name).cam_layer)
    x = image[None].to(next(model.parameters()).device)
    with warnings.catch_warnings():
        # MONAI's hook warns that no input requires grad; the layer outputs do, which is enough.
        warnings.simplefilter("ignore", UserWarning)
        with torch.enable_grad():
            heat = cam(x, class_idx=class_index)
    heat = heat[0, 0].detach().float().cpu().numpy()
    heat = np.nan_to_num(heat, nan=0.0)
    return np.clip(heat, 0.0, 1.0).astype(np.float32)
