"""Write a 2D CT slice in HU as a standard CT Image Storage DICOM file (for demos and tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medsight.utils.atomic import atomic_path

INTERCEPT = -1024.0


def write_ct_slice(hu: np.ndarray, path: str | Path, spacing: tuple[float, float] = (1.0, 1.0),
                   *, study_uid: str | None = None, series_uid: str | None = None,
                   patient_id: str = "SYNTHETIC", instance: int = 1) -> Path:
    """Store ``hu`` (rows, cols) as 12-bit unsigned pixels with RescaleIntercept -1024."""
    stored = np.clip(np.rint(np.asarray(hu, dtype=np.float64) - INTERCEPT), 0, 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "CT", "SYNTHETIC^PHANTOM", patient_id
    ds.PatientIdentityRemoved = "YES"  # synthetic: there is no patient
    # Type 2 attributes of the patient, study and series modules: present, possibly empty, so
    # objects derived from this image (DICOM SEG, SR) can copy them
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "000000", "1", ""
    ds.ReferringPhysicianName, ds.SeriesNumber, ds.FrameOfReferenceUID = "", 1, generate_uid()
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, float(instance)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = INTERCEPT, 1.0, "HU"
    ds.PixelData = stored.tobytes()
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)
