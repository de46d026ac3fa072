"""Atomic writes on a full disk: one clear error naming the file, the old file intact, no litter."""

from __future__ import annotations

import pytest
import torch

from medsight.errors import OutputFileError
from medsight.utils.atomic import remove_stale_temporaries, torch_save, write_json, write_text
from tests.full_disk import disk_full, fill, small_tmpfs, temporaries


@pytest.mark.parametrize("free", [0, 10, 5000])
def test_full_disk_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch, free):
    path = tmp_path / "out" / "report.json"
    write_json(path, {"version": 1})
    with disk_full(monkeypatch, tmp_path, free=free), pytest.raises(OutputFileError) as info:
        write_text(path, "x" * 20000)
    assert str(info.value) == f"{path}: cannot write: No space left on device"
    assert path.read_text() == '{\n  "version": 1\n}\n'
    assert temporaries(tmp_path) == []


def test_checkpoint_on_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    torch_save({"epoch": 1, "w": torch.ones(10)}, path)
    with disk_full(monkeypatch, tmp_path, free=300), pytest.raises(OutputFileError, match="No space left"):
        torch_save({"epoch": 2, "w": torch.ones(100_000)}, path)
    assert torch.load(path)["epoch"] == 1
    assert temporaries(tmp_path) == []


def test_real_full_tmpfs(tmp_path):
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        path = disk / "checkpoints" / "last.pt"
        torch_save({"epoch": 1, "w": torch.ones(10)}, path)
        fill(disk, leave=8192)
        with pytest.raises(OutputFileError) as info:
            torch_save({"epoch": 2, "w": torch.ones(200_000)}, path)  # 800 KB
        assert str(info.value) == f"{path}: cannot write: No space left on device"
        assert torch.load(path)["epoch"] == 1
        assert temporaries(disk) == []


def test_stale_temporaries_are_recognised_by_name(tmp_path):
    (tmp_path / "a").mkdir()
    stale = [tmp_path / ".last.pt.abcd1234.tmp", tmp_path / "a" / ".metrics.jsonl.x_y9z0qq.tmp"]
    kept = [tmp_path / "user.tmp", tmp_path / ".hidden.tmp", tmp_path / "last.pt"]
    for path in stale + kept:
        path.write_text("x")
    assert remove_stale_temporaries(tmp_path) == 2
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
