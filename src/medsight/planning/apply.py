"""Apply planned values (dotted keys) to the keys a config leaves empty."""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel

from medsight.config import RunConfig, TrainConfig, config_from_dict


def get_key(cfg: RunConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def open_keys(cfg: RunConfig, planned: Mapping[str, Any]) -> dict[str, Any]:
    """The planned values whose keys the config leaves empty (what the plan actually decides)."""
    out = {}
    for key, value in planned.items():
        try:
            current = get_key(cfg, key)
        except (AttributeError, KeyError):
            current = None
        if _empty(current):
            out[key] = value
    return out


def _empty(value: Any) -> bool:
    """None, or a section whose every key is None (e.g. an unset CT window)."""
    if isinstance(value, BaseModel):
        return all(_empty(v) for v in value.model_dump().values())
    return value is None


def apply_plan(cfg: RunConfig, planned: Mapping[str, Any]) -> RunConfig:
    """A copy of ``cfg`` with each planned key filled in where the config has None.

    ``model.options.<name>`` keys fill option names the config's ``model.options`` lacks.
    """
    raw = cfg.model_dump(mode="json")
    for key, value in planned.items():
        parts = key.split(".")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        current = node.get(parts[-1])
        if current is None or (isinstance(current, dict) and all(v is None for v in current.values())):
            node[parts[-1]] = value
    return config_from_dict(raw, source="plan.json")


# What an empty training key means when nothing planned it (e.g. a Trainer built by hand).
TRAIN_DEFAULTS = {"epochs": 20, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                  "schedule": "cosine", "warmup_epochs": 0, "class_weights": "none", "monitor": "val_loss",
                  "finetune": "full", "layer_decay": 1.0, "head_epochs": 0,
                  "head_fraction": 0.0}


def train_defaults(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with every still-empty key set to its plain default."""
    missing = {k: v for k, v in TRAIN_DEFAULTS.items() if getattr(cfg, k) is None}
    return cfg.model_copy(update=missing) if missing else cfg
