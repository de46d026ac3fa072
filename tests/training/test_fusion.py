"""Images fused with clinical columns: only a fused model can learn ``blob XOR (age > 55)``."""

from __future__ import annotations

import csv
import json

import pytest

from medsight.config import config_from_dict
from medsight.errors import MedsightError
from medsight.evaluation.calibrate import calibrate_run
from medsight.evaluation.evaluate import evaluate_run
from medsight.inference.cases import predict_cases
from medsight.inference.load import load_run
from medsight.inference.predict import predict_image
from medsight.io import read_image
from medsight.training.run import train_run

from .fusion_data import write_fusion_set


def _config(manifest, clinical: list[str]) -> dict:
    return {
        "name": "fusion",
        "data": {"dataset": "manifest", "path": str(manifest), "clinical": clinical},
        "transforms": {"intensity": "scale01", "spatial_size": [24, 24], "augment": {"flip": [0, 1], "prob": 0.5}},
        "model": {"name": "resnet18-small", "spatial_dims": 2, "options": {"width": 8}},
        "train": {"epochs": 10, "batch_size": 32, "lr": 0.005, "optimizer": "adamw", "seed": 0,
                  "precise_bn_samples": 128},
        "evaluation": {"n_bootstrap": 100},
    }


@pytest.fixture(scope="module")
def fusion_set(tmp_path_factory):
    return write_fusion_set(tmp_path_factory.mktemp("fusion") / "data", n=480)


@pytest.fixture(scope="module")
def fused_run(fusion_set, tmp_path_factory):
    cfg = config_from_dict(_config(fusion_set, ["age", "sex", "crp"]))
    return train_run(cfg, tmp_path_factory.mktemp("runs") / "fused", calibrate=calibrate_run)


def test_only_the_fused_model_learns_a_label_that_needs_image_and_table(fused_run, fusion_set, tmp_path):
    fused = evaluate_run(fused_run, split="test")
    image_only = train_run(config_from_dict(_config(fusion_set, [])), tmp_path / "image")
    alone = evaluate_run(image_only, split="test")
    # XOR: the image alone carries no information about the label (measured AUC ~0.5), the
    # fused model separates the classes (measured ~0.95 on bf16 and fp32)
    assert fused["auc"] > 0.8, fused["auc"]
    assert alone["auc"] < 0.7, alone["auc"]
    plan = json.loads((fused_run / "plan.json").read_text())
    assert plan["clinical"] and plan["fusion"]["table_features"] >= 3
    assert (fused_run / "calibration.json").is_file()


def test_predict_cases_reads_the_clinical_columns_and_missing_values(fused_run, fusion_set, tmp_path):
    rows = list(csv.DictReader(fusion_set.open()))
    test_rows = [r for r in rows if r["split"] == "test"][:12]
    cases = tmp_path / "cases.csv"
    with cases.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["path", "age", "sex", "crp"])
        writer.writeheader()
        for r in test_rows:
            writer.writerow({"path": str(fusion_set.parent / r["path"]), "age": r["age"], "sex": r["sex"],
                             "crp": ""})  # crp missing everywhere: imputed as in training
    report = predict_cases(fused_run, cases, tmp_path / "out", heatmaps=False)
    assert len(report.results) == 12 and not report.failures
    right = sum(int(r["label_index"]) == int(row["label"]) for r, row in zip(report.results, test_rows))
    assert right >= 9, right  # the model still reads age: most cases right without crp
    # the same image with another age flips the decision about as often as XOR says it should
    first = test_rows[0]
    image = read_image(fusion_set.parent / first["path"])
    run = load_run(fused_run)
    young, _, _ = predict_image(run, image, heatmap=False, clinical={"age": "25", "sex": first["sex"], "crp": ""})
    old, _, _ = predict_image(run, image, heatmap=False, clinical={"age": "85", "sex": first["sex"], "crp": ""})
    assert young["label_index"] != old["label_index"]
    # TTA views move the image only; Grad-CAM explains the image branch
    record, heat, _ = predict_image(run, image, heatmap=True, tta=True, clinical={"age": "85", "sex": "F", "crp": ""})
    assert record["label_index"] == old["label_index"] and "mutual_information" in record
    assert heat is not None and heat.shape[-2:] == (24, 24) and 0 <= heat.min() and heat.max() <= 1


def test_a_fused_run_refuses_an_image_without_its_clinical_values(fused_run, fusion_set):
    run = load_run(fused_run)
    image = read_image(next(fusion_set.parent.glob("*.png")))
    with pytest.raises(MedsightError, match="--cases"):
        predict_image(run, image, heatmap=False)
    with pytest.raises(MedsightError, match="sex"):
        predict_image(run, image, heatmap=False, clinical={"age": "40", "crp": ""})
