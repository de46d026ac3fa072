"""The model registry: a factory per name, with what Grad-CAM and input checks need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from medsight.errors import ConfigError
from medsight.models import backbones
from medsight.models.recompute import recompute_in_backward


@dataclass(frozen=True)
class ModelSpec:
    factory: Callable[..., nn.Module]  # (in_channels, num_classes, spatial_dims, **options)
    cam_layer: str  # module name whose activations Grad-CAM explains
    dims: tuple[int, ...] = (2, 3)
    min_size: int = 8  # smallest spatial size the net accepts
    description: str = ""
    task: str = "classification"  # or "segmentation": outputs one channel per class per voxel
    sized: bool = False  # the factory takes img_size (position embeddings fix the input size)
    multiple: int = 1  # every input side must be a multiple of this


def _simple_cnn(in_channels, num_classes, spatial_dims, **options):
    from medsight.models.simple_cnn import SimpleCNN

    return SimpleCNN(in_channels, num_classes, spatial_dims, **options)


def _resnet(layers: list[int], block: str, small: bool):
    def factory(in_channels, num_classes, spatial_dims, **options):
        from monai.networks.nets import ResNet

        width = options.pop("width", 64)
        stem = {"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True} if small else {}
        return ResNet(block=block, layers=options.pop("layers", layers),
                      block_inplanes=[width, 2 * width, 4 * width, 8 * width],
                      spatial_dims=spatial_dims, n_input_channels=in_channels,
                      num_classes=num_classes, **{**stem, **options})

    return factory


def _densenet121(in_channels, num_classes, spatial_dims, **options):
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels,
                       out_channels=num_classes, **options)


def _unet(in_channels, num_classes, spatial_dims, **options):
    from monai.networks.nets import UNet

    defaults = {"channels": (16, 32, 64, 128, 256), "strides": (2, 2, 2, 2), "num_res_units": 2,
                "norm": "instance"}
    return UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes,
                **{**defaults, **options})


def _dynunet(in_channels, num_classes, spatial_dims, **options):
    """nnU-Net's network (MONAI DynUNet); kernels and strides come from the plan."""
    from monai.networks.nets import DynUNet

    strides = options.pop("strides", [[1] * spatial_dims] + [[2] * spatial_dims] * 4)
    kernels = options.pop("kernel_size", [[3] * spatial_dims] * len(strides))
    supervision = options.pop("deep_supervision", False)
    recompute_top = options.pop("recompute_top", False)  # see models/recompute.py
    net = DynUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes,
                  kernel_size=kernels, strides=strides, upsample_kernel_size=strides[1:],
                  norm_name=options.pop("norm_name", "instance"), deep_supervision=supervision,
                  deep_supr_num=options.pop("deep_supr_num", max(1, min(2, len(strides) - 2))),
                  res_block=options.pop("res_block", True), **options)
    if recompute_top:  # the full-resolution encoder and decoder blocks
        recompute_in_backward(net.input_block)
        recompute_in_backward(net.upsamples[-1])
    return net


