"""A net's parameters as stages from input to output, the last one its head.

Fine-tuning needs depth: layer-wise learning-rate decay scales each stage's rate, ``partial``
trains the last N stages, ``linear`` the head alone, and the pretrained loader names the head
it left fresh. Stages come from the module tree, so every registered net has them without a
table per architecture: the top-level children in the order they were registered (which is
the forward order in MONAI's and timm's nets), with a ``Sequential``/``ModuleList`` of blocks
opened into one stage per block (ResNet stages stay whole: ``layer1`` ... ``layer4`` are
``Sequential`` of blocks too, but one child deep they are what "stage" means), and
parameters held directly by the net (ViT's class token) in the first stage.
"""

from __future__ import annotations

from torch import nn

_OPENED = (nn.ModuleList,)  # lists of blocks: ViT's blocks, SwinUNETR's layers
_SEQUENTIAL_BLOCKS = ("_blocks", "blocks", "features")  # EfficientNet, timm, DenseNet/SimpleCNN


def stages(model: nn.Module) -> list[tuple[str, list[str]]]:
    """``[(stage name, [parameter names])]`` from input to output; empty stages are left out.

    A wrapper holding a single child (LoRA, DDP) is looked through."""
    prefix = ""
    while True:
        children = [(n, m) for n, m in model.named_children() if _has_params(m)]
        if len(children) != 1 or any(True for _ in model.named_parameters(recurse=False)):
            break
        name, model = children[0]
        prefix += name + "."
    out: list[tuple[str, list[str]]] = []
    own = [prefix + n for n, _ in model.named_parameters(recurse=False)]
    if own:
        out.append((prefix.rstrip(".") or "stem", own))
    for name, child in model.named_children():
        if isinstance(child, _OPENED) or (isinstance(child, nn.Sequential) and name in _SEQUENTIAL_BLOCKS):
            for sub, block in child.named_children():
                names = [f"{prefix}{name}.{sub}.{n}" for n, _ in block.named_parameters()]
                if names:
                    out.append((f"{prefix}{name}.{sub}", names))
            continue
        names = [f"{prefix}{name}.{n}" for n, _ in child.named_parameters()]
        if names:
            out.append((prefix + name, names))
    if own and len(out) > 1:  # the net's own parameters (class token) belong with its stem
        stem, rest = out[0][1] + out[1][1], out[2:]
        out = [(out[1][0], stem), *rest]
    return out


def head_parameters(model: nn.Module) -> list[str]:
    """The parameter names of the last stage: the classifier (or segmentation head)."""
    found = stages(model)
    return found[-1][1] if found else []


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())
