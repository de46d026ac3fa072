"""Plans: settings chosen from a fingerprint of the training data, in the spirit of nnU-Net.

A config key left empty (``null``) is the planner's to choose. The chosen values are saved in
``plan.json`` under ``"planned"`` as dotted keys (``"segmentation.patch_size": [40, 56, 40]``)
and applied with :func:`apply_plan` wherever the run is used (training, inference, the
service), so ``config.yaml`` keeps what the user asked for and ``plan.json`` what was derived.
Any planned value can be overridden by setting the key in the config.
"""

from medsight.planning.apply import apply_plan, get_key, open_keys

__all__ = ["apply_plan", "get_key", "open_keys"]
