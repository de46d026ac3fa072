"""Every plot returns a decodable, reasonably sized PNG and leaves no figure open."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from medsight.errors import MedsightError
from medsight.evaluation import plots
from medsight.evaluation.classification import classification_metrics
from medsight.training.curves import plot_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(data: bytes) -> None:
    assert data.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        width, height = image.size
    assert 300 <= width <= 2500 and 200 <= height <= 2500, image.size


@pytest.mark.parametrize("k", [2, 3])
def test_classification_plots_are_png(make_scores, k):
    y, probs = make_scores(200, k=k, seed=k)
    names = [f"class {i}" for i in range(k)]
    m = classification_metrics(y, probs, names, n_bootstrap=50)
    open_before = plt.get_fignums()
    assert_png(plots.plot_confusion_matrix(m["confusion_matrix"], names))
    assert_png(plots.plot_roc(y, probs, names, auc_ci=m["ci"]["auc"], threshold=0.4))
    assert_png(plots.plot_precision_recall(y, probs, names))
    assert_png(plots.plot_calibration(y, probs, m["ece"]))
    assert_png(plots.plot_calibration(y, probs))  # ECE computed when omitted
    assert plt.get_fignums() == open_before


def test_plots_of_degenerate_data_still_render():
    y = np.zeros(5, dtype=int)
    probs = np.tile([0.8, 0.2], (5, 1))
    assert_png(plots.plot_roc(y, probs, ["neg", "pos"], auc_ci=[None, None]))
    assert_png(plots.plot_precision_recall(y, probs, ["neg", "pos"]))
    assert_png(plots.plot_confusion_matrix([[5, 0], [0, 0]], ["neg", "pos"]))


def test_plots_validate_inputs():
    with pytest.raises(MedsightError):
        plots.plot_roc(np.array([0, 1, 1]), np.tile([0.5, 0.5], (2, 1)), ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        plots.plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"])


@pytest.mark.parametrize(
    "history",
    [
        [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_auc": 0.6 + 0.02 * e, "lr": 1e-3 * 0.9**e}
         for e in range(1, 21)],
        [{"epoch": 1, "train_loss": 0.7}, {"epoch": 2, "train_loss": 0.6, "val_auc": 0.7},
         {"epoch": 3, "train_loss": None, "val_accuracy": "n/a", "lr": 0.0}],  # gaps and junk values
        [{"train_loss": 0.5}, {"train_loss": 0.4}],  # no epoch numbers
        [],
        [{"epoch": 1}],
    ],
)
def test_training_curves_tolerate_missing_keys(history):
    assert_png(plot_training_curves(history))


def test_training_curves_draw_the_monitors_moving_average_beside_it(monkeypatch):
    import medsight.training.curves as curves

    figures = []
    monkeypatch.setattr(curves, "to_png", lambda fig: figures.append(fig) or b"")
    history = [{"epoch": e, "train_loss": 1 / e, "val_auc": v, "val_auc_trend": t, "kept": k}
               for e, v, t, k in ((1, 0.6, 0.6, True), (2, 0.9, 0.69, True), (3, 0.7, 0.693, True))]
    curves.plot_training_curves(history, "val_auc")
    labels = {ax.get_ylabel(): [ln.get_label() for ln in ax.get_lines()] for ax in figures[0].axes}
    metric = labels["Validation metric"]
    assert "val auc" in metric and any("moving average" in label for label in metric)
    assert not any("trend" in label for labels_ in labels.values() for label in labels_)  # not a metric of its own
    trend = next(ln for ln in figures[0].axes[1].get_lines() if "moving average" in ln.get_label())
    assert list(trend.get_ydata()) == [0.6, 0.69, 0.693]
