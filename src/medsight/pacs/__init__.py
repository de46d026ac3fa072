"""Exchange with a PACS over DICOMweb: search, pull, diagnose and store results under the study."""

from medsight.utils.extras import require

require("dicomweb_client", extra="pacs", feature="medsight pacs")

from medsight.pacs.client import PacsError, connect, find_series, find_studies, pull_study, store

__all__ = ["PacsError", "connect", "find_series", "find_studies", "pull_study", "store"]
