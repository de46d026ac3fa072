"""One writer per run folder: a second training into it is refused; kill -9 frees the folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medsight.errors import MedsightError
from medsight.runtime.run_folder import LOCK_FILE, lock_run_folder
from medsight.training.run import train_run
from tests.cli.helpers import TINY_YAML, assert_user_error, invoke
from tests.conftest import tiny_config

HOLDER = textwrap.dedent("""
    import sys, time
    from medsight.runtime.run_folder import lock_run_folder
    with lock_run_folder(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
""")


@pytest.fixture
def held_elsewhere(tmp_path):
    """A run folder locked by another process: (folder, that process)."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "locked"
    yield run_dir, proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def tiny():
    return tiny_config(train={"epochs": 1}, data={"synthetic": {"n_train": 16, "n_val": 8, "n_test": 4}})


def test_second_writer_is_refused_naming_folder_and_holder(held_elsewhere):
    run_dir, holder = held_elsewhere
    with pytest.raises(MedsightError) as info:
        train_run(tiny(), run_dir)
    message = str(info.value)
    assert message.startswith(f"{run_dir}: another medsight process (PID {holder.pid} on ")
    assert "\n" not in message
    assert not (run_dir / "config.yaml").exists()  # refused before writing anything


def test_cli_second_train_is_one_line(held_elsewhere, tmp_path):
    run_dir, holder = held_elsewhere
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    result = invoke("train", tmp_path / "tiny.yaml", "--out", run_dir)
    assert_user_error(result, run_dir, f"PID {holder.pid}")


def test_kill_9_of_the_holder_frees_the_folder(held_elsewhere):
    run_dir, holder = held_elsewhere
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with lock_run_folder(run_dir):  # the kernel dropped the dead process's flock
        assert (run_dir / LOCK_FILE).read_text().split()[0] == str(os.getpid())


def test_lock_is_released_when_training_fails_or_ends(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(MedsightError, match="nothing to resume"):
        train_run(tiny(), run_dir, resume=True)
    train_run(tiny(), run_dir)  # not locked by the failed call
    with lock_run_folder(run_dir):  # nor by the finished one
        pass


def test_taking_the_lock_removes_temporaries_left_by_a_killed_writer(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    torn = run_dir / "checkpoints" / ".last.pt.k3j9x0aa.tmp"
    torn.write_bytes(b"half a checkpoint")
    keep = run_dir / "notes.tmp"  # not an atomic write's temporary: left alone
    keep.write_text("mine")
    with lock_run_folder(run_dir):
        assert not torn.exists() and keep.exists()


def test_same_process_cannot_take_it_twice(tmp_path):
    with lock_run_folder(tmp_path / "run"):
        start = time.monotonic()
        with pytest.raises(MedsightError, match=f"PID {os.getpid()}"):
            with lock_run_folder(tmp_path / "run"):
                pass
        assert time.monotonic() - start < 5  # refused at once, never waits


def test_other_torchrun_ranks_share_rank_0s_lock(tmp_path, monkeypatch):
    with lock_run_folder(tmp_path / "run"):
        monkeypatch.setenv("RANK", "1")
        with lock_run_folder(tmp_path / "run") as path:
            assert path == Path(tmp_path / "run" / LOCK_FILE)
