"""Errors a user can act on.

Every problem caused by user input (a corrupt file, an unknown option, a bad config value)
is raised as a :class:`MedsightError`; the CLI prints it as one line and exits with status 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class MedsightError(Exception):
    """A problem with the user's input or configuration, reported as one line."""


class InputFileError(MedsightError):
    """A file that cannot be used: ``InputFileError(path, "truncated DICOM: ...")``."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class OutputFileError(MedsightError):
    """A file that cannot be written (full disk, read-only or forbidden folder):
    ``OutputFileError(path, "cannot write: No space left on device")``."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(MedsightError):
    """An invalid configuration key or value."""
