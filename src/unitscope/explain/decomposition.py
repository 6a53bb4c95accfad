"""A class logit split into the contributions of one layer's units (Zhou et al., TPAMI 2018, Sec. 5).

When the layer feeds global average pooling and then a linear classifier, logit_c(x) = Σ_k w_{c,k} · mean(A_k(x))
+ b_c exactly: unit k contributes w_{c,k} · mean(A_k(x)), and the class activation map (CAM) is Σ_k w_{c,k} A_k(x).
:func:`linear_head` finds that structure and checks it numerically; where it does not hold, Grad-CAM's weights take
the place of w: α_{c,k} = mean over positions of ∂logit_c / ∂A_k, contribution α_{c,k} · Σ_positions A_k(x) (the
two agree exactly on a linear head; elsewhere the contributions need not add up to the logit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unitscope.hooks import Trace, run_once


@dataclass(frozen=True)
class LinearHead:
    """The classifier after the layer's global average: ``weight`` (classes, units), ``bias`` (classes,)."""

    name: str
    weight: torch.Tensor
    bias: torch.Tensor


def linear_head(model: nn.Module, layer: str, example: torch.Tensor) -> LinearHead | None:
    """The ``nn.Linear`` called last in the model's forward pass, when its input is the spatial mean of ``layer``'s
    output on ``example`` and its output the model's; ``None`` otherwise."""
    calls: list[tuple[str, nn.Linear, torch.Tensor]] = []
    output: list[torch.Tensor] = []

    def record(name: str, module: nn.Linear):
        return module, lambda _m, inputs, _o: calls.append((name, module, inputs[0].detach()))

    linears = [record(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    with Trace(model, [layer]) as trace:
        run_once(model, example, forward=[*linears, (model, lambda _m, _i, out: output.append(out.detach()))])
        acts = trace.outputs.get(layer)
    if not calls or acts is None or acts.dim() != 4 or not output:
        return None
    name, head, features = calls[-1]
    pooled, features = acts.float().mean(dim=(2, 3)), features.float().flatten(1)
    if features.shape != pooled.shape or not torch.allclose(features, pooled, rtol=1e-4, atol=1e-5):
        return None
    logits = torch.as_tensor(output[0]).float()
    with torch.no_grad():
        mapped = head(features)
    if mapped.shape != logits.shape or not torch.allclose(mapped, logits, rtol=1e-4, atol=1e-4):
        return None  # something follows the linear layer
    bias = head.bias.detach() if head.bias is not None else torch.zeros(head.out_features)
    return LinearHead(name, head.weight.detach().float(), bias.float())


@dataclass(frozen=True)
class Decomposition:
    """Per image: the explained ``target`` class, its ``logit``, the ``bias``, each unit's ``contributions``
    (images, units), the class map ``cam`` (images, h, w) = Σ_k weight_k A_k, and the layer's ``activations``
    (images, units, h, w)."""

    target: torch.Tensor
    logit: torch.Tensor
    bias: torch.Tensor
    contributions: torch.Tensor
    cam: torch.Tensor
    activations: torch.Tensor


def decompose(model: nn.Module, layer: str, inputs: torch.Tensor, head: LinearHead | None,
              target: int | None = None) -> Decomposition:
    """Split each image's logit of ``target`` (default: its top class) over ``layer``'s units, with the linear
    ``head`` (CAM) or, without one, with Grad-CAM's weights."""
    with Trace(model, [layer], grad=head is None) as trace:
        with torch.set_grad_enabled(head is None):
            logits = model(inputs)
        acts = trace.outputs[layer]
        if target is not None and not 0 <= target < logits.shape[1]:
            raise ValueError(f"--target {target} is out of range: the model has {logits.shape[1]} classes")
        classes = logits.argmax(dim=1) if target is None else torch.full((len(inputs),), target, device=logits.device)
        logit = logits.gather(1, classes[:, None])[:, 0]
        if head is not None:
            weights = head.weight.to(acts.device)[classes]  # (images, units)
            contributions = weights * acts.float().mean(dim=(2, 3))
            bias = head.bias.to(acts.device)[classes]
        else:
            gradients, = torch.autograd.grad(logit.sum(), acts)
            weights = gradients.float().mean(dim=(2, 3))
            contributions = weights * acts.float().sum(dim=(2, 3))
            bias = torch.full_like(logit, float("nan"))
    acts = acts.detach().float()
    cam = torch.einsum("bk,bkhw->bhw", weights.detach(), acts)
    return Decomposition(classes.cpu(), logit.detach().float().cpu(), bias.detach().cpu(),
                         contributions.detach().cpu(), cam.cpu(), acts.cpu())
