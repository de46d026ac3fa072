"""Start a net from weights in a file: ``load_pretrained(model, "resnet18.safetensors")``.

Sources: a safetensors file; a PyTorch state dict (``.pt``/``.pth``/``.bin``, also wrapped as
``{"state_dict": ...}`` or ``{"model": ...}``, as timm, Lightning and medsight save them); a
MONAI bundle folder (``models/model.pt``); a Hugging Face folder (``model.safetensors``,
``pytorch_model.bin`` or a sharded index); a medsight run folder (its best checkpoint, else
its last: a pretraining run has only that).

Rules:
- Tensors are matched by name and shape. A wrapper's prefix on either side (``module.``,
  ``model.``, ``encoder.``, ``backbone.`` ...) is dropped or added where that matches more:
  an ImageNet EfficientNet's ``_conv_stem.weight`` fills FlexibleUNet's ``encoder._conv_stem.weight``.
  torchvision and timm ResNets already use MONAI ResNet's names (conv1, bn1, layer1.0.conv1, fc).
- What does not fit stays as initialised: a classifier head with another class count is fresh.
- The first convolution is adapted to the input channels the way timm's ``adapt_input_conv``
  does: an RGB filter summed over its channels for grey input; repeated and scaled for more.
- A file that fits under half of the model (and under half of the file fits the model) is
  refused in one line naming the file and the first mismatch (expected vs found shape).

Only tensors are read (``torch.load(weights_only=True)``): a file cannot run code.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from medsight.errors import InputFileError
from medsight.models.stages import head_parameters
from medsight.utils.hashing import file_sha256

log = logging.getLogger(__name__)
# Where a folder keeps its weights, first found wins: a MONAI bundle, a medsight run
# (runtime/run_folder.py's names; tests check they agree), a Hugging Face save.
FOLDER_FILES = ("models/model.pt", "checkpoints/best.pt", "checkpoints/last.pt", "model.safetensors",
                "pytorch_model.bin", "model.safetensors.index.json")
WRAPPERS = ("state_dict", "model", "model_state_dict", "module", "net", "network")
PREFIX_WORDS = {"module", "model", "encoder", "backbone", "net", "network", "base_model", "student", "_orig_mod"}
MIN_FIT = 0.5
SHOWN = 5  # skipped keys kept in the report


@dataclass
class LoadReport:
    """What ``load_pretrained`` did; ``as_plan()`` is saved in plan.json under ``pretrained``."""

    source: str
    file: str
    sha256: str
    loaded: list[str] = field(default_factory=list)  # model keys filled from the file
    skipped: list[str] = field(default_factory=list)  # file keys not used
    fresh: list[str] = field(default_factory=list)  # model keys left as initialised
    adapted: list[str] = field(default_factory=list)  # input convolution fitted to the channels
    head_fresh: bool = False  # the classifier head kept its initial weights (other class count)
    mapping: str = ""  # "file prefix -> model prefix" when one was swapped
    source_task: str | None = None  # a medsight run's task (e.g. "pretrain")
    fraction: float = 0.0  # share of the model's weights (elements) loaded

    def summary(self) -> str:
        head = "; head fresh (other class count)" if self.head_fresh else ""
        adapt = f"; input conv adapted ({', '.join(self.adapted)})" if self.adapted else ""
        return (f"pretrained {self.source}: {len(self.loaded)} tensors loaded ({self.fraction:.0%} of the "
                f"weights), {len(self.fresh)} fresh, {len(self.skipped)} skipped{head}{adapt}")

    def as_plan(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("loaded", "skipped", "fresh"):
            out[f"n_{key}"] = len(out[key])
        out["skipped"], out["fresh"] = self.skipped[:SHOWN], self.fresh[:SHOWN]
        del out["loaded"]
        return out


def load_pretrained(model: nn.Module, source: str | Path, min_fit: float = MIN_FIT) -> LoadReport:
    """Copy the tensors of ``source`` that fit into ``model`` (in place); see the module doc."""
    path = weights_file(Path(source))
    state = read_state_dict(path)
    report = LoadReport(str(source), str(path), file_sha256(path), source_task=source_task(Path(source)))
    match_into(model, state, report, min_fit)
    log.info(report.summary())
    return report


def weights_file(source: Path) -> Path:
    """The weights file of ``source``: itself, or the first of ``FOLDER_FILES`` in a folder."""
    if source.is_file():
        return source
    if source.is_dir():
        for name in FOLDER_FILES:
            if (source / name).is_file():
                return source / name
        raise InputFileError(source, f"no weights in this folder (looked for {', '.join(FOLDER_FILES)})")
    raise InputFileError(source, "model.pretrained: no such file or folder")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped from ``{"state_dict": ...}``-style dicts."""
    if path.name.endswith(".index.json"):  # a sharded Hugging Face save
        try:
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputFileError(path, f"not a weight index ({type(exc).__name__})") from None
        return {k: v for shard in shards for k, v in read_state_dict(path.parent / shard).items()}
    try:
        if _is_safetensors(path):
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        with torch.serialization.safe_globals(_numpy_scalars()):  # e.g. a metric in a checkpoint
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputFileError(path, "weights file not found") from None
    except Exception as exc:  # a torn file, a pickle of code, another format
        raise InputFileError(path, f"not a readable state dict or safetensors file ({type(exc).__name__}: "
                                   f"{str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''})") from None
    state = _unwrap(obj)
    if not state:
        raise InputFileError(path, "holds no tensors (expected a state dict, or one under state_dict/model)")
    return state


