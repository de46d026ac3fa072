"""medsight: deep-learning medical image analysis, from clinical images to explained diagnoses.

The Python API, one flat namespace (docs/api.md)::

    import medsight
    run = medsight.train(data="breastmnist.npz", minutes=5, out="runs/b")
    run = medsight.load("runs/b")
    res = run.predict("scan.dcm")          # .label, .probabilities, .heatmap, .uncertainty
    metrics = run.evaluate(split="test")   # metrics["auc"].value, .ci
    image = medsight.read_image("study/")

Names are imported on first use (module ``__getattr__``): ``import medsight`` loads no torch.
"""

__version__ = "0.1.0"

from medsight.utils.startup import skip_transformers_in_monai  # noqa: E402

skip_transformers_in_monai()

_LAZY = {
    "train": "medsight.api.run",
    "load": "medsight.api.run",
    "Run": "medsight.api.run",
    "read_image": "medsight.io.read",
    "Prediction": "medsight.api.results",
    "SegmentationResult": "medsight.api.results",
    "DetectionResult": "medsight.api.results",
    "Evaluation": "medsight.api.results",
    "Metric": "medsight.api.results",
}
__all__ = ["DetectionResult", "Evaluation", "Metric", "Prediction", "Run", "SegmentationResult", "__version__",
           "load", "read_image", "train"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a few ms)
if TYPE_CHECKING:
    from medsight.api.results import DetectionResult, Evaluation, Metric, Prediction, SegmentationResult
    from medsight.api.run import Run, load, train
    from medsight.io.read import read_image


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'medsight' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})
