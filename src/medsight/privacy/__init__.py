"""De-identification of DICOM data (PS3.15 Annex E) and the check that input is de-identified.

``medsight deid`` is :func:`medsight.privacy.deid.deidentify_tree`; the profile table lives in
:mod:`medsight.privacy.profile`, and loaders call :func:`medsight.privacy.check.require_deidentified`.
"""

from medsight.privacy.check import is_deidentified, require_deidentified

__all__ = ["is_deidentified", "require_deidentified"]