MODELS: dict[str, ModelSpec] = {
    "simple-cnn": ModelSpec(_simple_cnn, "features", min_size=8,
                            description="conv-pool-conv-pool-dense, the classic net"),
    # layer3, not layer4: at 28-64 px input layer4 is only 4-8 px wide, too coarse to show a lesion.
    "resnet18-small": ModelSpec(_resnet([2, 2, 2, 2], "basic", small=True), "layer3", min_size=8,
                                description="ResNet-18 with a 3x3 stem and no early max-pool (MedMNIST 28x28)"),
    "resnet18": ModelSpec(_resnet([2, 2, 2, 2], "basic", small=False), "layer4", min_size=32,
                          description="ResNet-18 (MONAI), for inputs of 64 px and up"),
    "resnet50": ModelSpec(_resnet([3, 4, 6, 3], "bottleneck", small=False), "layer4", min_size=32,
                          description="ResNet-50 (MONAI), for inputs of 64 px and up"),
    "densenet121": ModelSpec(_densenet121, "class_layers.relu", min_size=32,
                             description="DenseNet-121 (MONAI); fails below 32 px"),
    "unet": ModelSpec(_unet, "", min_size=16, task="segmentation",
                      description="U-Net with residual units (MONAI UNet), 2D or 3D"),
    "dynunet": ModelSpec(_dynunet, "", min_size=8, task="segmentation",
                         description="nnU-Net's DynUNet (MONAI): residual blocks, deep supervision, planned depth"),
    # Larger backbones (models/backbones.py): MONAI's defaults, so published weights fit
    # _blocks.4 is the last stride-16 stage: at 64 px the stride-32 map is 2x2, too coarse to show a lesion
    "efficientnet-b0": ModelSpec(backbones.efficientnet("efficientnet-b0"), "_blocks.4", min_size=32,
                                 description="EfficientNet-B0 (MONAI EfficientNetBN), 2D or 3D"),
    "vit": ModelSpec(backbones.vit, "token_map", min_size=8, sized=True,
                     description="Vision Transformer (MONAI ViT, ViT-B/16 by default); Grad-CAM on the "
                                 "patch tokens entering the last block"),
    "segresnet": ModelSpec(backbones.segresnet, "", min_size=8, multiple=8, task="segmentation",
                           description="SegResNet (MONAI): residual encoder, light decoder"),
    # instance norm at its 1/32 bottleneck needs more than one pixel: 64 px at least
    "swinunetr": ModelSpec(backbones.swinunetr, "", min_size=64, multiple=32, task="segmentation",
                           description="SwinUNETR (MONAI): Swin Transformer encoder, U-Net decoder"),
    "unetr": ModelSpec(backbones.unetr, "", min_size=16, multiple=16, sized=True, task="segmentation",
                       description="UNETR (MONAI): ViT encoder, convolutional decoder"),
    "flexunet": ModelSpec(backbones.flexunet, "", min_size=32, multiple=32, task="segmentation",
                          description="U-Net decoder on an EfficientNet/ResNet encoder (MONAI FlexibleUNet; "
                                      "model.options.backbone)"),
}
TIMM_PREFIX = "timm:"


def model_spec(name: str) -> ModelSpec:
    if name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX):
        timm_name = name[len(TIMM_PREFIX):]
        return ModelSpec(lambda *args, **options: backbones.timm_model(timm_name, *args, **options), "",
                         dims=(2,), min_size=32, description=f"timm's {timm_name}")
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(MODELS)}, or timm:<name>") from None


def cam_layer(model: nn.Module, name: str) -> str:
    """The layer Grad-CAM explains: the model's own ``cam_layer`` (a fused model names its
    backbone's layer), else the registry's for ``name``."""
    return getattr(model, "cam_layer", "") or model_spec(name).cam_layer


def build_model(name: str, in_channels: int, num_classes: int, spatial_dims: int = 2,
                input_size: tuple[int, ...] | None = None, **options: Any) -> nn.Module:
    """Instantiate a registered net, checking dims and input size first for a clear error."""
    spec = model_spec(name)
    if spatial_dims not in spec.dims:
        raise ConfigError(f"model {name!r} supports {' or '.join(f'{d}D' for d in spec.dims)} input, "
                          f"not {spatial_dims}D")
    shown = "x".join(map(str, input_size or ()))
    if input_size is not None and min(input_size) < spec.min_size:
        raise ConfigError(f"model {name!r} needs inputs of at least {spec.min_size} px, got "
                          f"{shown}; set transforms.spatial_size")
    if input_size is not None and any(s % spec.multiple for s in input_size):
        raise ConfigError(f"model {name!r} needs input sides that are multiples of {spec.multiple}, got "
                          f"{shown}; set transforms.spatial_size (segmentation: segmentation.patch_size)")
    options = dict(options)
    if spec.sized and input_size is not None:
        options.setdefault("img_size", tuple(int(s) for s in input_size))
    try:
        return spec.factory(in_channels, num_classes, spatial_dims, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {name!r}: bad model.options ({exc})") from None
