"""``medsight demo --task segmentation``: the built-in config trains, evaluates and segments
held-out DICOM slices into NIfTI masks, DICOM SEG objects and a lesion table."""

from __future__ import annotations

import json

import highdicom as hd
import nibabel as nib
import pydicom
import yaml

from medsight.demo import N_EXAMPLES, run_demo
from tests.cli.helpers import assert_user_error, invoke

# The shipped demo config with its sizes cut down to a few seconds (it trains 12 epochs on 600).
SMALL = ["data.synthetic.n_train=32", "data.synthetic.n_val=8", "data.synthetic.n_test=8",
         "model.options.channels=[8,16,32]", "model.options.strides=[2,2]", "model.options.num_res_units=1",
         "train.batch_size=8", "train.precise_bn_samples=16", "segmentation.iterations_per_epoch=2",
         "evaluation.n_bootstrap=50"]


def test_segmentation_demo_leaves_a_run_an_evaluation_and_segmented_dicom(tmp_path):
    out = tmp_path / "demo"
    run = run_demo(out, epochs=1, overrides=SMALL, task="segmentation")
    assert run == out / "run"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["task"] == "segmentation" and cfg["name"] == "demo-segmentation"
    assert cfg["segmentation"]["lesions"]["hit_rule"] == "center"  # from the shipped file
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "segmentation" and metrics["n"] == 8
    assert {"dice", "froc", "summary"} <= metrics.keys()
    assert (run / "report.html").is_file() and (run / "cases_test.csv").is_file()

    records = json.loads((out / "segmentations" / "segmentations.json").read_text())
    assert len(records) == N_EXAMPLES
    lesions = json.loads((out / "segmentations" / "lesions.json").read_text())
    assert sum(r["lesions"] for r in records) == len(lesions)
    for record in records:
        source = pydicom.dcmread(record["input"])
        mask = nib.load(record["mask"])
        assert mask.shape == (source.Rows, source.Columns)
        seg = hd.seg.segread(record["dicom_seg"])
        assert seg.StudyInstanceUID == source.StudyInstanceUID
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
        assert [s.SegmentLabel for s in seg.SegmentSequence] == ["nodule"]


def test_an_unknown_demo_task_is_one_line(tmp_path):
    assert_user_error(invoke("demo", "--task", "detection", "--out", tmp_path / "demo"),
                      "detection", "classification or segmentation")
