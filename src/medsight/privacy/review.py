"""Which images may hold identifying text in their pixels, which no header rule can remove.

De-identification leaves pixel data untouched, so images likely to carry burned-in text
(names, IDs and dates drawn into the picture) are listed for a person to review instead of
being passed silently. The reasons name the header evidence only, never patient data.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

# Modalities where burned-in text is common: ultrasound, captures and photographs, endoscopy,
# microscopy (slide labels) and "other".
RISKY_MODALITIES = frozenset({"US", "SC", "XC", "OT", "ES", "GM", "SM", "DOC"})

# Captured and photographic SOP classes (PS3.4 B.5): screenshots and photos of paper.
CAPTURE_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.2",  # VL Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.3",  # VL Slide-Coordinates Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.1",  # Ophthalmic Photography 8 Bit Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.2",  # Ophthalmic Photography 16 Bit Image
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
})
_PIXELS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData", "EncapsulatedDocument")


def burned_in_reasons(ds: Dataset) -> list[str]:
    """Why ``ds`` should be reviewed for text in its pixels (empty when there is no reason)."""
    if not any(keyword in ds for keyword in _PIXELS):
        return []
    reasons = []
    if _upper(ds.get("BurnedInAnnotation")) == "YES":
        reasons.append("BurnedInAnnotation is YES")
    modality = _upper(ds.get("Modality"))
    if modality in RISKY_MODALITIES:
        reasons.append(f"modality {modality} often carries burned-in text")
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class in CAPTURE_CLASSES:
        reasons.append(f"{sop_class_name(sop_class)} often shows burned-in text")
    if _upper(ds.get("RecognizableVisualFeatures")) == "YES":
        reasons.append("RecognizableVisualFeatures is YES (e.g. a face)")
    return reasons


def review_entry(ds: Dataset, file: str) -> dict[str, Any] | None:
    """The review-list entry for ``ds`` written to ``file``, or None if it needs no review."""
    reasons = burned_in_reasons(ds)
    if not reasons:
        return None
    sop_class = str(ds.get("SOPClassUID", "") or "")
    return {"file": file, "sop_class": sop_class_name(sop_class) if sop_class else "",
            "modality": _upper(ds.get("Modality")), "reasons": reasons}


def sop_class_name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else uid


def _upper(value: Any) -> str:
    return "" if value is None else str(value).strip().upper()
