"""A faster start for every medsight process: MONAI without Hugging Face transformers.

``import monai`` loads every network MONAI has, TransChex among them, and TransChex imports
transformers' BERT whenever transformers is installed (it is, for peft's LoRA): about 40% of
the time of ``import monai``, paid by every command, worker and service start. medsight never
builds a TransChex, so while that one module loads, transformers is reported missing; MONAI
then leaves TransChex unusable, as it does where transformers is not installed. Any other
import of transformers (peft's) is untouched.
"""

from __future__ import annotations

import sys

TRANSCHEX = "monai.networks.nets.transchex"


class _NoTransformersForTransChex:
    # a meta path finder needs only find_spec (importlib.abc's base class costs ~40 ms to import)
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "transformers":
            loading = sys.modules.get(TRANSCHEX)
            if loading is not None and getattr(loading.__spec__, "_initializing", False):
                raise ModuleNotFoundError(f"{name}: not loaded for MONAI's TransChex (medsight.utils.startup)")
        return None


def skip_transformers_in_monai() -> None:
    """Install the finder once, ahead of the others (a no-op when MONAI is already imported)."""
    if "monai" not in sys.modules and not any(isinstance(f, _NoTransformersForTransChex) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoTransformersForTransChex())
