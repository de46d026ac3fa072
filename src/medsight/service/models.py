"""The models a service instance serves: loaded once at start-up, looked up by name per request.

Each entry answers ``predict(image, options) -> dict`` (the JSON body of ``POST /v1/predict``)
through the same library function the command line uses. A run's ``plan.json`` says its task
kind (``medsight.tasks``); ``SERVED`` gives each kind its responder and description
(classification: label, probabilities, heatmap; segmentation: mask layer and lesion table;
detection: boxes, scores and class names in the image's pixels). A classifier with a similar-case
index (``medsight serve --index NAME=FOLDER``, or one built into ``RUN/index``) also answers
``?similar=K`` with the K nearest indexed cases.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from monai.data import MetaTensor

from medsight.data.voc import detection_pixels
from medsight.errors import ConfigError
from medsight.inference.detection import LoadedDetector
from medsight.inference.explain import METHODS
from medsight.inference.load import LoadedRun
from medsight.inference.overlay import matching_slice
from medsight.inference.predict import predict_image
from medsight.inference.segment import segment_image
from medsight.inference.similar import SimilarIndex, index_folder, load_index, similar_cases
from medsight.inference.tasks import load_for_inference
from medsight.runtime.ensemble_folder import run_task
from medsight.service.errors import ApiError
from medsight.service.payload import display_image, heatmap_layer, lesion_rows, mask_layer
from medsight.tasks import CLASSIFICATION, DETECTION, SEGMENTATION, TaskKind, require_command, task_named

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOptions:
    heatmap: bool = False
    method: str = "gradcam"
    image: bool = False  # send the image's pixels back, for a viewer
    tta: bool = False  # test-time augmentation (classification)
    clinical: dict[str, str] | None = None  # form fields; a fused model reads its clinical columns from them
    allow_foreign: bool = False  # predict what the input guard refuses (marked out_of_distribution)
    similar: int = 0  # also the K most similar cases of the model's index


@dataclass
class ServedModel:
    """One loaded model. ``predict`` may be called from several worker threads at once.

    ``kind`` is its :class:`~medsight.tasks.TaskKind` (what it may do: ``kind.accepts("pacs run")``);
    ``task`` is the kind's name, as the JSON answers say it. Either may be given as ``task``."""

    name: str
    task: str | TaskKind
    info: dict[str, Any]
    predict: Callable[[MetaTensor, PredictOptions], dict[str, Any]]  # a Responder
    run: LoadedRun | None = None  # the run behind it, for the PACS exchange
    # Grad-CAM hooks the model's layers and switches its memory layout: one inference at a
    # time per model. Reading, encoding and other models still run in parallel.
    lock: threading.Lock = field(default_factory=threading.Lock)
    index: SimilarIndex | None = None  # the similar-case index ?similar=K searches
    kind: TaskKind = field(init=False)

    def __post_init__(self) -> None:
        self.kind = self.task if isinstance(self.task, TaskKind) else task_named(self.task)
        self.task = self.kind.name

    def check_similar(self, k: int) -> None:
        """Refuse ``?similar=K`` (before any work) when this model has no index to search."""
        if k and self.index is None:
            raise ApiError(422, f"model {self.name!r} has no similar-case index; the operator builds one with "
                                "`medsight index RUN DATA --out RUN/index` (or serves it with --index NAME=FOLDER)")


Responder = Callable[[MetaTensor, PredictOptions], dict[str, Any]]


def classification_responder(run: LoadedRun, lock: threading.Lock, index: SimilarIndex | None = None) -> Responder:
    """``predict`` for a classifier: label, probabilities, optional heatmap layer, image pixels and
    the ``options.similar`` nearest cases of ``index``."""
    encoder = run.clinical

    def predict(image: MetaTensor, options: PredictOptions) -> dict[str, Any]:
        clinical = None
        if encoder is not None:
            clinical = options.clinical or {}
            absent = [c for c in encoder.names if c not in clinical]
            if absent:
                raise ApiError(422, f"this model also reads clinical values: send the form field(s) "
                                    f"{', '.join(absent)} with the file (an empty value counts as missing)")
        with lock:
            record, heat, x = predict_image(run, image, options.heatmap, options.method, options.tta, clinical,
                                            options.allow_foreign, "upload")
            if options.similar and index is not None:  # under the lock: embedding hooks the model too
                record["similar"] = similar_cases(run, index, torch.from_numpy(x)[None], options.similar)[0]
        result: dict[str, Any] = {**record, "heatmap": None, "mask": None, "lesions": None}
        original, heat2d = matching_slice(image.detach().cpu().numpy(), heat)
        if heat2d is not None:
            result["heatmap"] = heatmap_layer(heat2d, options.method)
        if options.image:
            result["image"] = display_image(original, record.get("modality"))
        return result

    return predict


