"""Request and response shapes, for validation and the OpenAPI docs at ``/docs``."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
MAX_SIMILAR = 50  # ?similar=K: at most this many neighbours per prediction


class Layer(BaseModel):
    """A transparent RGBA PNG (base64) to draw over the whole image."""

    png: str
    width: int
    height: int
    method: Optional[str] = None
    labels: Optional[dict[str, str]] = None


class Lesion(BaseModel):
    id: int
    centroid_mm: list[float]
    volume_mm3: Optional[float] = None
    area_mm2: Optional[float] = None
    diameter_mm: Optional[float] = None
    probability: Optional[float] = None


class SimilarCase(BaseModel):
    """An indexed case near the image: its key (chosen by the operator, never a patient ID) and label."""

    case: str
    label: str
    distance: float = Field(..., description="Cosine distance of the two images' features: 0 same, 2 opposite")


class DisplayImage(BaseModel):
    """The image's pixels (base64, little endian, row-major, channels interleaved)."""

    width: int
    height: int
    channels: int
    dtype: str
    data: str
    min: float
    max: float
    window: dict[str, float]
    modality: str
    presets: Optional[dict[str, dict[str, float]]] = None


class Prediction(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str
    task: str
    label: Optional[str] = Field(None, description="Predicted class (classification)")
    label_index: Optional[int] = None
    probabilities: Optional[dict[str, float]] = None
    threshold: Optional[float] = None
    uncertainty: Optional[float] = Field(None, description="Predictive entropy / log K, in [0, 1] (classification)")
    needs_review: Optional[bool] = Field(None, description="Uncertainty above the run's review threshold")
    out_of_distribution: Optional[bool] = Field(None, description="The input guard found the image unlike the "
                                                                   "training images (then needs_review is true)")
    ood_score: Optional[float] = Field(None, description="The input guard's out-of-distribution score")
    foreign_override: Optional[str] = Field(None, description="Why the guard would refuse it (allow_foreign=true)")
    ood_note: Optional[str] = Field(None, description="A known reason it looks foreign (flagged, not refused)")
    modality: Optional[str] = None
    shape: list[int]
    heatmap: Optional[Layer] = Field(None, description="With ?heatmap=true")
    mask: Optional[Layer] = Field(None, description="Segmentation models")
    lesions: Optional[list[Lesion]] = Field(None, description="Segmentation models")
    boxes: Optional[list[list[float]]] = Field(None, description="Detection models: [xmin, ymin, xmax, ymax] "
                                                                 "in the image's pixels, best first")
    scores: Optional[list[float]] = Field(None, description="Detection models: each box's score, in [0, 1]")
    labels: Optional[list[str]] = Field(None, description="Detection models: each box's class name")
    image: Optional[DisplayImage] = Field(None, description="With ?image=true")
    similar: Optional[list[SimilarCase]] = Field(None, description="With ?similar=K: the K most similar indexed "
                                                                   "cases, nearest first")
    input: dict
    elapsed_ms: float


class ErrorBody(BaseModel):
    status: int
    error: str
    detail: str


class PacsRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    study_uid: str = Field(..., max_length=64, pattern=UID_PATTERN)
    series_uid: Optional[str] = Field(None, max_length=64, pattern=UID_PATTERN)
    model: Optional[str] = None
    store: bool = True


ERROR_RESPONSES = {status: {"model": ErrorBody, "description": text} for status, text in {
    400: "Bad image (corrupt, truncated, wrong dimensions)",
    401: "Missing or wrong X-API-Key",
    413: "Upload larger than the limit",
    415: "Not multipart, or not an image type medsight reads",
    422: "Bad parameters, missing file, or an image refused by --require-deidentified",
    503: "Busy: retry after the Retry-After header's seconds",
}.items()}
