"""Larger backbones for the registry: MONAI's EfficientNet, ViT, SegResNet, SwinUNETR, UNETR and
FlexibleUNet (all without torchvision), and any ``timm:<name>`` model where timm imports.

Factories take ``(in_channels, num_classes, spatial_dims, **options)``; nets whose position
embeddings fix the input size (ViT, UNETR) also get ``img_size`` (the registry passes the
input size). Defaults are MONAI's, so published weights of the same architecture fit;
``model.options`` makes them small (``hidden_size``, ``num_layers``, ``feature_size``, ...).
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.nets import ViT
from torch import nn

from medsight.errors import ConfigError


def efficientnet(variant: str):
    def factory(in_channels, num_classes, spatial_dims, **options):
        from monai.networks.nets import EfficientNetBN

        # pretrained=False: MONAI would download ImageNet weights; model.pretrained loads files
        return EfficientNetBN(variant, pretrained=False, progress=False, spatial_dims=spatial_dims,
                              in_channels=in_channels, num_classes=num_classes, **options)

    return factory


def vit_patch_size(img_size: Sequence[int], requested: int | None = None) -> int:
    """ViT's patch side: the request, else the largest of 16, 8, 4, 2 dividing every side into
    at least 4 patches (28 px MedMNIST: 4; 64 px: 16; 224 px: 16)."""
    if requested is not None:
        if any(s % requested for s in img_size):
            raise ConfigError(f"model.options.patch_size {requested} must divide the input size "
                              f"{'x'.join(map(str, img_size))}")
        return requested
    for side in (16, 8, 4, 2):
        if all(s % side == 0 and s // side >= 4 for s in img_size):
            return side
    raise ConfigError(f"vit: no patch size (16, 8, 4 or 2) divides the input size {'x'.join(map(str, img_size))} "
                      "into at least 4 patches a side; set transforms.spatial_size (e.g. 32 or 64)")


class ViTClassifier(ViT):
    """MONAI's ViT returning logits only (no Tanh on them), with a spatial map of the tokens
    entering the last block as ``token_map``: the layer Grad-CAM explains, as
    pytorch-grad-cam does for ViTs (the class token reads the patch tokens in that block).

    The parameter names are MONAI ViT's, so its weights load as they are."""

    def __init__(self, in_channels: int, num_classes: int, spatial_dims: int, img_size: Sequence[int],
                 patch_size: int | None = None, **options):
        img_size = tuple(int(s) for s in img_size)
        side = vit_patch_size(img_size, patch_size)
        super().__init__(in_channels, img_size, side, classification=True, num_classes=num_classes,
                         spatial_dims=spatial_dims, post_activation="none", **options)
        self.grid = tuple(s // side for s in img_size)
        self.token_map = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for block in self.blocks[:-1]:
            x = block(x)
        cls, tokens = x[:, :1], x[:, 1:]
        grid = self.token_map(tokens.transpose(1, 2).reshape(x.shape[0], -1, *self.grid))
        x = torch.cat((cls, grid.flatten(2).transpose(1, 2)), dim=1)
        x = self.norm(self.blocks[-1](x))
        return self.classification_head(x[:, 0])


def vit(in_channels, num_classes, spatial_dims, img_size=None, **options):
    if img_size is None:
        raise ConfigError("model 'vit' needs the input size: set transforms.spatial_size")
    return ViTClassifier(in_channels, num_classes, spatial_dims, img_size, **options)


def segresnet(in_channels, num_classes, spatial_dims, **options):
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, **options)


def swinunetr(in_channels, num_classes, spatial_dims, **options):
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=in_channels, out_channels=num_classes, spatial_dims=spatial_dims, **options)


def unetr(in_channels, num_classes, spatial_dims, img_size=None, **options):
    from monai.networks.nets import UNETR

    if img_size is None:
        raise ConfigError("model 'unetr' needs the input size: set segmentation.patch_size")
    return UNETR(in_channels=in_channels, out_channels=num_classes, img_size=tuple(img_size),
                 spatial_dims=spatial_dims, **options)


def flexunet(in_channels, num_classes, spatial_dims, **options):
    """A U-Net decoder on an EfficientNet or ResNet encoder (``model.options.backbone``); the
    encoder's names are the classifier's under ``encoder.``, so a classifier's weights load."""
    from monai.networks.nets import FlexibleUNet

    backbone = options.pop("backbone", "efficientnet-b0")
    return FlexibleUNet(in_channels, num_classes, backbone, pretrained=False, spatial_dims=spatial_dims, **options)


def timm_model(name: str, in_channels: int, num_classes: int, spatial_dims: int, **options) -> nn.Module:
    """``timm.create_model(name)`` without downloads; Grad-CAM explains its last feature stage."""
    if spatial_dims != 2:
        raise ConfigError(f"model 'timm:{name}': timm models are 2D")
    try:
        import timm
    except Exception as exc:  # timm imports torchvision, which may not match this torch
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"model 'timm:{name}' needs timm, which does not import here ({first}); "
                          "pip install 'medsight[timm]' with a torchvision matching torch, or choose a "
                          "MONAI model (efficientnet-b0, vit, resnet50, ...)") from None
    try:
        model = timm.create_model(name, pretrained=False, in_chans=in_channels, num_classes=num_classes, **options)
    except RuntimeError as exc:  # timm's "Unknown model"
        raise ConfigError(f"model 'timm:{name}': {exc}") from None
    info = getattr(model, "feature_info", None)
    last = info[-1].get("module", "") if info else ""
    spatial = last and not any(k in type(model).__name__.lower() for k in ("vision", "vit", "deit", "eva"))
    model.cam_layer = last if spatial else ""  # ViT tokens are no map: occlusion explains those
    return model
