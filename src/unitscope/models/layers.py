"""List every layer of a model with its output shape and its last operation (``unitscope layers``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import nn

#: Per-unit nonlinearities (elementwise activations, max-pooling within a channel): a layer whose last operation
#: is one of these is post-activation, so its units form a privileged basis (spec §3); one that ends in a linear
#: operation (a convolution, a batch norm, a residual sum of them) has no preferred basis, and its units are not
#: expected to align with concepts.
NONLINEARITIES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.Tanhshrink,
    nn.Threshold, nn.LogSigmoid, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d,
)


@dataclass(frozen=True)
class LayerInfo:
    """One layer (one call of a module): its name (``NAME`` or ``NAME:N``), output shape for one image, the
    type of the last torch.nn operation that ran within it (itself, for an operation), and whether that is a
    nonlinearity."""

    name: str
    shape: tuple[int, ...]
    last_operation: str
    nonlinear: bool


def layer_info(module: nn.Module, image_size: tuple[int, int] = (224, 224)) -> list[LayerInfo]:
    """Every layer of ``module`` in ``named_modules`` order, from one forward pass of a zero image.

    A module called several times in the pass is listed once per call, as ``name:0``, ``name:1``, ... (the
    names :class:`unitscope.hooks.Trace` takes); submodules whose output is not a tensor are left out.
    """
    calls: dict[str, list[dict]] = {}
    operations: list[nn.Module] = []  # torch.nn operations in the order they finished

    def start(name: str):
        def hook(_module: nn.Module, _inputs: object) -> None:
            calls.setdefault(name, []).append({"first": len(operations)})

        return hook

    def finish(name: str, operation: bool):
        def hook(sub: nn.Module, _inputs: object, output: object) -> None:
            call = calls[name][-1]
            call["shape"] = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None
            ran = operations[call["first"]:]
            call["last"] = sub if operation or not ran else ran[-1]
            if operation:
                operations.append(sub)

        return hook

    named = [(name, sub) for name, sub in module.named_modules() if name]
    handles = []
    for name, sub in named:
        handles.append(sub.register_forward_pre_hook(start(name)))
        handles.append(sub.register_forward_hook(finish(name, _is_operation(sub))))
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
        runs = calls.get(name, [])
        for index, call in enumerate(runs):
            if call.get("shape") is not None:
                last = call["last"]
                listed.append(LayerInfo(name if len(runs) == 1 else f"{name}:{index}", call["shape"],
                                        type(last).__name__, isinstance(last, NONLINEARITIES)))
    return listed


def _is_operation(module: nn.Module) -> bool:
    """An instance of a torch.nn operation (a convolution, a norm, an activation; subclasses included), not a
    container or a model's own block."""
    return any(cls.__module__.startswith("torch.nn.modules.") and cls not in _CONTAINERS
               for cls in type(module).__mro__)


_CONTAINERS = (nn.Module, nn.Sequential, nn.ModuleList, nn.ModuleDict)


def layer_shapes(module: nn.Module, image_size: tuple[int, int] = (224, 224)) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, output shape)`` of every layer (:func:`layer_info`)."""
    return [(info.name, info.shape) for info in layer_info(module, image_size)]


def warn_linear_layers(module: nn.Module, layers: list[str], image_size: tuple[int, int]) -> list[str]:
    """Print a warning for each of ``layers`` whose last operation is linear (no preferred basis); return them.

    Dissecting such a layer is allowed: the warning says what its counts mean (docs/models.md).
    """
    infos = {info.name: info for info in layer_info(module, image_size)}
    linear = [name for name in layers if name in infos and not infos[name].nonlinear]
    for name in linear:
        print(f"unitscope: warning: layer {name} ends in {infos[name].last_operation}, a linear operation: its "
              "units have no preferred basis (any rotation of them is as good), so their alignment with concepts "
              "means little; dissect a post-activation layer (marked * by `unitscope layers`) to measure it",
              file=sys.stderr)
    return linear
