"""Networks by name: ``build_model("resnet18-small", in_channels=1, num_classes=2)``."""

from medsight.models.registry import MODELS, build_model, model_spec

__all__ = ["MODELS", "build_model", "model_spec"]
