"""Forward hooks on named layers, shared by every analysis: retain, edit, stop early; always removed.

A *layer* is a dotted module name (``layer4``, ``_blocks.10._swish``), optionally with the index of one call
of that module in a forward pass: a module called more than once per forward (EfficientNet-Lite's blocks
call one ``nn.ReLU6`` after the expansion and again after the depthwise convolution) is two layers,
``_blocks.10._swish:0`` and ``_blocks.10._swish:1``, and a bare name for it is an error, never silently one
of the calls. ::

    with Trace(model, ["layer3", "layer4"], stop=True) as trace:
        outputs = trace(images)                 # {"layer3": tensor, "layer4": tensor}, forward cut after layer4
    with Trace(model, ["layer4"], edits={"layer4": ablate([3, 7])}) as trace:
        logits = model(images)                  # the rest of the network sees units 3 and 7 zeroed

Hooks are registered on entering the ``with`` block and removed on leaving it, also when the block raises.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

Edit = Callable[[torch.Tensor], torch.Tensor]


class LayerError(ValueError):
    """A layer name that the model does not have, or whose output cannot be used; the message says what to do."""


@dataclass(frozen=True)
class LayerRef:
    """A layer: a module's dotted name and, for a module called several times per forward, which call."""

    module: str
    call: int | None = None

    @classmethod
    def parse(cls, text: str) -> LayerRef:
        """``name`` or ``name:N`` (N ≥ 0, the N-th call of the module in one forward pass)."""
        module, sep, call = text.rpartition(":") if ":" in text else (text, "", "")
        if sep and not call.isdigit():
            raise LayerError(f"layer {text!r}: expected NAME or NAME:CALL with CALL a call index 0, 1, ...")
        return cls(module, int(call) if sep else None)

    def __str__(self) -> str:
        return self.module if self.call is None else f"{self.module}:{self.call}"


