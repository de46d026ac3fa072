"""Batch prediction: resumable, bad files listed not fatal, workers give the same answers."""

import json
import shutil

import pytest

from medsight.inference import batch
from medsight.inference.batch import JOURNAL_FILE, PREDICTIONS_FILE, SUMMARY_FILE, predict_paths

from .files import write_slice_files


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    for i in range(6):
        write_slice_files(root / f"case{i}", index=i)
    return root


def test_rerun_skips_finished_inputs_and_redoes_changed_ones(trained_run, folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = predict_paths(trained_run, [folder], out, heatmaps=False, batch_size=4)
    assert len(first.results) == 18 and first.resumed == 0
    seen = []
    real = batch._load_one
    monkeypatch.setattr(batch, "_load_one", lambda p, run=None: (seen.append(p), real(p, run))[1])
    again = predict_paths(trained_run, [folder], out, heatmaps=False, batch_size=4)
    assert seen == [] and again.resumed == 18 and again.results == first.results
    changed = folder / "case2" / "slice.png"
    shutil.copy(folder / "case3" / "slice.png", changed)  # new content, new size or mtime
    third = predict_paths(trained_run, [folder], out, heatmaps=False, batch_size=4)
    assert seen == [changed] and third.resumed == 17
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["predicted"] == 18 and summary["failed"] == 0
    assert summary["engine"] == json.loads((trained_run / "engine.json").read_text())["engine"]  # recorded


def test_a_torn_journal_line_from_a_kill_is_dropped_and_redone(trained_run, folder, tmp_path):
    out = tmp_path / "out"
    predict_paths(trained_run, [folder / "case0", folder / "case1"], out, heatmaps=False)
    journal = out / JOURNAL_FILE
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # killed mid-line
    report = predict_paths(trained_run, [folder / "case0", folder / "case1"], out, heatmaps=False)
    assert report.resumed == 5 and len(report.results) == 6
    assert all(json.loads(line) for line in journal.read_text().splitlines())


def test_bad_files_are_listed_and_the_rest_done(trained_run, folder, tmp_path):
    inputs = tmp_path / "in"
    shutil.copytree(folder / "case0", inputs)
    (inputs / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10")  # truncated header
    (inputs / "notes.txt").write_text("not an image")
    report = predict_paths(trained_run, [inputs], tmp_path / "out", heatmaps=False)
    assert len(report.results) == 3
    failed = dict(report.failures)
    assert set(failed) == {str(inputs / "broken.dcm"), str(inputs / "notes.txt")}
    assert all(problem and "\n" not in problem for problem in failed.values())
    saved = json.loads((tmp_path / "out" / PREDICTIONS_FILE).read_text())
    assert [r["input"] for r in saved] == [r["input"] for r in report.results]


@pytest.mark.slow
def test_worker_processes_give_the_same_answers_in_input_order(trained_run, folder, tmp_path):
    serial = predict_paths(trained_run, [folder], tmp_path / "a", heatmaps=False, workers=0).results
    parallel = predict_paths(trained_run, [folder], tmp_path / "b", heatmaps=False, workers=2, batch_size=5).results
    assert [r["input"] for r in parallel] == [r["input"] for r in serial]
    for a, b in zip(serial, parallel):
        assert a["label"] == b["label"]
        assert b["probabilities"] == pytest.approx(a["probabilities"], abs=1e-5)
