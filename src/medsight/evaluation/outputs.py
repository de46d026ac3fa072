"""The files an evaluation writes into the run folder: ``metrics.json`` and the per-case table
``cases_<split>.csv``, from which the report is rebuilt."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from medsight.runtime.run_folder import METRICS_FILE
from medsight.utils.atomic import write_text

__all__ = ["METRICS_FILE", "read_cases", "write_cases"]


def write_cases(path: Path, ids: list[str], sources: list[str], y: np.ndarray, probs: np.ndarray,
                names: list[str], extra: dict[str, list] | None = None) -> None:
    """One row per case: id, source, label, ``p[class]`` columns, then any ``extra`` columns."""
    extra = extra or {}
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "source", "label", *[f"p[{n}]" for n in names], *extra])
    for i, row in enumerate(zip(ids, sources, y.tolist(), probs.tolist())):
        writer.writerow([row[0], row[1], row[2], *[f"{p:.6f}" for p in row[3]], *[c[i] for c in extra.values()]])
    write_text(path, buf.getvalue())


def read_cases(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    y = np.array([int(r["label"]) for r in rows])
    p_cols = [k for k in rows[0] if k.startswith("p[")] if rows else []
    probs = np.array([[float(r[k]) for k in p_cols] for r in rows])
    return y, probs
