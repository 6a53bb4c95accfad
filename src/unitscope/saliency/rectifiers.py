"""The backward rules of Guided Backprop and DeconvNet on every rectifier call of a model.

Guided Backpropagation (Springenberg et al. 2015) passes a gradient back through a rectifier only where the forward
input was in its linear range *and* the gradient is positive; DeconvNet (Zeiler & Fergus 2014) passes the positive
part of the gradient whatever the forward input. captum changes only ``nn.ReLU`` modules, so a model with
``nn.ReLU6`` (EfficientNet-Lite0) or one that calls a rectifier module twice per forward pass would silently give
a plain gradient there. :func:`rectifier_rule` gives the rule to every call of every ``nn.ReLU``/``nn.ReLU6``
module (in-place ones included), and refuses a model that also rectifies with functions (``F.relu``), whose calls
no module hook reaches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

Rule = Literal["guided", "deconv"]
#: The rectifier modules whose calls get the rule: (class, the upper end of the linear range or None).
RECTIFIERS: tuple[tuple[type[nn.Module], float | None], ...] = ((nn.ReLU6, 6.0), (nn.ReLU, None))
#: Functions that rectify; a call outside a rectifier module's forward pass cannot be given the rule.
RECTIFYING_FUNCTIONS = frozenset({torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
                                  torch.nn.functional.relu, torch.nn.functional.relu6})


class RectifierError(ValueError):
    """A model whose rectifiers the guided or deconv rule cannot reach."""


class _RuleFunction(torch.autograd.Function):
    """Identity on the rectifier's output whose backward sends the rule's gradient to the rectifier's input."""

    @staticmethod
    def forward(ctx, before: torch.Tensor, output: torch.Tensor, rule: str, upper: float | None) -> torch.Tensor:
        linear = output > 0
        if upper is not None:
            linear &= output < upper
        ctx.save_for_backward(linear)
        ctx.rule = rule
        return output.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (linear,) = ctx.saved_tensors
        positive = grad.clamp(min=0)
        return (positive * linear if ctx.rule == "guided" else positive), None, None, None


def _rectifiers(model: nn.Module) -> list[tuple[nn.Module, float | None]]:
    """The model's rectifier modules, each with the upper end of its linear range (None: unbounded)."""
    found = []
    for module in model.modules():
        upper = next((top for kind, top in RECTIFIERS if isinstance(module, kind)), False)
        if upper is not False:
            found.append((module, upper))
    return found


@contextlib.contextmanager
def _hooked(rectifiers: list[tuple[nn.Module, float | None]], before, after) -> Iterator[None]:
    """``before(module, inputs)`` and ``after(module, inputs, output, upper)`` around every call of the rectifiers,
    removed on leaving the block (also when it raises)."""
    handles = []
    try:
        for module, upper in rectifiers:
            handles.append(module.register_forward_pre_hook(before))
            handles.append(module.register_forward_hook(
                lambda module, inputs, output, upper=upper: after(module, inputs, output, upper)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def rectifier_rule(model: nn.Module, rule: Rule) -> Iterator[int]:
    """Within the block, every call of the model's rectifier modules back-propagates by ``rule``; yields how many
    rectifier modules the model has. Raises :class:`RectifierError` when it has none."""
    if rule not in ("guided", "deconv"):
        raise ValueError(f"unknown rectifier rule {rule!r}; expected 'guided' or 'deconv'")
    rectifiers = _rectifiers(model)
    if not rectifiers:
        raise RectifierError(f"{type(model).__name__} has no nn.ReLU or nn.ReLU6 module: the {rule} rule cannot "
                             "reach its rectifiers; build it with rectifier modules")
    inputs_before: dict[nn.Module, torch.Tensor] = {}

    def keep_input(module, inputs):
        inputs_before[module] = inputs[0].clone()  # the in-place rectifiers overwrite their input

    def apply_rule(module, _inputs, output, upper):
        before = inputs_before.pop(module)
        return _RuleFunction.apply(before, output, rule, upper) if torch.is_grad_enabled() else output

    with _hooked(rectifiers, keep_input, apply_rule):
        yield len(rectifiers)


class _FunctionalRectifiers(TorchFunctionMode):
    """Counts rectifying function calls made outside a rectifier module's forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.outside: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in RECTIFYING_FUNCTIONS and self.depth == 0:
            self.outside.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def check_rectifiers(model: nn.Module, example: torch.Tensor) -> int:
    """Run ``model`` on ``example`` and count its rectifier module calls; raise :class:`RectifierError` naming the
    functional rectifier calls (``F.relu``) the guided and deconv rules would silently miss."""
    mode = _FunctionalRectifiers()
    calls = 0

    def enter(_module, _inputs):
        nonlocal calls
        calls += 1
        mode.depth += 1

    def leave(_module, _inputs, _output, _upper):
        mode.depth -= 1

    with _hooked(_rectifiers(model), enter, leave), torch.no_grad(), mode:
        model(example)
    if mode.outside:
        names = ", ".join(sorted(set(mode.outside)))
        raise RectifierError(f"{type(model).__name__} rectifies with functions ({names}, {len(mode.outside)} calls per "
                             "forward pass) outside nn.ReLU/nn.ReLU6 modules: guided backprop and DeconvNet cannot "
                             "change their backward pass; use rectifier modules")
    if not calls:
        raise RectifierError(f"{type(model).__name__} calls no nn.ReLU or nn.ReLU6 module: nothing for the guided or "
                             "deconv rule to change")
    return calls
