"""``medsight embed``: one feature vector per image, from a classification or a pretrain run.

The vector is the model's penultimate feature (one of the layers the input guard reads, ``guard.py``): the
pooled encoder output, L2-normalised so that the inner product of two vectors is their cosine
similarity. ``embeddings.npy`` (N x D float32) and ``embeddings.csv`` (row, case, input) are
written side by side; the case key is the file name without its extension.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from medsight.errors import MedsightError
from medsight.inference.guard import features_and_logits
from medsight.inference.load import LoadedRun, load_run
from medsight.inference.predict import expand_inputs, model_input
from medsight.io import read_image
from medsight.runtime.ensemble_folder import is_ensemble, run_task
from medsight.tasks import require_command
from medsight.utils.atomic import write_bytes, write_text
from medsight.utils.paths import safe_stem

EMBEDDINGS_FILE, EMBEDDINGS_CSV = "embeddings.npy", "embeddings.csv"
BATCH = 32


def load_encoder(run_dir: str | Path) -> LoadedRun:
    """A classification or pretrain run loaded for its features (PyTorch: the hook needs the model)."""
    run_dir = Path(run_dir)
    require_command(run_task(run_dir), "embed", run_dir)
    if is_ensemble(run_dir):
        raise MedsightError(f"{run_dir}: an ensemble has no single feature space; embed with one of its runs")
    run = load_run(run_dir, prefer_onnx=False, encoder=True)
    if run.plan.get("method") == "restore":
        raise MedsightError(f"{run_dir}: a restore pretraining run is a U-Net with no feature vector; fine-tune "
                            "it (--set model.pretrained=RUN), or pretrain with pretrain.method=simclr to embed")
    return run


def embed(run: LoadedRun, images: torch.Tensor) -> np.ndarray:
    """L2-normalised penultimate features ``(N, D)`` float32 of model-space images."""
    feats = features_and_logits(run, images)[0].astype(np.float32)
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def embed_batches(run: LoadedRun, images: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
    """Embeddings of model-space images given one at a time, computed ``BATCH`` at a time."""
    chunk: list[torch.Tensor] = []
    for x in images:
        chunk.append(x)
        if len(chunk) == BATCH:
            yield embed(run, torch.stack(chunk))
            chunk = []
    if chunk:
        yield embed(run, torch.stack(chunk))


def case_key(path: str | Path) -> str:
    """A file's case key: its name without the image extension (never a patient name or ID)."""
    return safe_stem(Path(path))


def embed_paths(run_dir: str | Path, inputs: Sequence[Path], out_dir: Path) -> tuple[np.ndarray, list[Path]]:
    """Embed every input image (folders expanded as ``predict`` does); write both files; return them."""
    run = load_encoder(run_dir)
    paths = expand_inputs(list(inputs), run.spatial_dims)
    vectors = np.concatenate(list(embed_batches(run, (model_input(run, read_image(p)) for p in paths))))
    out_dir = Path(out_dir)
    buf = io.BytesIO()
    np.save(buf, vectors)
    write_bytes(out_dir / EMBEDDINGS_FILE, buf.getvalue())
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["row", "case", "input"])
    writer.writerows([i, case_key(p), str(p)] for i, p in enumerate(paths))
    write_text(out_dir / EMBEDDINGS_CSV, text.getvalue())
    return vectors, paths
