"""``medsight.train`` / ``medsight.load`` and :class:`Run`: the command line's work from Python.

Each method calls the function the matching command calls (``train_run``, ``predict_image``,
``segment_image``, ``LoadedDetector.detect``, ``evaluate_run``); results come back as the
dataclasses of :mod:`medsight.api.results` instead of files.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch
from monai.data import MetaTensor

from medsight.api.results import DetectionResult, Evaluation, Prediction, SegmentationResult
from medsight.config import RunConfig, apply_override, config_from_dict, load_config
from medsight.errors import ConfigError, InputFileError, MedsightError
from medsight.inference.predict import expand_inputs
from medsight.io.validate import as_image
from medsight.tasks import CLASSIFICATION, DETECTION, SEGMENTATION

log = logging.getLogger(__name__)

ImageInput = Union[str, Path, np.ndarray, torch.Tensor, MetaTensor]
Result = Union[Prediction, SegmentationResult, DetectionResult]


def train(config: str | Path | Mapping[str, Any] | RunConfig | None = None, *, data: str | Path | None = None,
          minutes: float | None = None, overrides: Sequence[str] = (), out: str | Path | None = None,
          resume: bool = False, folds: int = 0) -> "Run":
    """Train as ``medsight train`` does and return the loaded :class:`Run`.

    ``data``: a planned default for a data set (``--data``), with a time budget in ``minutes``;
    ``config``: a YAML file, a dict or a ``RunConfig``; ``overrides``: ``"key=value"`` as ``--set``.
    With neither, the defaults and ``overrides`` (``data.dataset=synthetic`` trains on built-in data).
    ``folds``: K cross-validation runs in ``out/fold*`` and their ensemble in ``out``.
    """
    from medsight.training.run import planned_overrides, train_folds, train_run

    items = planned_overrides(data, minutes) + list(overrides)
    if isinstance(config, (RunConfig, Mapping)):
        raw = config.model_dump(mode="json") if isinstance(config, RunConfig) else _deep_copy(config)
        for item in items:
            apply_override(raw, item)
        cfg = config_from_dict(raw)
    else:
        cfg = load_config(config, items)
    from medsight.evaluation.calibrate import fit_on_val

    run_dir = (train_folds(cfg, out, folds, resume=resume, calibrate=fit_on_val) if folds
               else train_run(cfg, out, resume=resume, calibrate=fit_on_val))
    return load(run_dir)


def load(path: str | Path) -> "Run":
    """A trained run folder (classification, segmentation, detection or an ensemble), ready to use."""
    return Run(path)


class Run:
    """A trained model: ``predict`` new images, ``evaluate`` it on a split.

    ``task`` is ``classification`` (also image + clinical fusion and ensembles), ``segmentation``
    or ``detection``; ``class_names``, ``cfg`` (the resolved config) and ``plan`` describe it.
    """

    def __init__(self, path: str | Path):
        from medsight.runtime.ensemble_folder import run_task

        self.path = Path(path)
        self.kind = run_task(self.path)  # medsight.tasks: what this run can do
        self.task = self.kind.name
        from medsight.inference.tasks import load_for_inference

        self._model: Any = load_for_inference(self.path)

    cfg = property(lambda self: self._model.cfg, doc="The run's resolved configuration.")
    plan = property(lambda self: self._model.plan, doc="What training derived from the data (plan.json).")
    class_names = property(lambda self: list(self._model.class_names))

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, task={self.task!r}, classes={self.class_names})"

    # --- predict -----------------------------------------------------------------------

    def predict(self, image: ImageInput | Sequence[ImageInput], *, heatmap: bool = True, method: str = "gradcam",
                tta: bool | None = None, clinical: Mapping[str, str] | None = None,
                allow_foreign: bool = False, similar: int = 0, index: str | Path | None = None
                ) -> Result | list[Result]:
        """Predict one image: a path (DICOM file or series folder, NIfTI, PNG/JPEG, .npz), or an
        array / tensor channel first (a 2D numpy array is one grey channel). A folder of 2D images
        or a list gives a list of results.

        Classification: :class:`Prediction` (``heatmap``/``method``: Grad-CAM or occlusion; ``tta``
        averages test-time views; ``clinical``: the table values of a fused run). Segmentation:
        :class:`SegmentationResult` (``tta``: mirroring, default the run's). Detection:
        :class:`DetectionResult` (image files only). A classifier's input guard raises
        ``ForeignInputError`` for an image unlike its training data, unless ``allow_foreign``.
        ``similar``: a classification also lists the K most similar cases of the ``index`` folder
        (``medsight index``) as ``Prediction.similar``.
        """
        if similar:
            return self._with_similar(self.predict(image, heatmap=heatmap, method=method, tta=tta, clinical=clinical,
                                                   allow_foreign=allow_foreign), similar, index)
        if isinstance(image, (list, tuple)):
            return [r for item in image for r in _as_list(self.predict(item, heatmap=heatmap, method=method,
                                                                            tta=tta, clinical=clinical,
                                                                            allow_foreign=allow_foreign))]
        if isinstance(image, (str, Path)):
            spatial_dims = 2 if self.kind.pictures_only else self._model.spatial_dims
            paths = expand_inputs([Path(image)], spatial_dims)
            results = [self._predict_path(p, heatmap, method, tta, clinical, allow_foreign) for p in paths]
            return results if Path(image).is_dir() and spatial_dims == 2 else results[0]
        if self.kind.pictures_only:
            raise MedsightError("a detection run reads image files (8-bit grey or RGB); give a path")
        image = as_image(image)
        if image.ndim - 1 != self._model.spatial_dims:
            raise InputFileError("array", f"is {image.ndim - 1}D (shape {tuple(image.shape)}, channel first), but the "
                                          f"model is {self._model.spatial_dims}D")
        return self._predict_image(image, "array", heatmap, method, tta, clinical, allow_foreign)

    def _with_similar(self, results: Result | list[Result], k: int, index: str | Path | None
                      ) -> Result | list[Result]:
        from medsight.inference.similar import open_index, similar_cases

        if self.kind is not CLASSIFICATION or self._model.members:
            raise MedsightError(f"{self.path}: similar cases come from one classification run, not a {self.task} run")
        found = open_index(self._model, k, Path(index) if index is not None else None)
        for r in _as_list(results):
            r.similar = r.record["similar"] = similar_cases(self._model, found, torch.from_numpy(r.image)[None], k)[0]
        return results

    def _predict_path(self, path: Path, heatmap: bool, method: str, tta: bool | None,
                      clinical: Mapping[str, str] | None, allow_foreign: bool = False) -> Result:
        if self.kind is DETECTION:
            return self._detect(path)
        from medsight.io.read import read_image

        return self._predict_image(read_image(path), str(path), heatmap, method, tta, clinical, allow_foreign)

    def _predict_image(self, image: MetaTensor, source: str, heatmap: bool, method: str, tta: bool | None,
                       clinical: Mapping[str, str] | None, allow_foreign: bool = False) -> Result:
        if self.kind is SEGMENTATION:
            from medsight.inference.segment import segment_image

            seg = segment_image(self._model, image, tta)
            mask = seg.labels[0].numpy().astype(np.uint8)
            counts = {name: int((mask == k).sum()) for k, name in enumerate(self.class_names) if k > 0}
            return SegmentationResult(mask, seg.labels.affine.detach().cpu().numpy(), self.class_names, seg.lesions,
                                      counts, source, seg.probabilities.numpy(), image.detach().cpu().numpy())
        from medsight.inference.predict import predict_image

        record, heat, x = predict_image(self._model, image, heatmap, method, bool(tta), clinical, allow_foreign,
                                        source)
        record["input"] = source
        return Prediction(record["label"], record["probabilities"], record["uncertainty"], record["needs_review"],
                          record["threshold"], source, heat, x, record)

    def _detect(self, path: Path) -> DetectionResult:
        from medsight.inference.detection import read_picture

        pixels = read_picture(path)
        found = self._model.detect([pixels])[0]
        names = self.class_names
        return DetectionResult(found["boxes"].numpy(), found["scores"].numpy(),
                               [names[int(i)] for i in found["labels"]], str(path), pixels.numpy())

    # --- evaluate ----------------------------------------------------------------------

    def evaluate(self, split: str = "test", *, data: str | Path | None = None, tta: bool = False,
                 threshold: float | None = None, target_sensitivity: float | None = None,
                 write: bool = False, out: str | Path | None = None) -> Evaluation:
        """Metrics with 95% bootstrap CIs on ``split`` (or on another data source ``data``), as
        ``medsight evaluate`` computes them. Writes nothing unless ``write=True``: then
        ``metrics.json``, the per-case CSV and ``report.html`` go to ``out`` (default: the run
        folder), and a threshold chosen for ``target_sensitivity`` becomes the run's decision."""
        from medsight.evaluation.evaluate import evaluate_run

        if out is not None and not write:
            raise ConfigError("out= is where evaluate writes; pass write=True with it")
        kwargs = dict(split=split, data=Path(data) if data is not None else None, tta=tta, threshold=threshold,
                      target_sensitivity=target_sensitivity)
        if write:
            target = Path(out) if out is not None else self.path
            return Evaluation.from_metrics(evaluate_run(self.path, out_dir=target, **kwargs), self.task, str(target))
        with tempfile.TemporaryDirectory(prefix="medsight-evaluate-") as scratch:  # the files are dropped
            raw = evaluate_run(self.path, out_dir=Path(scratch), save_decision=False, **kwargs)
        return Evaluation.from_metrics(raw, self.task)


def _as_list(result: Result | list[Result]) -> list[Result]:
    return result if isinstance(result, list) else [result]


def _deep_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
