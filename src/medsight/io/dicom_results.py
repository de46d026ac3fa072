"""Model results as DICOM objects that file under the source study, built with highdicom.

- :func:`classification_sr`: a Comprehensive SR (TID 1500 Measurement Report) holding the
  finding (the predicted class) and each class's probability, referencing the source image.
- :func:`secondary_capture`: an RGB Secondary Capture (e.g. the image with its heatmap), so
  any PACS viewer can show what the model looked at.
- :func:`medsight.io.dicom_seg.segmentation` (beside this module): a DICOM SEG for masks.

Every object gets new UIDs (or, given a ``uid_seed``, UIDs derived from it, so that redoing the
same job gives the same objects and a PACS overwrites rather than duplicates them) and copies the source's patient and study attributes (highdicom
does this from the reference datasets), so the PACS files it under the same study.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import medsight

MANUFACTURER = "medsight"
# Class names are the model's own vocabulary: a private coding scheme says so honestly.
PRIVATE_SCHEME = "99MEDSIGHT"


def result_uid(seed: str | None, role: str) -> str:
    """A new UID, or (with ``seed``) the UID hashed from ``seed`` and ``role``: same inputs, same UID."""
    return generate_uid() if seed is None else generate_uid(entropy_srcs=[seed, role])


@dataclass(frozen=True)
class Algorithm:
    """Which model made a result: recorded in every object medsight writes."""

    name: str
    version: str = medsight.__version__


@dataclass(frozen=True)
class ClassificationFinding:
    """A classifier's answer for one image (or the most suspicious slice of a series)."""

    label: str
    probabilities: Mapping[str, float]


def class_code(name: str, names: Sequence[str]) -> hd.sr.CodedConcept:
    """A coded concept for one of a model's classes (private scheme; value from its index)."""
    return hd.sr.CodedConcept(value=f"C{list(names).index(name)}", scheme_designator=PRIVATE_SCHEME,
                              meaning=name[:64])


def classification_sr(sources: Sequence[Dataset], finding: ClassificationFinding, algorithm: Algorithm,
                      referenced: Dataset | None = None, series_number: int = 9001,
                      uid_seed: str | None = None) -> hd.sr.ComprehensiveSR:
    """A Comprehensive SR with the finding and class probabilities for ``sources`` (one study).

    ``referenced`` is the image the finding was made on (default: the first source); all
    ``sources`` are recorded as evidence. ``uid_seed``: see :func:`result_uid`.
    """
    referenced = referenced if referenced is not None else sources[0]
    names = list(finding.probabilities)
    algorithm_id = hd.sr.AlgorithmIdentification(name=algorithm.name[:64], version=algorithm.version)
    measurements = [
        hd.sr.Measurement(name=hd.sr.CodedConcept(value=f"P{i}", scheme_designator=PRIVATE_SCHEME,
                                                  meaning=f"Probability of {name}"[:64]),
                          value=float(finding.probabilities[name]), unit=codes.UCUM.NoUnits,
                          algorithm_id=algorithm_id)
        for i, name in enumerate(names)
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=result_uid(uid_seed, "sr-tracking"), identifier="medsight finding"),
        algorithm_id=algorithm_id,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=codes.DCM.Finding,
                                                             value=class_code(finding.label, names))],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(referenced)],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=result_uid(uid_seed, "sr-observer"), name=algorithm.name[:64], manufacturer_name=MANUFACTURER),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=[group],
    )
    return hd.sr.ComprehensiveSR(
        evidence=list(sources), content=report[0], series_instance_uid=result_uid(uid_seed, "sr-series"),
        series_number=series_number, sop_instance_uid=result_uid(uid_seed, "sr-instance"), instance_number=1,
        manufacturer=MANUFACTURER, series_description=f"medsight {algorithm.name}"[:64],
    )


def secondary_capture(source: Dataset, rgb: np.ndarray, algorithm: Algorithm, description: str = "heatmap",
                      series_number: int = 9002, uid_seed: str | None = None) -> hd.sc.SCImage:
    """An RGB Secondary Capture of ``rgb`` (rows, cols, 3; uint8 or floats in [0, 1]) under ``source``'s study."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected (rows, cols, 3), got {rgb.shape}")
    spacing = source.get("PixelSpacing")
    return hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=rgb, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=result_uid(uid_seed, f"sc-series-{description}"),
        series_number=series_number, sop_instance_uid=result_uid(uid_seed, f"sc-instance-{description}"),
        instance_number=1, manufacturer=MANUFACTURER,
        pixel_spacing=tuple(float(v) for v in spacing) if spacing and rgb.shape[:2] == (source.Rows, source.Columns)
        else None,
        series_description=f"medsight {algorithm.name} {description}"[:64],
        patient_orientation=patient_orientation(source),
    )


def patient_orientation(source: Dataset) -> tuple[str, str]:
    """Patient Orientation (row, column directions) from ImageOrientationPatient, nearest axis.

    Without orientation an axial image is assumed (rows run to the patient's left, columns
    to the back), the usual layout of a CT slice.
    """
    cosines = source.get("ImageOrientationPatient")
    if not cosines or len(cosines) != 6:
        return "L", "P"
    letters = []
    for vector in (np.asarray(cosines[:3], float), np.asarray(cosines[3:], float)):
        axis = int(np.abs(vector).argmax())
        letters.append(("L", "P", "H")[axis] if vector[axis] > 0 else ("R", "A", "F")[axis])
    return letters[0], letters[1]
