"""The class-score layer of a registered classifier: its last ``nn.Linear``."""

from __future__ import annotations

from torch import nn

from medsight.errors import ConfigError


def last_linear(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """The model's last ``nn.Linear`` and its qualified name, or None."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def strip_last_linear(model: nn.Module) -> int:
    """Replace the model's last ``nn.Linear`` with the identity, so it returns its pooled
    features; their number."""
    found = last_linear(model)
    if found is None:
        raise ConfigError(f"{type(model).__name__} has no linear class-score layer")
    name, layer = found
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, nn.Identity())
    return int(layer.in_features)
