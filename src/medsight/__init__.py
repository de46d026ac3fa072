"""medsight: deep-learning medical image analysis, from clinical images to explained diagnoses."""

__version__ = "0.1.0"
