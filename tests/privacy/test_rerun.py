"""``medsight deid`` over a folder where some files fail, then again: the rerun does only the rest.

A file counts as done when OUT's manifest says an earlier run with the same key and options
finished it, its source is unchanged and its output is still the one written.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from medsight.cli import app
from medsight.errors import OutputFileError
from medsight.privacy import deid as deid_module
from medsight.privacy.deid import DeidOptions, deidentify_tree
from medsight.privacy.manifest import MANIFEST_NAME
from tests.full_disk import disk_full, small_tmpfs, temporaries

from .conftest import KEY_A, KEY_B, read
from .test_cli import CLEAN, add_corrupt, small_tree

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def stamps(out: Path) -> dict[str, tuple[int, int]]:
    """Output file -> (inode, mtime): unchanged when a rerun leaves the file alone."""
    return {p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in out.rglob("*.dcm")}


def run(src: Path, out: Path, key: bytes = KEY_A, **options):
    return deidentify_tree(src, out, DeidOptions(key=key, **options))


@pytest.fixture
def failed_once(tmp_path):
    """A folder of 3 good and 2 bad files, de-identified once: (src, out, the bad files)."""
    src = small_tree(tmp_path / "in")
    bad = add_corrupt(src)
    report = run(src, tmp_path / "out")
    assert (report.n_ok, report.n_failed, report.n_already_done) == (3, 2, 0)
    return src, tmp_path / "out", bad


def test_first_run_lists_every_failure_and_writes_the_report(failed_once):
    src, out, bad = failed_once
    report = json.loads((out / "deid_report.json").read_text())
    assert {f["file"] for f in report["failures"]} == {p.relative_to(src).as_posix() for p in bad}
    assert report["complete"] and report["n_ok"] == 3
    assert len((out / MANIFEST_NAME).read_text().splitlines()) == 3  # the good ones only


def test_rerun_after_fixing_the_failures_does_only_them(failed_once):
    src, out, bad = failed_once
    before = stamps(out)
    for path in bad:  # fixed: the truncated file re-sent whole, the note replaced by an image
        shutil.copyfile(get_testdata_file("MR_small.dcm"), path)
    report = run(src, out)
    assert (report.n_ok, report.n_failed, report.n_already_done) == (5, 0, 3)
    after = stamps(out)
    assert {k: after[k] for k in before} == before  # the good outputs were not rewritten
    assert all((out / p.relative_to(src)).is_file() for p in bad)
    saved = json.loads((out / "deid_report.json").read_text())
    assert (saved["n_ok"], saved["n_already_done"], saved["failures"]) == (5, 3, [])


def test_cli_says_how_many_were_done_before(failed_once, key_file):
    src, out, bad = failed_once
    for path in bad:
        path.unlink()
    # The fixture used KEY_A, which is what the key file holds.
    result = CliRunner().invoke(app, ["deid", str(src), str(out), "--key-file", str(key_file)])
    assert result.exit_code == 0, result.output
    assert "de-identified 3 file(s) (3 done by an earlier run), 0 failed" in result.stdout


def test_changed_source_or_output_is_redone(failed_once):
    src, out, _ = failed_once
    name = CLEAN[0]
    changed_source = next(src.rglob(name))
    ds = read(changed_source)
    ds.SeriesDescription = "re-sent"
    ds.save_as(changed_source)
    tampered = next(out.rglob(CLEAN[1]))
    tampered.write_bytes(tampered.read_bytes() + b"\0\0")
    before = stamps(out)
    report = run(src, out)
    assert report.n_already_done == 1
    after = stamps(out)
    changed = {k for k in before if after[k] != before[k]}
    assert changed == {changed_source.relative_to(src).as_posix(), tampered.relative_to(out).as_posix()}
    assert read(tampered)  # rewritten whole


def test_another_key_redoes_everything(failed_once):
    src, out, _ = failed_once
    before = {k: (out / k).read_bytes() for k in stamps(out)}
    report = run(src, out, key=KEY_B)
    assert report.n_already_done == 0
    assert all((out / k).read_bytes() != v for k, v in before.items())  # new pseudonyms and UIDs


def test_map_covers_the_patients_of_files_done_earlier(failed_once, tmp_path):
    src, out, _ = failed_once
    report = run(src, out, map_path=tmp_path / "map.csv")
    assert report.n_already_done == 3
    rows = list(csv.DictReader((tmp_path / "map.csv").open()))
    originals = {str(read(p).PatientID) for p in src.rglob("*.dcm") if p.name in CLEAN}
    assert {r["original_patient_id"] for r in rows} == originals


def test_a_killed_run_leaves_a_usable_manifest(tmp_path, monkeypatch):
    src = small_tree(tmp_path / "in")
    real, calls = deid_module.deidentify_file, []

    def killed_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(deid_module, "deidentify_file", killed_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        run(src, tmp_path / "out")
    monkeypatch.undo()
    manifest = tmp_path / "out" / MANIFEST_NAME
    with open(manifest, "a") as fh:
        fh.write('{"file": "torn')  # a kill in the middle of an append
    report = run(src, tmp_path / "out")
    assert (report.n_ok, report.n_already_done) == (3, 2)
    assert [json.loads(line)["file"] for line in manifest.read_text().splitlines()] == sorted(
        p.relative_to(src).as_posix() for p in src.rglob("*.dcm"))


def test_full_disk_stops_with_one_error_and_the_rerun_finishes(tmp_path, monkeypatch):
    src = small_tree(tmp_path / "in")
    out = tmp_path / "out"
    first_size = next(src.rglob(CLEAN[0])).stat().st_size
    with disk_full(monkeypatch, out, free=first_size + 2000), pytest.raises(OutputFileError) as info:
        run(src, out)
    assert str(info.value).endswith("cannot write: No space left on device")
    assert str(out) in str(info.value)
    done = list(out.rglob("*.dcm"))
    assert len(done) == 1 and read(done[0]).PatientIdentityRemoved == "YES"
    assert temporaries(out) == []
    report = run(src, out)  # space freed
    assert (report.n_ok, report.n_already_done) == (3, 1)


def test_real_full_tmpfs_then_more_space(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(12):
        shutil.copyfile(get_testdata_file("CT_small.dcm"), src / f"ct{i:02d}.dcm")  # 39 KB each
    with small_tmpfs(tmp_path / "disk", "256k") as disk:
        with pytest.raises(OutputFileError, match="No space left on device"):
            run(src, disk / "out")
        done = sorted((disk / "out").glob("*.dcm"))
        assert 0 < len(done) < 12 and all(read(p).PatientIdentityRemoved == "YES" for p in done)
        assert temporaries(disk) == []
        assert subprocess.run(["mount", "-o", "remount,size=2m", str(disk)]).returncode == 0
        report = run(src, disk / "out")
        assert (report.n_ok, report.n_failed, report.n_already_done) == (12, 0, len(done))


def test_damaged_element_fails_its_file_without_output_or_quoted_bytes(tmp_path):
    src = small_tree(tmp_path / "in")
    victim = next(src.rglob("CT_small.dcm"))
    data = bytearray(victim.read_bytes())
    at = data.find(b"\x08\x00\x16\x00UI")  # SOPClassUID re-labelled SL: undecodable
    data[at + 4:at + 6] = b"SL"
    victim.write_bytes(bytes(data))
    report = run(src, tmp_path / "out")
    [(source, problem)] = report.failures
    assert source == str(victim)
    assert problem.endswith("element (0008,0016) does not fit its value representation")
    assert "1.2.840" not in problem  # the value is not quoted
    assert not (tmp_path / "out" / victim.relative_to(src)).exists()
    assert report.n_ok == 2