def resolve_layers(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """The modules of the given layers (``layer4``, ``features.10``, ``_blocks.3._swish:1``), in order."""
    modules = dict(model.named_modules())
    found = []
    for name in names:
        ref = LayerRef.parse(name)
        if not ref.module or ref.module not in modules:
            candidates = [n for n in modules if n]
            close = difflib.get_close_matches(ref.module, candidates, n=5, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise LayerError(
                f"model {type(model).__name__} has no layer {ref.module!r}.{hint} "
                "List the layers with `unitscope layers SPEC`."
            )
        found.append(modules[ref.module])
    return found


class StopForward(Exception):
    """Raised inside a hook once every retained layer has its output: the rest of the forward is skipped."""


def ablate(units: Iterable[int]) -> Edit:
    """An edit that sets the given units (channels, 0-based) to zero."""
    index = sorted(set(units))

    def edit(output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[:, index] = 0
        return output

    return edit


def replace(value: torch.Tensor) -> Edit:
    """An edit that replaces the output by ``value`` (broadcast to the output's shape; a copy, so that later
    in-place operations of the model change neither ``value`` nor each other's elements)."""
    return lambda output: value.to(output.device, output.dtype).expand_as(output).clone()


def rotate(matrix: torch.Tensor) -> Edit:
    """An edit that re-expresses the output in another basis: a'(x, y) = M · a(x, y) at every position."""

    def edit(output: torch.Tensor) -> torch.Tensor:
        flat = output.reshape(output.shape[0], output.shape[1], -1)
        return torch.matmul(matrix.to(output.device, output.dtype), flat).reshape(output.shape)

    return edit


def run_once(model: nn.Module, example: torch.Tensor, *, forward: Iterable[tuple[nn.Module, Callable]] = (),
             pre: Iterable[tuple[nn.Module, Callable]] = ()) -> None:
    """Run ``model`` on ``example`` once without gradients with forward hooks (``(module, hook)`` pairs) and
    forward pre-hooks on its modules, removed afterwards also when the model raises: a look at how it runs."""
    handles = [module.register_forward_hook(hook) for module, hook in forward]
    handles += [module.register_forward_pre_hook(hook) for module, hook in pre]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()


class Trace:
    """Hooks on ``layers`` of ``model`` (see the module docstring).

    ``retain`` (default: every layer not edited) keeps those layers' outputs in :attr:`outputs` after each
    forward pass: detached float32 copies, or with ``grad`` the tensors themselves, kept in the autograd
    graph with ``retain_grad()``. ``edits`` maps a layer to a function of its output whose result replaces
    it. With ``stop``, a forward pass run through :meth:`__call__` ends as soon as every retained layer has
    its output (after the first pass, which learns how often each module runs).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str] = (),
        *,
        retain: Sequence[str] | None = None,
        edits: Mapping[str, Edit] | None = None,
        grad: bool = False,
        stop: bool = False,
    ) -> None:
        self.model = model
        edits = dict(edits or {})
        names = list(dict.fromkeys([*layers, *edits, *(retain or ())]))
        self.retained = [n for n in names if n not in edits] if retain is None else list(dict.fromkeys(retain))
        self.edits = edits
        self.refs = {name: LayerRef.parse(name) for name in names}
        self.grad, self.stop = grad, stop
        self.outputs: dict[str, torch.Tensor] = {}
        self._modules = dict(zip(names, resolve_layers(model, names), strict=True))
        self._calls: dict[str, int] = {}  # calls of each hooked module in the current forward pass
        self._complete_pass = False  # a whole forward pass has run: how often each module runs is known
        self._handles: list = []

    def __enter__(self) -> Trace:
        self._handles.append(self.model.register_forward_pre_hook(self._start))
        for module_name, module in {ref.module: self._modules[name] for name, ref in self.refs.items()}.items():
            self._handles.append(module.register_forward_hook(self._hook_for(module_name)))
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __call__(self, *inputs, **kwargs) -> dict[str, torch.Tensor]:
        """Run the model (stopping early with ``stop``) and return the retained outputs."""
        if not self._handles:
            raise RuntimeError("use Trace as a context manager: `with Trace(model, layers) as trace:`")
        try:
            self.model(*inputs, **kwargs)
        except StopForward:
            pass
        else:
            self._check_complete()
        missing = [name for name in self.retained if name not in self.outputs]
        if missing:
            raise LayerError(f"layers {', '.join(missing)} did not run in the model's forward pass")
        return dict(self.outputs)

    def _start(self, _module: nn.Module, _inputs: object) -> None:
        self.outputs = {}
        self._calls = {}

    def _check_complete(self) -> None:
        """After a whole forward pass: a bare name must not stand for a module called several times."""
        for name, ref in self.refs.items():
            count = self._calls.get(ref.module, 0)
            if ref.call is None and count > 1:
                raise LayerError(
                    f"layer {name!r} is called {count} times per forward pass; name one call: "
                    + ", ".join(f"{name}:{i}" for i in range(count))
                )
            if ref.call is not None and ref.call >= count:
                times = {0: "never", 1: "once"}.get(count, f"{count} times")
                raise LayerError(f"layer {name!r}: module {ref.module!r} runs {times} per forward pass; "
                                 + (f"name a call from {ref.module}:0 to {ref.module}:{count - 1}" if count > 1
                                    else f"name it {ref.module}"))
        self._complete_pass = True

    def _hook_for(self, module_name: str):
        def hook(_module: nn.Module, _inputs: object, output: object):
            call = self._calls.get(module_name, 0)
            self._calls[module_name] = call + 1
            result = None
            for name, ref in self.refs.items():
                if ref.module != module_name or (ref.call is not None and ref.call != call):
                    continue
                if ref.call is None and call > 0:
                    raise LayerError(
                        f"layer {name!r} is called more than once per forward pass; name one call: "
                        f"{name}:0, {name}:1, ..."
                    )
                if name in self.edits:
                    result = self.edits[name](_as_tensor(name, output if result is None else result))
                if name in self.retained:
                    self.outputs[name] = self._keep(name, output if result is None else result)
            if self.stop and self._complete_pass and all(n in self.outputs for n in self.retained):
                raise StopForward
            return result

        return hook

    def _keep(self, name: str, output: object) -> torch.Tensor:
        tensor = _as_tensor(name, output)
        if self.grad:
            if tensor.requires_grad:
                tensor.retain_grad()
            return tensor
        # A copy: later in-place operations (ReLU(inplace=True), residual +=) would change the hooked tensor.
        return tensor.detach().to(torch.float32, copy=True)


def _as_tensor(name: str, output: object) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise LayerError(
            f"layer {name!r} returns {type(output).__name__}, not a tensor; choose one of its submodules "
            "(see `unitscope layers SPEC`)"
        )
    return output
