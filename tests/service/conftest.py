"""Service fixtures: the trained run served once, clients with chosen settings, input files."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medsight.data.synthetic import synthetic_sample
from medsight.inference.similar import build_index
from medsight.io.write import write_nifti
from medsight.service.app import create_app
from medsight.service.models import ModelRegistry, PredictOptions, ServedModel, load_registry
from medsight.service.payload import display_image, lesion_rows, mask_layer
from medsight.service.settings import ServiceSettings
from tests.inference.files import nodule_index, write_slice_files

KEY = "test-key-0123456789"
AUTH = {"X-API-Key": KEY}
INDEXED_CASES = 10


@pytest.fixture(scope="session")
def served(trained_run) -> ModelRegistry:
    """The trained classifier, loaded once (as the service does at start-up)."""
    return load_registry([f"nodules={trained_run}"])


@pytest.fixture(scope="session")
def similar_index(trained_run, tmp_path_factory) -> tuple[Path, str]:
    """A similar-case index of the trained classifier over 10 synthetic slices in class folders (the
    slice ``slice_files`` holds among them): the index folder and that slice's case key."""
    root = tmp_path_factory.mktemp("similar")
    first = nodule_index()
    for k in range(first, first + INDEXED_CASES):
        sample = synthetic_sample(0, "test", k)
        folder = root / "archive" / ("nodule" if int(sample["label"]) == 1 else "clear")
        folder.mkdir(parents=True, exist_ok=True)
        write_nifti(sample["image"], folder / f"case-{k:04d}.nii.gz")
    build_index(trained_run, root / "archive", root / "index")
    return root / "index", f"case-{first:04d}"


@pytest.fixture(scope="session")
def slice_files(tmp_path_factory) -> dict[str, Path]:
    return write_slice_files(tmp_path_factory.mktemp("service-inputs"))


@contextmanager
def client_for(registry: ModelRegistry, **settings) -> Iterator[TestClient]:
    settings.setdefault("api_key", KEY)
    app = create_app(registry, ServiceSettings(**settings))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture()
def client(served) -> Iterator[TestClient]:
    with client_for(served) as c:
        yield c


def fake_lesion_model(name: str = "lesions") -> ServedModel:
    """A registry entry shaped like a segmentation model: two square 'lesions' on any 2D image.

    It stands in for the segmentation function the lead engineer wires in; the JSON it
    returns is built by the service's own payload helpers, so the viewer is tested on the
    exact shape production sends.
    """

    def predict(image, options: PredictOptions) -> dict:
        array = image.numpy()
        h, w = array.shape[1:]
        labels = np.zeros((h, w), np.uint8)
        boxes = [(h // 4, w // 4, max(2, h // 8)), (h // 2, w // 2 + w // 8, max(2, h // 10))]
        lesions = []
        for k, (y, x, r) in enumerate(boxes, start=1):
            labels[y:y + r, x:x + r] = 1
            lesions.append({"centroid_mm": [y + r / 2, x + r / 2], "area_mm2": float(r * r),
                            "diameter_mm": float(r), "probability": 0.9 - 0.1 * k})
        result = {"label": "lesion", "label_index": 1, "probabilities": {"background": 0.2, "lesion": 0.8},
                  "threshold": None, "modality": image.meta.get("modality"), "shape": [h, w],
                  "heatmap": None, "mask": mask_layer(labels), "lesions": lesion_rows(lesions)}
        if options.image:
            result["image"] = display_image(array, image.meta.get("modality"))
        return result

    info = {"task": "segmentation", "class_names": ["background", "lesion"], "spatial_dims": 2,
            "input_shape": [64, 64], "in_channels": 1, "threshold": None, "explain_methods": [], "model": "fake"}
    return ServedModel(name, "segmentation", info, predict)
