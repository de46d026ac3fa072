"""Errors a user can act on.

Every problem caused by user input (a corrupt file, an unknown option, a bad config value)
is raised as a :class:`MedsightError`; the CLI prints it as one line and exits with status 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from pathlib import Path


class MedsightError(Exception):
    """A problem with the user's input or configuration, reported as one line."""


class InputFileError(MedsightError):
    """A file that cannot be used: ``InputFileError(path, "truncated DICOM: ...")``.

    The problem is kept to one printable line whatever a library's message held.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = _one_printable_line(problem)
        super().__init__(f"{self.path}: {self.problem}")


class ForeignInputError(InputFileError):
    """An input unlike anything the model was trained on, refused by the input guard
    (``inference/guard.py``): another dimensionality, a colour photograph to a grey model, another
    modality, or an out-of-distribution score beyond the run's refuse threshold."""


class OutputFileError(MedsightError):
    """A file that cannot be written (full disk, read-only or forbidden folder):
    ``OutputFileError(path, "cannot write: No space left on device")``."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(MedsightError):
    """An invalid configuration key or value."""


def _one_printable_line(text: str) -> str:
    return " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", str(text)).split())
