"""The model registry: a factory per name, with what Grad-CAM and input checks need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from medsight.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    factory: Callable[..., nn.Module]  # (in_channels, num_classes, spatial_dims, **options)
    cam_layer: str  # module name whose activations Grad-CAM explains
    dims: tuple[int, ...] = (2, 3)
    min_size: int = 8  # smallest spatial size the net accepts
    description: str = ""
    task: str = "classification"  # or "segmentation": outputs one channel per class per voxel


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
    return DynUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes,
                   kernel_size=kernels, strides=strides, upsample_kernel_size=strides[1:],
                   norm_name=options.pop("norm_name", "instance"), deep_supervision=supervision,
                   deep_supr_num=options.pop("deep_supr_num", max(1, min(2, len(strides) - 2))),
                   res_block=options.pop("res_block", True), **options)


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
}


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def cam_layer(model: nn.Module, name: str) -> str:
    """The layer Grad-CAM explains: the model's own ``cam_layer`` (a fused model names its
    backbone's layer), else the registry's for ``name``."""
    return getattr(model, "cam_layer", "") or model_spec(name).cam_layer


def build_model(name: str, in_channels: int, num_classes: int, spatial_dims: int = 2,
                input_size: tuple[int, ...] | None = None, **options: Any) -> nn.Module:
    """Instantiate a registered net, checking dims and input size first for a clear error."""
    spec = model_spec(name)
    if spatial_dims not in spec.dims:
        raise ConfigError(f"model {name!r} supports {spec.dims}D input, not {spatial_dims}D")
    if input_size is not None and min(input_size) < spec.min_size:
        raise ConfigError(f"model {name!r} needs inputs of at least {spec.min_size} px, got "
                          f"{'x'.join(map(str, input_size))}; set transforms.spatial_size")
    try:
        return spec.factory(in_channels, num_classes, spatial_dims, **dict(options))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {name!r}: bad model.options ({exc})") from None
