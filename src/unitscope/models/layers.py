"""List every layer of a model with its output shape (``unitscope layers``)."""

from __future__ import annotations

import torch
from torch import nn


def layer_shapes(module: nn.Module, image_size: tuple[int, int] = (224, 224)) -> list[tuple[str, tuple[int, ...]]]:
    """Every layer's output shape for one image, in ``named_modules`` order.

    One forward pass of a zero image on the module's device. A module called several times in the pass is
    listed once per call, as ``name:0``, ``name:1``, ... (the names :class:`unitscope.hooks.Trace` takes);
    submodules whose output is not a tensor are left out.
    """
    shapes: dict[str, list[tuple[int, ...] | None]] = {}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None
            shapes.setdefault(name, []).append(shape)

        return hook

    named = [(name, sub) for name, sub in module.named_modules() if name]
    handles = [sub.register_forward_hook(record(name)) for name, sub in named]
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    was_training = module.training
    try:
        module.eval()
        with torch.inference_mode():
            module(torch.zeros(1, 3, *image_size, device=device))
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    listed = []
    for name, _ in named:
        calls = shapes.get(name, [])
        for call, shape in enumerate(calls):
            if shape is not None:
                listed.append((name if len(calls) == 1 else f"{name}:{call}", shape))
    return listed