def segmentation_responder(run: LoadedRun, lock: threading.Lock) -> Responder:
    """``predict`` for a segmentation model: the mask as a layer (the slice with most foreground
    for a volume), voxels per class, and the lesion table; the same function as `medsight segment`."""

    def predict(image: MetaTensor, options: PredictOptions) -> dict[str, Any]:
        with lock:
            seg = segment_image(run, image)
        labels = seg.labels[0].numpy()
        z = None
        if labels.ndim == 3:  # show the slice with the most foreground
            z = int((labels > 0).reshape(labels.shape[0], -1).sum(1).argmax())
        shown = labels if z is None else labels[z]
        result: dict[str, Any] = {
            "label": None, "label_index": None, "probabilities": None, "heatmap": None,
            "modality": image.meta.get("modality"), "shape": list(image.shape[1:]),
            "voxels_per_class": {n: int((labels == k).sum()) for k, n in enumerate(run.class_names) if k},
            "mask": {**mask_layer(shown, run.class_names[1:]), "slice": z},
            "lesions": [{"class": lesion["class"], **row}
                        for lesion, row in zip(seg.lesions, lesion_rows(seg.lesions))],
        }
        if options.image:
            original = image.detach().cpu().numpy()
            result["image"] = display_image(original if z is None else original[:, z], image.meta.get("modality"))
        return result

    return predict


def detection_responder(run: LoadedDetector, lock: threading.Lock) -> Responder:
    """``predict`` for a box detector: ``boxes`` ``[xmin, ymin, xmax, ymax]`` in the upload's pixels,
    ``scores`` and ``labels`` (class names), as ``medsight predict`` writes them."""

    def predict(image: MetaTensor, options: PredictOptions) -> dict[str, Any]:
        pixels = detection_pixels(image.as_tensor(), "upload")
        with lock:
            found = run.detect([pixels])[0]
        result: dict[str, Any] = {"label": None, "label_index": None, "probabilities": None, "heatmap": None,
                                  "mask": None, "lesions": None, "modality": image.meta.get("modality"),
                                  **run.record(found, pixels.shape[1:])}
        if options.image:
            result["image"] = display_image(pixels.numpy(), image.meta.get("modality"))
        return result

    return predict


def run_info(run: LoadedRun, kind: TaskKind) -> dict[str, Any]:
    """What ``GET /v1/models`` tells a client about a model."""
    return {
        "task": kind.name,
        "class_names": run.class_names,
        "spatial_dims": run.spatial_dims,
        "input_shape": list(run.plan.get("input_shape", [])),
        "in_channels": int(run.plan.get("in_channels", 1)),
        "threshold": run.threshold() if len(run.class_names) == 2 else None,
        "explain_methods": list(METHODS) if kind is CLASSIFICATION else [],
        "model": run.cfg.model.name,
        "image_columns": run.image_columns,  # more than one: cases of several images (not served)
        "clinical": run.clinical.names if run.clinical is not None else [],  # form fields it reads
    }


def detector_info(run: LoadedDetector, kind: TaskKind) -> dict[str, Any]:
    """``GET /v1/models`` for a detector: 2D 8-bit grey or RGB pictures at any size."""
    return {"task": kind.name, "class_names": run.class_names, "spatial_dims": 2, "input_shape": [],
            "in_channels": 3, "threshold": None, "explain_methods": [], "model": run.cfg.model.name,
            "image_columns": run.image_columns, "clinical": []}


@dataclass(frozen=True)
class ServedTask:
    """How the service answers for and describes one task kind's runs (``load_for_inference`` loads them)."""

    responder: Callable[[Any, threading.Lock], Responder]
    info: Callable[[Any, TaskKind], dict[str, Any]]
    pacs: bool = False  # ServedModel.run is the LoadedRun the PACS exchange uses


