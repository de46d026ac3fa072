"""The API on the other task kinds: segmentation masks on the source grid with lesions, and
boxes from a detector, through the same functions as ``medsight segment`` and evaluation."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

import medsight
from medsight.errors import MedsightError
from medsight.inference.segment import segment_paths
from tests.data.voc_builders import write_voc
from tests.inference.files import SPACING, nodule_cases, run_planned_at
from tests.training.test_detection import tiny_detection_config


def test_segmentation_mask_on_the_source_grid_with_lesions(segmentation_run, tmp_path):
    """A finer, anisotropic NIfTI with a flipped axis: the mask comes back in its grid and affine,
    equal to the one `medsight segment` writes, over the nodule, with the lesion table."""
    run_dir = run_planned_at(segmentation_run, tmp_path / "run", [SPACING, SPACING])
    item = next(i for i in nodule_cases("test", 8) if i["label"] == 1)
    hu = ndimage.zoom(item["image"][0].numpy(), (1.6, 1.25), order=1)
    ref = ndimage.zoom(item["mask"][0].numpy(), (1.6, 1.25), order=0)
    affine = np.array([[-SPACING / 1.6, 0, 0, 120.0], [0, SPACING / 1.25, 0, -80.0], [0, 0, 2.5, 33.0], [0, 0, 0, 1]])
    source = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(hu.astype(np.float32), affine), source)

    run = medsight.load(run_dir)
    assert run.task == "segmentation" and run.class_names == ["background", "nodule"]
    seg = run.predict(source)
    assert isinstance(seg, medsight.SegmentationResult)
    assert seg.mask.shape == hu.shape == (102, 80) and seg.mask.dtype == np.uint8
    np.testing.assert_allclose(seg.affine, affine, atol=1e-5)
    [cli] = segment_paths(run_dir, [source], tmp_path / "out", overlays=False)
    np.testing.assert_array_equal(seg.mask, np.asarray(nib.load(cli["mask"]).dataobj))
    overlap = 2 * float(((seg.mask > 0) & (ref > 0)).sum()) / max(int((seg.mask > 0).sum() + (ref > 0).sum()), 1)
    assert overlap > 0.5  # the existing segment test measured 0.74-0.75 here
    assert seg.voxels_per_class == {"nodule": int(seg.mask.sum())} and seg.probabilities.shape == (2, 102, 80)
    lesions = json.loads((tmp_path / "out" / "lesions.json").read_text())
    assert len(seg.lesions) == len(lesions) >= 1 and seg.lesions[0]["class"] == "nodule"
    assert seg.lesions[0]["centroid_mm"] == pytest.approx(lesions[0]["centroid_mm"])
    # the same image as an array (unit spacing, identity affine): a mask in the array's grid
    from_array = run.predict(hu[None].astype(np.float32))
    assert from_array.mask.shape == hu.shape and from_array.source == "array"
    data = seg.to_dict()
    assert data["shape"] == [102, 80] and "mask" not in data and len(data["lesions"]) == len(seg.lesions)
    assert "data:image/png;base64," in seg._repr_html_() and "nodule" in seg._repr_html_()


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api-det")
    root = write_voc(tmp / "voc", {"train": 8, "val": 4, "test": 4}, size=64, per_image=2)
    return medsight.train(tiny_detection_config(root), overrides=["train.epochs=2"], out=tmp / "run"), root


def test_detection_boxes_scores_labels(detector, tmp_path):
    run, root = detector
    assert run.task == "detection" and run.class_names == ["disc", "square"]
    image = root / "JPEGImages" / "img_0012.png"
    det = run.predict(image)
    assert isinstance(det, medsight.DetectionResult)
    n = len(det.labels)
    assert det.boxes.shape == (n, 4) and det.scores.shape == (n,)
    assert set(det.labels) <= {"disc", "square"} and np.all((det.scores >= 0.05) & (det.scores <= 1))
    if n:
        assert np.all(det.boxes[:, :2] <= det.boxes[:, 2:]) and det.boxes.min() >= 0 and det.boxes.max() <= 64
    found = run._model.detect([__import__("torch").from_numpy(det.image)])[0]  # the same pixels, directly
    np.testing.assert_allclose(det.boxes, found["boxes"].numpy(), atol=1e-4)
    assert det.image.shape == (3, 64, 64) and det.image.dtype == np.uint8
    assert "data:image/png;base64," in det._repr_html_()
    assert len(run.predict(root / "JPEGImages")) == 16
    with pytest.raises(MedsightError, match="give a path"):
        run.predict(np.zeros((3, 64, 64)))
    before = sorted(p.name for p in run.path.iterdir())
    ev = run.evaluate(split="test")
    assert sorted(p.name for p in run.path.iterdir()) == before
    assert ev.task == "detection" and ev.n == 4 and set(ev.metrics) == {"map", "ap[disc]", "ap[square]"}
    low, high = ev["map"].ci  # 95% bootstrap interval over the 4 test images
    assert low <= ev["map"].value <= high and json.loads(ev.to_json())["task"] == "detection"


def test_segmentation_evaluate_gives_dice_with_cis_and_writes_nothing(segmentation_run):
    before = sorted(p.name for p in segmentation_run.rglob("*"))
    ev = medsight.load(segmentation_run).evaluate(split="test")
    assert sorted(p.name for p in segmentation_run.rglob("*")) == before
    assert ev.task == "segmentation" and ev.n == 32 and set(ev.metrics) == {"mean_dice", "dice[nodule]", "froc_score"}
    dice = ev["dice[nodule]"]
    assert 0.0 <= dice.ci[0] <= dice.value <= dice.ci[1] <= 1.0 and dice.value > 0.3
    assert ev.details["summary"]["n_cases"] == 32 and 0.0 <= ev["froc_score"].value <= 1.0
