"""``import medsight`` is fast: the API's names load on first use, and torch only then."""

from __future__ import annotations

import subprocess
import sys

import pytest

import medsight


def test_import_loads_no_torch_and_names_resolve_lazily():
    code = ("import sys, medsight\n"
            "heavy = [m for m in ('torch', 'monai', 'numpy', 'medsight.api') if m in sys.modules]\n"
            "print(heavy, sorted(n for n in medsight.__all__ if n in vars(medsight)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] ['__version__']"


def test_flat_namespace():
    from medsight.api.run import Run, load, train
    from medsight.io.read import read_image

    assert (medsight.train, medsight.load, medsight.Run, medsight.read_image) == (train, load, Run, read_image)
    for name in ("Prediction", "SegmentationResult", "DetectionResult", "Evaluation", "Metric"):
        assert getattr(medsight, name).__module__ == "medsight.api.results"
    assert set(medsight.__all__) <= set(dir(medsight))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        medsight.nope  # noqa: B018
