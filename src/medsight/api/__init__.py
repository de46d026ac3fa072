"""The Python API (``import medsight``): train, load, predict and evaluate from a notebook.

See docs/api.md. ``medsight`` itself re-exports these names lazily, so importing it stays fast.
"""

from medsight.api.results import DetectionResult, Evaluation, Metric, Prediction, SegmentationResult
from medsight.api.run import Run, load, train

__all__ = ["DetectionResult", "Evaluation", "Metric", "Prediction", "Run", "SegmentationResult", "load", "train"]
