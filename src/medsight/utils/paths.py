"""File names derived from input paths."""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def safe_stem(path: Path) -> str:
    """The file name without its image extension, reduced to safe characters (max 80)."""
    name = Path(path).name
    for ext in IMAGE_EXTENSIONS:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80] or "image"
