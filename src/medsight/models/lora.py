"""Low-rank adapters (peft's LoRA) on a transformer's attention: ``train.finetune: lora``.

Only the adapters (``rank`` x width matrices beside each ``qkv`` and ``out_proj``) and the head
train; every pretrained weight stays as it was. For inference the adapters are merged into
the weights (``merge_lora``), so predict, export and the service run a plain net.
"""

from __future__ import annotations

from torch import nn

from medsight.errors import ConfigError
from medsight.models.stages import stages
from medsight.utils.extras import require

TARGETS = ("qkv", "out_proj")  # MONAI's SABlock (ViT, UNETR); timm's ViT attention is attn.qkv / attn.proj


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0) -> nn.Module:
    """``model`` wrapped by peft with LoRA on its attention; the head trains in full."""
    require("peft", extra="large", feature="train.finetune: lora")
    from peft import LoraConfig, get_peft_model

    targets = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)
               and (name.rsplit(".", 1)[-1] in TARGETS or name.endswith("attn.proj"))]
    if not targets:
        raise ConfigError(f"train.finetune: lora adapts a transformer's attention; {type(model).__name__} has "
                          "none (choose model vit, or finetune full, partial or linear)")
    head = stages(model)[-1][0]
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, modules_to_save=[head])
    return get_peft_model(model, config)


def merge_lora(model: nn.Module) -> nn.Module:
    """The plain net with the adapters added into its weights (same outputs, no peft at run time)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
