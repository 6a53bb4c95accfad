"""A classifier's outputs with sets of one layer's units zeroed, and per-class accuracy and logits from them."""

from __future__ import annotations

import torch
from torch import nn

from unitscope.hooks import Trace
from unitscope.models.normalize import normalizer
from unitscope.progress import progress


@torch.no_grad()
def masked_outputs(model: nn.Module, layer: str, images: torch.Tensor, keep: torch.Tensor, normalize: str,
                   device: torch.device, batch_size: int = 64) -> torch.Tensor:
    """The model's outputs (A, N, classes) on uint8 ``images`` (N, 3, H, W) under each of the A rows of ``keep``
    (A, units) bool: the layer's units where a row is False are zero (the layer as :class:`~unitscope.hooks.Trace`
    names it: a module, or one call of it).

    Several masks share one forward pass: the images are repeated once per mask (at most ``batch_size`` inputs
    per pass) and the hook zeroes each copy's own units.
    """
    model = model.eval().to(device)
    to_input = normalizer(normalize)
    units = keep.shape[1]
    per_pass = max(1, batch_size // max(1, min(len(images), batch_size)))
    bar = progress(total=len(keep) * len(images), desc="ablations", unit="img")
    chunks = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start:start + batch_size].to(device))
        rows = []
        for first in range(0, len(keep), per_pass):
            masks = keep[first:first + per_pass].to(device=device, dtype=x.dtype)

            def edit(output: torch.Tensor, masks: torch.Tensor = masks) -> torch.Tensor:
                if output.shape[1] != units:
                    raise ValueError(f"layer {layer} has {output.shape[1]} units, the masks {units}")
                shaped = output.reshape(len(masks), -1, *output.shape[1:])
                scale = masks.reshape(len(masks), 1, units, *([1] * (output.dim() - 2)))
                return (shaped * scale).reshape(output.shape)

            with Trace(model, edits={layer: edit}):
                rows.append(model(x.repeat(len(masks), 1, 1, 1)).reshape(len(masks), len(x), -1).float().cpu())
            bar.update(len(masks) * len(x))
        chunks.append(torch.cat(rows))
    bar.close()
    return torch.cat(chunks, dim=1)


def class_accuracy(outputs: torch.Tensor, targets: torch.Tensor, classes: int) -> torch.Tensor:
    """(A, classes): the top-1 accuracy of each output set (A, N, classes) on each class's images (NaN: none)."""
    correct = (outputs.argmax(-1) == targets).double()
    return _per_class(correct, targets, classes)


def class_logits(outputs: torch.Tensor, targets: torch.Tensor, classes: int) -> torch.Tensor:
    """(A, classes): the mean logit of each class on its own images (NaN: none)."""
    own = outputs.double().gather(-1, targets.expand(len(outputs), -1).unsqueeze(-1)).squeeze(-1)
    return _per_class(own, targets, classes)


def _per_class(values: torch.Tensor, targets: torch.Tensor, classes: int) -> torch.Tensor:
    totals = torch.zeros(len(values), classes, dtype=torch.float64).index_add_(1, targets, values)
    counts = torch.bincount(targets, minlength=classes).double()
    return totals / counts
