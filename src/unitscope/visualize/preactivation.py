"""The pre-activation of a rectified layer: Lucid optimises a unit before its ReLU (``mixed4a_pre_relu``), where
the gradient does not vanish for a unit that is off (0) or, for ReLU6, saturated (6) over the whole image."""

from __future__ import annotations

import torch
from torch import nn

from unitscope.hooks import LayerRef, resolve_layers, run_once
from unitscope.saliency.rectifiers import RECTIFIERS

_RECTIFIER_TYPES = tuple(kind for kind, _ in RECTIFIERS)


def _rectifier(module: nn.Module) -> nn.Module | None:
    """The rectifier module whose output is ``module``'s: itself, or the last module of a ``Sequential`` chain."""
    while isinstance(module, nn.Sequential) and len(module):
        module = module[-1]
    return module if isinstance(module, _RECTIFIER_TYPES) else None


def pre_activation_layer(model: nn.Module, layer: str, example: torch.Tensor) -> str | None:
    """The layer whose output ``layer``'s rectifier rectifies (``conv4`` = conv → BN → ReLU: ``conv4.1``;
    EfficientNet-Lite0's ``_swish:1``: ``_bn1``), named with a call index where its module runs several times;
    ``None`` where ``layer`` does not end in a rectifier module or its input comes from no module (a function)."""
    ref = LayerRef.parse(layer)
    rectifier = _rectifier(resolve_layers(model, [layer])[0])
    if rectifier is None:
        return None
    names = {module: name for name, module in model.named_modules() if name and not list(module.children())}
    calls: list[tuple[str, int, torch.Tensor]] = []  # leaf module calls in order: name, call, output
    counts: dict[str, int] = {}
    found: list[tuple[str, int] | None] = []
    layer_calls = {"n": 0}

    def record(module: nn.Module, _inputs, output) -> None:
        name = names[module]
        counts[name] = counts.get(name, 0) + 1
        calls.append((name, counts[name] - 1, output))

    def before(module: nn.Module, inputs) -> None:
        call = layer_calls["n"]
        layer_calls["n"] += 1
        if ref.call is None or ref.call == call:
            producer = next(((n, c) for n, c, out in reversed(calls) if out is inputs[0]), None)
            found.append(producer)

    run_once(model, example, forward=[(module, record) for module in names], pre=[(rectifier, before)])
    if not found or found[0] is None:
        return None
    name, call = found[0]
    return f"{name}:{call}" if counts[name] > 1 else name
