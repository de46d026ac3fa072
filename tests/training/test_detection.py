"""Detection training end to end on drawn squares and discs: it must clearly learn."""

import json

import pytest
import torch

from medsight.config import config_from_dict
from medsight.data.voc import load_detection_image, voc_dataset
from medsight.errors import ConfigError, InputFileError
from medsight.evaluation.detection_run import evaluate_detection
from medsight.inference.detection import load_detector
from medsight.metrics.detection import detection_metrics
from medsight.models.detection import build_detector
from medsight.training.run import train_run
from tests.data.voc_builders import write_voc


def tiny_detection_config(root, **train):
    return config_from_dict({
        "name": "tiny-det",
        "data": {"dataset": "voc", "path": str(root)},
        "model": {"name": "retinanet-resnet10", "options": {"width": 8, "fpn_channels": 16}},
        # anchors for 12-21 px objects; one thread: these nets are too small to gain from two
        "detection": {"zoom": 0.1, "anchor_sizes": [[12, 15, 19], [24, 30, 38], [48, 60, 76]]},
        "train": {"epochs": 12, "batch_size": 8, "lr": 0.003, "optimizer": "adamw", "warmup_epochs": 1,
                  "precision": "fp32", "threads": 1, **train},
    })


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("det")
    root = write_voc(tmp / "voc", {"train": 32, "val": 8, "test": 16}, size=64, per_image=2)
    return train_run(tiny_detection_config(root), tmp / "run"), root


@pytest.mark.slow
def test_short_training_beats_an_untrained_detector(shapes_run):
    run, root = shapes_run
    metrics = evaluate_detection(run, split="test")
    loaded = load_detector(run)
    torch.manual_seed(0)
    loaded.model = build_detector("retinanet-resnet10", 3, 2, loaded.anchors, width=8, fpn_channels=16).eval()
    items = voc_dataset(root, loaded.class_names).split("test")
    untrained = detection_metrics(loaded.detect([load_detection_image(i) for i in items]),
                                  [{"boxes": i.boxes, "labels": i.labels} for i in items], loaded.class_names)
    assert metrics["map"] > 0.35 and untrained["map"] < 0.05, (metrics["ap"], untrained["ap"])
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["map"] == pytest.approx(metrics["map"]) and set(saved["ap"]) == {"disc", "square"}
    assert (run / "pr_curve_test.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_run_folder_holds_plan_history_and_checkpoints(shapes_run):
    run, _ = shapes_run
    plan = json.loads((run / "plan.json").read_text())
    assert plan["task"] == "detection" and plan["class_names"] == ["disc", "square"]
    assert plan["n_items"] == {"train": 32, "val": 8} and plan["train_box_counts"] == {"disc": 32, "square": 32}
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 12 and {"val_map", "val_ap_disc", "val_ap_square"} <= set(history[0])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for name in ("config.yaml", "checkpoints/best.pt", "checkpoints/last.pt", "training_curves.png"):
        assert (run / name).is_file(), name


def test_detection_defaults_and_refusals(tmp_path):
    root = write_voc(tmp_path / "voc", {"train": 4, "val": 2, "test": 2})
    with pytest.raises(ConfigError, match="not a box detector"):
        train_run(tiny_detection_config(root).model_copy(update={"model": config_from_dict(
            {"model": {"name": "resnet18"}}).model}), tmp_path / "r1")
    with pytest.raises(InputFileError, match="is not one of detection.classes"):
        cfg = tiny_detection_config(root, epochs=1)
        cfg.detection.classes = ["square"]
        train_run(cfg, tmp_path / "r2")


def test_detection_images_are_resized_once_into_the_cache_and_read_back(tmp_path, monkeypatch):
    from medsight.training import detection
    from medsight.transforms.boxes import resize_with_boxes

    root = write_voc(tmp_path / "voc", {"train": 6, "val": 2, "test": 2}, size=48, per_image=2)
    cfg = tiny_detection_config(root).model_copy(deep=True)
    cfg.data.cache_dir = str(tmp_path / "cache")
    items = voc_dataset(root, None, 0).split("train")
    first = detection.prepare_boxes(items, 0.75, cfg)
    for i, item in enumerate(items):  # what the detector reads: the resized uint8 pixels and boxes
        image, boxes = resize_with_boxes(load_detection_image(item), torch.from_numpy(item.boxes), 0.75)
        assert torch.equal(first.images[i], image.round().clamp(0, 255).to(torch.uint8))
        assert torch.allclose(first.targets[i]["boxes"], boxes)
        assert first.shapes[i] == (36, 36)
    # a rerun (another seed, fold or resume) reads no image file: the cache has them
    monkeypatch.setattr(detection, "load_detection_image", lambda item: pytest.fail(f"read {item.image}"))
    again = detection.prepare_boxes(items, 0.75, cfg)
    assert all(torch.equal(a, b) for a, b in zip(first.images, again.images))
    # statistics summed image by image match those of all pixels at once
    mean, std = detection.channel_stats(again.images)
    flat = torch.cat([im.reshape(3, -1).float() for im in first.images], dim=1)
    assert mean == pytest.approx(flat.mean(1).tolist(), rel=1e-5)
    assert std == pytest.approx(flat.std(1).tolist(), rel=1e-4)
