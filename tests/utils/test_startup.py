"""MONAI loads without Hugging Face transformers under medsight, and transformers still loads
for everything else (peft's LoRA)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

CHECK = """
import sys
import medsight
import monai.networks.nets as nets
print("transformers" in sys.modules, hasattr(nets, "DynUNet"), "torch" in sys.modules)
"""


def _run(code: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers is not installed")
def test_monai_loads_without_transformers_which_still_loads_afterwards():
    assert _run(CHECK) == ["False", "True", "True"]
    later = CHECK + "from transformers.models.bert.modeling_bert import BertLayer\nprint(BertLayer.__name__)"
    assert _run(later)[-1] == "BertLayer"


def test_import_medsight_alone_loads_neither_monai_nor_torch():
    assert _run("import sys, medsight; print('monai' in sys.modules, 'torch' in sys.modules)") == ["False", "False"]
