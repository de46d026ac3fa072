"""Checkpoints: ``last.pt`` after every epoch (to resume), ``best.pt`` on improvement.

Both are written atomically, so a run killed mid-write keeps the previous file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medsight.errors import InputFileError
from medsight.runtime.run_folder import BEST, LAST, checkpoint_path
from medsight.utils.atomic import torch_save

__all__ = ["BEST", "LAST", "load_checkpoint", "save_checkpoint"]


def save_checkpoint(run_dir: Path, name: str, state: dict[str, Any]) -> Path:
    path = checkpoint_path(run_dir, name)
    torch_save(state, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn or foreign file
        raise InputFileError(path, f"not a readable checkpoint ({type(exc).__name__})") from None
