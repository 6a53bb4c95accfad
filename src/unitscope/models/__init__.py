"""Models to dissect: spec registry, layer lookup, input normalisation, and the pipeline's ProbeCNN.

``load_model(spec)`` resolves a model spec (``docs/cli.md``); the modules registering the torchvision,
Places365, EfficientNet-Lite0 and ProbeCNN models are imported when a spec first needs them.
"""

from __future__ import annotations

from unitscope.hooks import LayerError, resolve_layers
from unitscope.models.layers import layer_shapes
from unitscope.models.normalize import normalizer
from unitscope.settings import NORMALIZATIONS
from unitscope.models.registry import (
    SPEC_FORMS,
    LoadedModel,
    ModelSpecError,
    list_models,
    load_model,
    register_family,
    register_model,
)

__all__ = [
    "NORMALIZATIONS",
    "SPEC_FORMS",
    "LayerError",
    "LoadedModel",
    "ModelSpecError",
    "layer_shapes",
    "list_models",
    "load_model",
    "normalizer",
    "register_family",
    "register_model",
    "resolve_layers",
]
