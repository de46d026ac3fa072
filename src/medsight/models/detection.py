"""Box detectors for 2D images: a RetinaNet built from MONAI parts that import without torchvision.

MONAI's ``RetinaNetDetector`` and its ResNet-FPN wrapper need torchvision (its IoU matcher,
balanced sampler and ``IntermediateLayerGetter``), which does not install beside the CPU
torch used here. The network itself (``RetinaNet`` with its classification and regression
heads), ``FeaturePyramidNetwork``, ``AnchorGenerator``, ``ATSSMatcher``, ``BoxCoder`` and
``BoxSelector`` are plain torch, so medsight builds on them and writes only the glue:

- :class:`ResNetFPN`, the feature extractor (a MONAI ResNet trunk and MONAI's FPN);
- :class:`AnchorBoxes`, what the head outputs mean: anchors per FPN level, flattening of the
  per-level maps in the anchor order, ATSS matching, and box encoding/decoding.

Boxes are pixel ``[xmin, ymin, xmax, ymax]`` (Pascal VOC order: x is the column) for images
``(C, rows, cols)``. MONAI's ``AnchorGenerator(indexing="xy")`` produces anchors in that order,
so no axis swapping is needed between the data and the network.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.apps.detection.utils.anchor_utils import AnchorGenerator
from monai.apps.detection.utils.ATSS_matcher import ATSSMatcher
from monai.apps.detection.utils.box_coder import BoxCoder
from monai.networks.blocks import FeaturePyramidNetwork
from monai.networks.nets import ResNet
from torch import Tensor, nn

from medsight.errors import ConfigError

CLS_KEY, BOX_KEY = "classification", "box_regression"  # MONAI RetinaNet's output keys
STAGE_STRIDES = {1: 4, 2: 8, 3: 16, 4: 32}  # ResNet stage -> stride, with the 7x7/2 stem and max-pool


class ResNetFPN(nn.Module):
    """A MONAI ResNet trunk whose stages feed MONAI's FeaturePyramidNetwork.

    The torchvision-free equivalent of MONAI's ``BackboneWithFPN``: returns an ordered dict of
    ``fpn_channels``-wide maps, finest first, one per stage in ``stages``.
    """

    def __init__(self, in_channels: int, layers: Sequence[int] = (2, 2, 2, 2), width: int = 32,
                 fpn_channels: int = 64, stages: Sequence[int] = (2, 3, 4)):
        super().__init__()
        check_stages(stages)
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.body = ResNet(block="basic", layers=list(layers), block_inplanes=widths, spatial_dims=2,
                           n_input_channels=in_channels, conv1_t_size=7, conv1_t_stride=2,
                           feed_forward=False)  # MONAI's default stem stride is 1; 2 gives the usual /4
        self.stages = tuple(stages)
        self.fpn = FeaturePyramidNetwork(spatial_dims=2, in_channels_list=[widths[s - 1] for s in self.stages],
                                         out_channels=fpn_channels)
        self.out_channels = fpn_channels  # what MONAI's RetinaNet reads
        self.strides = tuple(STAGE_STRIDES[s] for s in self.stages)

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        b = self.body
        x = b.maxpool(b.act(b.bn1(b.conv1(x))))
        features: OrderedDict[str, Tensor] = OrderedDict()
        for stage, layer in enumerate((b.layer1, b.layer2, b.layer3, b.layer4), start=1):
            if stage > self.stages[-1]:
                break
            x = layer(x)
            if stage in self.stages:
                features[f"p{stage}"] = x
        return self.fpn(features)


def check_stages(stages: Sequence[int]) -> None:
    if not stages or any(s not in STAGE_STRIDES for s in stages) or list(stages) != sorted(set(stages)):
        raise ConfigError(f"detection.fpn_stages {list(stages)}: choose increasing values from 1..4")


@dataclass(frozen=True)
class DetectorSpec:
    layers: tuple[int, ...]
    description: str


DETECTORS: dict[str, DetectorSpec] = {
    "retinanet-resnet18": DetectorSpec((2, 2, 2, 2), "RetinaNet (MONAI heads) on a ResNet-18 trunk with an FPN"),
    "retinanet-resnet10": DetectorSpec((1, 1, 1, 1), "RetinaNet (MONAI heads) on a ResNet-10 trunk with an FPN"),
}


def build_detector(name: str, in_channels: int, num_classes: int, anchors: "AnchorBoxes",
                   width: int = 32, fpn_channels: int = 64, head_convs: int = 4) -> RetinaNet:
    """A MONAI ``RetinaNet`` whose forward gives ``{"classification": [maps], "box_regression": [maps]}``.

    ``head_convs``: conv-GroupNorm-ReLU blocks in each head before its output conv (RetinaNet
    uses 4; at the finest level they cost as much as the trunk, so fewer train faster on a CPU).
    """
    try:
        spec = DETECTORS[name]
    except KeyError:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}") from None
    if fpn_channels % 8:
        raise ConfigError(f"detector fpn_channels={fpn_channels}: must be a multiple of 8 (GroupNorm in the heads)")
    if not 0 <= head_convs <= 4:
        raise ConfigError(f"detector head_convs={head_convs}: choose 0 to 4")
    backbone = ResNetFPN(in_channels, spec.layers, width, fpn_channels, anchors.stages)
    net = RetinaNet(spatial_dims=2, num_classes=num_classes, num_anchors=anchors.per_location,
                    feature_extractor=backbone, size_divisible=anchors.size_divisible)
    for head in (net.classification_head, net.regression_head):
        head.conv = head.conv[:3 * head_convs]  # MONAI builds 4 (conv, GroupNorm, ReLU) blocks
    return net


class AnchorBoxes:
    """Anchors of a RetinaNet and the meaning of its outputs: flatten, match, encode, decode.

    ``sizes[i]`` are the anchor sides (pixels of the network input) at FPN level ``i``, whose
    stride is ``STAGE_STRIDES[stages[i]]``; every size is used with every aspect ratio
    (height / width).
    """

    def __init__(self, sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[float] = (1.0,),
                 stages: Sequence[int] = (2, 3, 4), atss_candidates: int = 4):
        check_stages(stages)
        if len(sizes) != len(stages):
            raise ConfigError(f"{len(sizes)} anchor size groups for {len(stages)} FPN levels; give one per level")
        if any(not group or min(group) <= 0 for group in sizes) or not aspect_ratios or min(aspect_ratios) <= 0:
            raise ConfigError("detection.anchor_sizes and aspect_ratios must be positive, at least one each")
        if len({len(group) for group in sizes}) != 1:
            raise ConfigError("detection.anchor_sizes: give every level the same number of sizes (one head serves all)")
        self.stages = tuple(stages)
        self.sizes = [list(map(float, s)) for s in sizes]
        self.aspect_ratios = list(map(float, aspect_ratios))
        self.atss_candidates = atss_candidates
        self.strides = tuple(STAGE_STRIDES[s] for s in self.stages)
        self.size_divisible = max(self.strides)
        self.generator = AnchorGenerator(sizes=[tuple(s) for s in sizes],
                                         aspect_ratios=[tuple(aspect_ratios)] * len(sizes), indexing="xy")
        self.per_location = self.generator.num_anchors_per_location()[0]
        self.coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        # center_in_gt=False: with it, small objects can lose every candidate (MONAI's own advice).
        self.matcher = ATSSMatcher(num_candidates=atss_candidates, center_in_gt=False)
        self._cache: dict[tuple, tuple[Tensor, list[int]]] = {}

    def describe(self) -> dict:
        """Everything needed to rebuild these anchors (saved in the run's plan)."""
        return {"sizes": self.sizes, "aspect_ratios": self.aspect_ratios, "fpn_stages": list(self.stages),
                "fpn_strides": list(self.strides), "atss_candidates": self.atss_candidates}

    @classmethod
    def from_description(cls, d: dict) -> "AnchorBoxes":
        return cls(d["sizes"], d["aspect_ratios"], d["fpn_stages"], d["atss_candidates"])

    def anchors(self, head_outputs: dict[str, list[Tensor]]) -> tuple[Tensor, list[int]]:
        """Anchors ``(N, 4)`` in the order of :meth:`flatten`, and the locations per level."""
        maps = head_outputs[CLS_KEY]
        grids = tuple(tuple(m.shape[-2:]) for m in maps)
        key = (grids, maps[0].device)
        if key not in self._cache:
            # The input size is the finest grid times its stride (inputs are padded to size_divisible).
            size = tuple(g * self.strides[0] for g in grids[0])
            shape_only = torch.empty((1, 0, *size), device=maps[0].device)
            anchors = self.generator(shape_only, [m.float() for m in maps])[0]
            self._cache[key] = (anchors, [g[0] * g[1] for g in grids])
        return self._cache[key]

    def flatten(self, maps: list[Tensor]) -> Tensor:
        """Per-level maps ``(B, A*C, H, W)`` to ``(B, sum(H*W*A), C)``, anchor order (as MONAI's detector)."""
        out = []
        for m in maps:
            b, _, h, w = m.shape
            out.append(m.view(b, self.per_location, -1, h, w).permute(0, 3, 4, 1, 2).reshape(b, h * w * self.per_location, -1))
        return torch.cat(out, dim=1)

    def match(self, boxes: Tensor, anchors: Tensor, locations_per_level: list[int]) -> Tensor:
        """For every anchor the index of its ground-truth box, or a negative value (background)."""
        if boxes.numel() == 0:
            return torch.full((anchors.shape[0],), -1, dtype=torch.long, device=anchors.device)
        _, matched = self.matcher(boxes.to(anchors), anchors, locations_per_level, self.per_location)
        return matched

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        return self.coder.encode_single(boxes.float(), anchors.float())

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        return self.coder.decode_single(deltas.float(), anchors.float())


def default_anchor_sizes(stages: Sequence[int] = (2, 3, 4)) -> list[list[float]]:
    """Three sizes per level, ``3 x stride`` times ``2**(0, 1/3, 2/3)`` (RetinaNet's octave scales)."""
    return [[round(3 * STAGE_STRIDES[s] * 2 ** (k / 3), 1) for k in range(3)] for s in stages]
