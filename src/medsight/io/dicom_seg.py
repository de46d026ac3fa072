"""A segmentation mask as a DICOM SEG over its source series (highdicom), filed under the same study."""

from __future__ import annotations

from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from medsight.io.dicom_results import MANUFACTURER, Algorithm


def segmentation(sources: Sequence[Dataset], mask: np.ndarray, algorithm: Algorithm,
                 segment_labels: Sequence[str] = ("lesion",), series_number: int = 9003) -> hd.seg.Segmentation:
    """A binary DICOM SEG from a label map over ``sources`` (one series, in the mask's slice order).

    ``mask`` is ``(rows, cols)`` for one image or ``(n_sources, rows, cols)``; label ``k``
    (1-based) becomes segment ``k`` named ``segment_labels[k - 1]``, 0 is background. Each
    segment is recorded as a lesion (morphologically abnormal structure) found automatically.
    """
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.shape[0] != len(sources):
        raise ValueError(f"mask has {mask.shape[0]} slice(s) for {len(sources)} source image(s)")
    n_labels = len(segment_labels)
    if mask.min() < 0 or mask.max() > n_labels:
        raise ValueError(f"mask labels must lie in 0..{n_labels} (one per segment label)")
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm.name[:64], family=codes.cid7162.ArtificialIntelligence, version=algorithm.version)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k, segment_label=label[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion, algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm_id)
        for k, label in enumerate(segment_labels, start=1)
    ]
    return hd.seg.Segmentation(
        source_images=list(sources), pixel_array=mask.astype(np.uint8), segmentation_type="BINARY",
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm.name[:64], software_versions=algorithm.version,
        device_serial_number="0", series_description=f"medsight {algorithm.name} segmentation"[:64],
        omit_empty_frames=False,
    )
