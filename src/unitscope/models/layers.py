"""Find layers by dotted name and list every layer's output shape."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import nn


class LayerError(ValueError):
    """A layer name that the model does not have, or whose output cannot be dissected."""


def resolve_layers(module: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """The submodules with the given dotted names (``layer4``, ``features.10``), in order."""
    modules = dict(module.named_modules())
    found = []
    for name in names:
        if not name or name not in modules:
            candidates = [n for n in modules if n]
            close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise LayerError(
                f"model {type(module).__name__} has no layer {name!r}.{hint} "
                "List the layers with `unitscope layers SPEC`."
            )
        found.append(modules[name])
    return found


def layer_shapes(module: nn.Module, image_size: tuple[int, int] = (224, 224)) -> list[tuple[str, tuple[int, ...]]]:
    """Every named submodule's output shape for one image, in ``named_modules`` order.

    One forward pass of a zero image on the module's device. Submodules whose output is not a tensor
    are left out; a submodule called several times reports its last call (as extraction keeps it).
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape[1:])

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
    return [(name, shapes[name]) for name, _ in named if name in shapes]
