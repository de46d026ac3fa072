"""Optional extras: one check, one line naming the extra to install.

The base install trains, evaluates and predicts; the REST service, the PACS exchange and ONNX
export need ``pip install 'medsight[service]'``, ``'medsight[pacs]'`` or ``'medsight[onnx]'``.
Call :func:`require` before importing such a library, so a missing one ends in one clear line
(exit status 2 from the command line) instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib

from medsight.errors import MedsightError


class MissingExtraError(MedsightError):
    """An optional dependency of a feature is not installed."""

    def __init__(self, feature: str, extra: str, module: str):
        self.feature, self.extra, self.module = feature, extra, module
        super().__init__(f"{feature} needs the {extra} extra: pip install 'medsight[{extra}]' "
                         f"({module} is not installed)")


def require(*modules: str, extra: str, feature: str | None = None) -> None:
    """Import ``modules`` or raise :class:`MissingExtraError` naming ``extra``."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtraError(feature or f"this part of medsight ({module})", extra, module) from None


def available(module: str) -> bool:
    """Whether an optional module can be imported."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
