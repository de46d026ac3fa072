"""The per-epoch metric log (``metrics.jsonl``) and its training-curve plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

from medsight.runtime.run_folder import CURVES_FILE, HISTORY_FILE
from medsight.utils.atomic import write_bytes, write_text


def write_history(run_dir: Path, history: list[dict]) -> None:
    """Rewrite the whole log atomically, so it always matches the last checkpoint."""
    lines = [json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                         for k, v in row.items()}) for row in history]
    write_text(Path(run_dir) / HISTORY_FILE, "\n".join(lines) + "\n")


def read_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_curves(run_dir: Path, history: list[dict], monitor: str = "val_loss") -> Path | None:
    if not history:
        return None
    from medsight.training.curves import plot_training_curves  # matplotlib: only when a plot is drawn

    path = Path(run_dir) / CURVES_FILE
    write_bytes(path, plot_training_curves(history, monitor))
    return path


def collapse_warning(history: list[dict], monitor: str | None) -> str | None:
    """One line when a segmentation run's val Dice was 0 in every epoch it was measured: the net
    predicted no foreground on any val case (a collapse to background, seen on 54 BUSI images
    from scratch), so ``best.pt`` segments nothing. None otherwise."""
    if not monitor or not monitor.startswith("val_dice"):
        return None
    values = [row.get(monitor) for row in history]
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values or any(v > 0 for v in values):
        return None
    return (f"{monitor} was 0 in all {len(values)} epochs: the model never predicted foreground on a val case "
            f"(collapsed to background) and best.pt segments nothing; train longer, on more cases, from a "
            f"pretrained encoder (model.pretrained) or with another train.seed")
