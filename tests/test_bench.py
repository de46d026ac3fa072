"""The MedMNIST benchmark script's interface, on a tiny made-up .npz (the real run is by hand)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_medmnist_bench_prints_table_and_writes_json(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 32), ("val", 16), ("test", 16)):
        labels = np.arange(n) % 2
        images = rng.integers(0, 100, (n, 28, 28), dtype=np.uint8)
        images[labels == 1, 10:18, 10:18] = 250  # a learnable bright square
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None].astype(np.uint8)
    npz = tmp_path / "breastmnist.npz"
    np.savez(npz, **arrays)
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "medmnist.py"), str(npz), "--json", str(out),
         "--set", "train.epochs=2", "--set", "model.options={width: 8}", "--set", "evaluation.n_bootstrap=50"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ResNet-18 (28)" in proc.stdout and "0.901" in proc.stdout  # the paper's row
    result = json.loads(out.read_text())
    assert set(result) >= {"dataset", "auc", "acc", "train_seconds", "config"}
    assert result["dataset"] == "breastmnist" and 0 <= result["auc"] <= 1 and result["train_seconds"] > 0


@pytest.mark.slow
def test_bccd_bench_prints_table_and_writes_json(tmp_path):
    from tests.data.voc_builders import write_voc

    root = write_voc(tmp_path / "voc", {"train": 8, "val": 4, "test": 4}, size=64)
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bccd.py"), "--data", str(root), "--json", str(out), "--epochs", "1",
         "--set", "detection.classes=[square, disc]", "--set", "detection.scale=1.0",
         "--set", "model.name=retinanet-resnet10", "--set", "model.options={width: 8, fpn_channels: 16}",
         "--set", "train.threads=1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "AP@0.5" in proc.stdout and "square" in proc.stdout and "mAP" in proc.stdout
    result = json.loads(out.read_text())
    assert set(result["ap50"]) == {"square", "disc"} and 0 <= result["map50"] <= 1
    assert result["train_seconds"] > 0 and result["epochs"] == 1 and result["n_test_images"] == 4