def match_into(model: nn.Module, state: Mapping[str, torch.Tensor], report: LoadReport,
               min_fit: float = MIN_FIT) -> None:
    """Load the tensors of ``state`` that fit ``model``; fill ``report``; refuse a file that does not fit."""
    target = model.state_dict()
    stem = _input_conv(model)
    src_prefix, dst_prefix = _best_mapping(state, target, stem)
    report.mapping = f"{src_prefix or '(none)'} -> {dst_prefix or '(none)'}" if src_prefix != dst_prefix else ""
    new, mismatch = {}, []
    for key, tensor in state.items():
        name = dst_prefix + key[len(src_prefix):] if key.startswith(src_prefix) else None
        want = target.get(name) if name else None
        if want is None:
            report.skipped.append(key)
        elif tuple(want.shape) == tuple(tensor.shape):
            new[name] = tensor
        elif name == stem and _adaptable(tensor, want):
            new[name] = adapt_input_conv(tensor, int(want.shape[1]))
            report.adapted.append(f"{name}: {tensor.shape[1]} -> {want.shape[1]} channels")
        else:
            report.skipped.append(key)
            mismatch.append((name, tuple(want.shape), tuple(tensor.shape)))
    total = sum(t.numel() for t in target.values()) or 1
    fit_model = sum(new[k].numel() for k in new) / total
    fit_file = sum(state[k].numel() for k in state if k not in report.skipped) / max(1, sum(t.numel() for t in state.values()))
    if not new or max(fit_model, fit_file) < min_fit:
        raise InputFileError(report.file, _misfit(model, state, target, new, mismatch, fit_model))
    model.load_state_dict(new, strict=False)
    report.loaded = sorted(new)
    report.fresh = [k for k in target if k not in new and not k.endswith("num_batches_tracked")]
    head = set(head_parameters(model))
    report.head_fresh = bool(head) and any(k in head for k in report.fresh) and any(
        n in head for n, *_ in mismatch)
    report.fraction = round(fit_model, 4)


def adapt_input_conv(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """timm's ``adapt_input_conv``: filters ``(O, I, *k)`` for ``channels`` inputs. One channel:
    the sum over I (a grey image is R = G = B); more: I's filters repeated and scaled by I/channels,
    so a constant image gives the same response."""
    weight = weight.float()
    if channels == 1:
        return weight.sum(1, keepdim=True)
    have = weight.shape[1]
    repeats = math.ceil(channels / have)
    return weight.repeat(1, repeats, *([1] * (weight.ndim - 2)))[:, :channels] * (have / channels)


def _numpy_scalars() -> list:
    """What a pickled numpy scalar is rebuilt from: data, not code."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    kinds = {type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)}
    return [core.multiarray.scalar, np.dtype, *kinds]


def _is_safetensors(path: Path) -> bool:
    """safetensors by content: an 8-byte header length, then a JSON header."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _unwrap(obj: Any, depth: int = 0) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if not isinstance(obj, Mapping) or depth > 3:
        return {}
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and len(tensors) >= len(obj) / 2:
        return tensors
    for key in WRAPPERS:
        inner = _unwrap(obj.get(key), depth + 1)
        if inner:
            return inner
    return {}


def _prefixes(keys: Iterable[str]) -> set[str]:
    """``""`` and the wrapper prefixes (``module.``, ``model.encoder.`` ...) the keys start with."""
    found = {""}
    for key in keys:
        prefix = ""
        for part in key.split(".")[:-1][:3]:
            if part not in PREFIX_WORDS:
                break
            prefix += part + "."
            found.add(prefix)
    return found


def _best_mapping(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                  stem: str | None) -> tuple[str, str]:
    """The (file prefix, model prefix) swap that matches the most tensors by name and shape."""
    def score(src: str, dst: str) -> tuple[int, int]:
        hits = 0
        for key, tensor in state.items():
            if key.startswith(src):
                want = target.get(dst + key[len(src):])
                if want is not None and (tuple(want.shape) == tuple(tensor.shape) or dst + key[len(src):] == stem):
                    hits += 1
        return hits, -len(src) - len(dst)

    pairs = [(s, d) for s in sorted(_prefixes(state)) for d in sorted(_prefixes(target))]
    return max(pairs, key=lambda pair: score(*pair))


def _input_conv(model: nn.Module) -> str | None:
    """The weight of the first convolution (the stem or patch embedding)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return f"{name}.weight"
    return None


def _adaptable(tensor: torch.Tensor, want: torch.Tensor) -> bool:
    return (tensor.ndim == want.ndim >= 3 and tensor.shape[0] == want.shape[0]
            and tensor.shape[2:] == want.shape[2:] and tensor.shape[1] != want.shape[1])


def _misfit(model: nn.Module, state, target, new, mismatch, fit: float) -> str:
    what = type(model).__name__
    if mismatch:
        key, want, found = mismatch[0]
        return (f"does not fit this {what} ({len(new)} of {len(target)} tensors, {fit:.0%} of the weights); "
                f"first mismatch {key}: expected {list(want)}, found {list(found)}")
    return (f"does not fit this {what}: no tensor names in common (file has e.g. {next(iter(state))!r}, "
            f"the model {next(iter(target))!r})")


def source_plan(source: Path) -> dict:
    """A medsight run folder's plan, or {} for a weights file (or an unreadable plan)."""
    plan = source / "plan.json"
    if not (source.is_dir() and plan.is_file()):
        return {}
    try:
        found = json.loads(plan.read_text())
    except (ValueError, OSError):
        return {}
    return found if isinstance(found, dict) else {}


def source_task(source: Path) -> str | None:
    """The task in a medsight run folder's plan (``pretrain`` for an encoder), else None."""
    task = source_plan(source).get("task")
    return str(task) if task else None
