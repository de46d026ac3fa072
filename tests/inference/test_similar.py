"""Embeddings and similar cases: embed, index a labelled archive, predict --similar, and what the
index keeps (case keys and labels, never patient IDs)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import medsight
from medsight.config import config_from_dict
from medsight.inference.embed import load_encoder
from medsight.inference.predict import model_input
from medsight.inference.similar import load_index, similar_cases
from medsight.io import read_image
from medsight.runtime.checkpoint import load_checkpoint
from medsight.training.run import train_run
from medsight.utils.atomic import torch_save
from tests.cli.helpers import invoke

N_PER_CLASS = 16


def _picture(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A bright disc somewhere, or stripes of some phase: two classes any encoder tells apart."""
    yy, xx = np.mgrid[:32, :32]
    if kind == "disc":
        cy, cx = rng.integers(10, 22, 2)
        img = 200.0 * ((yy - cy) ** 2 + (xx - cx) ** 2 < 36)
    else:
        img = 100.0 + 100.0 * np.sin(yy * 1.2 + rng.uniform(0, 6.3))
    return np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A manifest of 32 labelled PNGs (patient IDs and chosen case keys) and a classifier trained on it."""
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(0)
    rows = []
    for k in range(2 * N_PER_CLASS):
        label = ("disc", "stripes")[k % 2]
        Image.fromarray(_picture(label, rng)).save(root / f"img_{k:03d}.png")
        rows.append({"path": f"img_{k:03d}.png", "label": label, "patient_id": f"PAT-SECRET-{k:03d}",
                     "case": f"case-{k:03d}"})
    manifest = root / "archive.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cfg = config_from_dict({"data": {"dataset": "manifest", "path": str(manifest)},
                            "model": {"name": "resnet18-small", "options": {"width": 4}},
                            "train": {"epochs": 3, "batch_size": 8, "precision": "fp32"}})
    run = train_run(cfg, root / "run")
    index = root / "index"
    result = invoke("index", run, manifest, "--out", index, "--case-column", "case")
    assert result.exit_code == 0, (result.output, result.exception)
    return root, manifest, run, index


def test_the_index_keeps_case_keys_and_labels_never_patient_ids(archive, tmp_path):
    root, manifest, run, index = archive
    with open(index / "cases.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case"] for r in rows] == [f"case-{k:03d}" for k in range(2 * N_PER_CLASS)]
    assert [r["label"] for r in rows] == [("disc", "stripes")[k % 2] for k in range(2 * N_PER_CLASS)]
    meta = json.loads((index / "index.json").read_text())
    assert meta["count"] == 2 * N_PER_CLASS and meta["class_names"] == ["disc", "stripes"]
    for f in index.iterdir():
        assert b"PAT-SECRET" not in f.read_bytes(), f.name
    # without a case column: the file name; a patient column as case keys is refused
    assert invoke("index", run, manifest, "--out", tmp_path / "stems").exit_code == 0
    assert (tmp_path / "stems/cases.csv").read_text().splitlines()[1].split(",")[1] == "img_000"
    refused = invoke("index", run, manifest, "--out", tmp_path / "no", "--case-column", "patient_id")
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "never stored" in refused.stderr and not (tmp_path / "no").exists()


def test_predict_similar_finds_the_image_itself_first(archive, tmp_path):
    root, _, run, index = archive
    result = invoke("predict", run, root / "img_005.png", "--similar", "3", "--index", index,
                    "--out", tmp_path / "p", "--no-heatmap")
    assert result.exit_code == 0, (result.output, result.exception)
    similar = json.loads((tmp_path / "p/predictions.json").read_text())[0]["similar"]
    assert len(similar) == 3 and set(similar[0]) == {"case", "label", "distance"}
    assert similar[0]["case"] == "case-005" and similar[0]["distance"] < 1e-4 and similar[0]["label"] == "stripes"
    assert [s["distance"] for s in similar] == sorted(s["distance"] for s in similar)
    # the Python API: the same neighbours on the result
    res = medsight.load(run).predict(root / "img_005.png", heatmap=False, similar=3, index=index)
    assert [s["case"] for s in res.similar] == [s["case"] for s in similar]


def test_neighbours_agree_in_label_well_above_chance(archive):
    root, _, run, index = archive
    encoder = load_encoder(run)
    found = load_index(index, encoder)
    images = torch.stack([model_input(encoder, read_image(root / f"img_{k:03d}.png"))
                          for k in range(2 * N_PER_CLASS)])
    neighbours = similar_cases(encoder, found, images, 6)
    agree = [n["label"] == ("disc", "stripes")[k % 2] for k, ns in enumerate(neighbours) for n in ns[1:]]
    assert np.mean(agree) > 0.8  # chance: 0.5


def test_an_index_built_with_another_model_is_refused(archive, tmp_path):
    root, _, run, index = archive
    other = tmp_path / "other"
    shutil.copytree(run, other)
    state = load_checkpoint(other / "checkpoints/best.pt")
    state["model"] = {k: v + 1e-3 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch_save(state, other / "checkpoints/best.pt")
    result = invoke("predict", other, root / "img_001.png", "--similar", "2", "--index", index, "--out", tmp_path / "p")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "built with another model" in result.stderr


def test_embed_writes_unit_vectors_and_their_inputs(archive, tmp_path):
    root, _, run, _ = archive
    inputs = [root / "img_000.png", root / "img_001.png", root / "img_002.png"]
    result = invoke("embed", run, *inputs, "--out", tmp_path / "e")
    assert result.exit_code == 0, (result.output, result.exception)
    vectors = np.load(tmp_path / "e/embeddings.npy")
    assert vectors.dtype == np.float32 and vectors.shape[0] == 3 and vectors.shape[1] >= 8
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with open(tmp_path / "e/embeddings.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["row"], r["case"], r["input"]) for r in rows] == [(str(i), p.stem, str(p)) for i, p in enumerate(inputs)]


def test_similar_needs_an_index(archive, tmp_path):
    root, _, run, _ = archive
    result = invoke("predict", run, root / "img_001.png", "--similar", "2", "--out", tmp_path / "p")
    assert result.exit_code == 2 and "--similar K needs --index" in result.stderr
    assert Path(tmp_path / "p").exists() is False