SERVED: dict[str, ServedTask] = {
    CLASSIFICATION.name: ServedTask(classification_responder, run_info, pacs=True),
    SEGMENTATION.name: ServedTask(segmentation_responder, run_info),
    DETECTION.name: ServedTask(detection_responder, detector_info),
}


def serve_run(run_dir: Path, name: str | None = None, index: Path | None = None) -> ServedModel:
    """Load one run to serve; ``index``: its similar-case index folder (default ``RUN/index`` if built)."""
    kind: TaskKind = run_task(run_dir)
    require_command(kind, "serve", run_dir)
    served = SERVED[kind.name]
    run = load_for_inference(run_dir)
    if len(run.image_columns) > 1:
        raise ConfigError(f"{run_dir}: the model reads {len(run.image_columns)} images per case; the service "
                          "takes one image per request (use `medsight predict RUN --cases cases.csv`)")
    found = served_index(run_dir, run, kind, index)
    lock = threading.Lock()
    responder = served.responder(run, lock, found) if found is not None else served.responder(run, lock)
    info = {**served.info(run, kind), "similar_cases": len(found.cases) if found is not None else 0}
    return ServedModel(name or Path(run_dir).name, kind, info, responder, run if served.pacs else None, lock, found)


def served_index(run_dir: Path, run: Any, kind: TaskKind, folder: Path | None) -> SimilarIndex | None:
    """The run's similar-case index (checked to be built with its model), or None without one."""
    folder = index_folder(run_dir, folder)
    if folder is None:
        return None
    if kind is not CLASSIFICATION or run.members or run.clinical is not None:
        raise ConfigError(f"{run_dir}: similar cases come from one classification run of images alone "
                          f"(not a {kind.name} run, an ensemble or a fused model)")
    return load_index(folder, run)


@dataclass
class ModelRegistry:
    """Served models by name; the first one is the default."""

    models: dict[str, ServedModel] = field(default_factory=dict)

    def add(self, model: ServedModel) -> None:
        if model.name in self.models:
            raise ConfigError(f"two models named {model.name!r}; name them with NAME=RUN_FOLDER")
        self.models[model.name] = model

    def get(self, name: str | None) -> ServedModel:
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise ConfigError(f"choose a model with ?model=NAME (loaded: {', '.join(self.models)})")
        if name not in self.models:
            raise ConfigError(f"no model named {name!r} (loaded: {', '.join(self.models) or 'none'})")
        return self.models[name]

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": m.name, **m.info} for m in self.models.values()]


def named_folder(spec: str | Path) -> tuple[str, Path]:
    """``NAME=FOLDER`` as its parts; a plain ``FOLDER`` (which may itself hold "=") has the name ""."""
    spec = str(spec)
    name, sep, folder = spec.partition("=")
    if not sep or "/" in name or not name:
        return "", Path(spec)
    return name, Path(folder)


def load_registry(specs: Iterable[str | Path], indexes: Iterable[str | Path] = ()) -> ModelRegistry:
    """Load every ``RUN_FOLDER`` or ``NAME=RUN_FOLDER`` once; the name defaults to the folder's.
    ``indexes``: ``NAME=INDEX_FOLDER`` (or ``INDEX_FOLDER`` when one model is served)."""
    runs = [(name or folder.name, folder) for name, folder in map(named_folder, specs)]
    if not runs:
        raise ConfigError("give at least one run folder to serve")
    chosen = index_folders(indexes, [name for name, _ in runs])
    registry = ModelRegistry()
    for name, folder in runs:
        model = serve_run(folder, name, chosen.get(name))
        registry.add(model)
        cases = model.info["similar_cases"]
        log.info("serving model %r (%s, %s)%s", model.name, model.task, model.info["model"],
                 f" with a similar-case index of {cases} cases" if cases else "")
    return registry


def index_folders(specs: Iterable[str | Path], names: list[str]) -> dict[str, Path]:
    """``--index`` options by model name, each naming a served model."""
    found: dict[str, Path] = {}
    for spec in specs:
        name, folder = named_folder(spec)
        if not name and len(names) > 1:
            raise ConfigError(f"--index {spec}: name the model it is for, NAME=FOLDER (serving {', '.join(names)})")
        name = name or names[0]
        if name not in names:
            raise ConfigError(f"--index {spec}: no model named {name!r} (serving {', '.join(names)})")
        found[name] = folder
    return found
