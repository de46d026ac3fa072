"""Apply planned values (dotted keys) to the keys a config leaves empty."""

from __future__ import annotations

from typing import Any, Mapping

from medsight.config import RunConfig, config_from_dict


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
        if current is None:
            out[key] = value
    return out


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
        if node.get(parts[-1]) is None:
            node[parts[-1]] = value
    return config_from_dict(raw, source="plan.json")
