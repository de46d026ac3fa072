"""DistributedDataParallel on CPU (gloo): two processes follow the single-process run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from medsight.runtime.checkpoint import load_checkpoint
from medsight.runtime.distributed import Distributed

# No normalisation layer and no dropout: nothing depends on how the global batch is split, so the
# two-process run must end with the single-process weights up to float summation order.
CONFIG = {
    "name": "ddp",
    "data": {"dataset": "synthetic", "synthetic": {"n_train": 90, "n_val": 20, "n_test": 4, "size": 32}},
    "transforms": {"intensity": "window", "window": {"preset": "lung"},
                   "augment": {"flip": [1], "rotate_degrees": 10, "prob": 0.5}},
    "model": {"name": "simple-cnn", "options": {"norm": "none", "dropout": 0.0, "channels": [8, 16], "hidden": 16}},
    # 90 = 2 full batches of 32 and one of 26: uneven slices are weighted exactly too
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "optimizer": "adam", "precision": "fp32",
              "threads": 1, "seed": 3},
}


def _train(config: Path, out: Path, nproc: int, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "medsight.cli", "train", str(config), "--out", str(out), "--nproc", str(nproc), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=out.parent)


@pytest.mark.slow
def test_two_processes_end_with_the_single_process_weights(tmp_path):
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    single, double = _train(config, tmp_path / "one", 1), _train(config, tmp_path / "two", 2)
    assert single.returncode == 0, single.stderr[-2000:]
    assert double.returncode == 0, double.stderr[-2000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    # training loss reduced over both ranks equals the single-process loss
    la = [json.loads(x)["train_loss"] for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["train_loss"] for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert lb == pytest.approx(la, rel=1e-4)
    assert json.loads((tmp_path / "two" / "plan.json").read_text())["processes"] == 2
    assert "run folder" in double.stdout


@pytest.mark.slow
def test_distributed_resume_continues_the_run(tmp_path):
    cfg = {**CONFIG, "train": {**CONFIG["train"], "epochs": 1}}
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert _train(config, tmp_path / "run", 2).returncode == 0
    cfg["train"]["epochs"] = 2  # not allowed: resume must use the same config
    config.write_text(yaml.safe_dump(cfg))
    refused = _train(config, tmp_path / "run", 2, "--resume")
    assert refused.returncode != 0 and "config differs" in refused.stderr


def test_shard_splits_a_global_batch_into_contiguous_slices():
    x = torch.arange(10)
    parts = [Distributed(rank=r, world_size=3).shard(x) for r in range(3)]
    assert torch.equal(torch.cat(parts), x) and [len(p) for p in parts] == [4, 3, 3]
    boxes = [{"i": i} for i in range(5)]
    assert Distributed(rank=1, world_size=2).shard(boxes) == [{"i": 3}, {"i": 4}]
    assert Distributed().shard(x) is x
