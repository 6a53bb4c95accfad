"""Where in a real image a unit looks: the DeconvNet projection (Zeiler & Fergus 2014) and the guided-backprop
projection of the unit's strongest activation on the image, cropped to the region it reaches.

The unit's largest activation on the image is kept and everything else in the layer zeroed; that one value is
projected back to the pixels through the network's transposed operations, with the DeconvNet rule (pass the
positive part of the signal) or the guided rule (positive signal where the forward input was in the linear
range) at every rectifier call (:func:`unitscope.saliency.rectifiers.rectifier_rule`: ``nn.ReLU`` and
``nn.ReLU6`` modules, every call; a model that rectifies with ``F.relu`` is refused). Convolutions,
pooling and batch norm pass it back by their gradient, so the projection of a convolution is the transposed
convolution of the kept activation (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from unitscope.hooks import Trace
from unitscope.saliency.rectifiers import rectifier_rule

#: Projection method -> rectifier rule.
PROJECTIONS = {"deconvnet": "deconv", "guided-backprop": "guided"}


@dataclass
class Projected:
    """Each image's projection (N, C, H, W) in the model's input space, the kept activation (N,), its position
    (N, 2: row, column of the layer's map) and the size of that map (rows, columns)."""

    maps: torch.Tensor
    activation: torch.Tensor
    position: torch.Tensor
    map_size: tuple[int, int]


def project(model: nn.Module, layer: str, units: Sequence[int], inputs: torch.Tensor, method: str) -> Projected:
    """Project the largest activation of unit ``units[i]`` (0-based) of ``layer`` on ``inputs[i]`` (normalised,
    (N, C, H, W)) back to the input by ``method`` (:data:`PROJECTIONS`); one backward pass for the batch."""
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; expected one of {', '.join(PROJECTIONS)}")
    inputs = inputs.detach().clone().requires_grad_(True)
    with rectifier_rule(model, PROJECTIONS[method]), Trace(model, [layer], grad=True, stop=True) as trace:
        with torch.no_grad():
            trace(inputs[:1])  # learns the call counts: the pass below stops at the layer
        output = trace(inputs)[layer]
        if output.ndim != 4:
            raise ValueError(f"layer {layer!r} gives outputs of shape {tuple(output.shape)}: a projection needs "
                             "spatial maps (B, C, H, W)")
        index = torch.as_tensor(list(units), device=output.device)
        maps = output[torch.arange(len(units), device=output.device), index]  # (N, h, w)
        flat = maps.detach().flatten(1).argmax(1)
        rows, columns = flat // maps.shape[-1], flat % maps.shape[-1]
        kept = torch.zeros_like(output)
        activation = maps.detach()[torch.arange(len(units)), rows, columns]
        kept[torch.arange(len(units)), index, rows, columns] = activation
        (projection,) = torch.autograd.grad(output, inputs, grad_outputs=kept)
    return Projected(projection.detach(), activation, torch.stack([rows, columns], 1), tuple(output.shape[-2:]))


def support_box(maps: np.ndarray, around: tuple[int, int], minimum: int) -> tuple[int, int, int, int]:
    """A square (top, left, bottom, right) holding the nonzero pixels of ``maps`` ((C, H, W) or several stacked,
    (…, H, W)), at least ``minimum`` pixels a side, centred on ``around`` (row, column) where the support is
    empty; clipped to the image."""
    height, width = maps.shape[-2:]
    nonzero = np.abs(maps).reshape(-1, height, width).max(0) > 0
    if nonzero.any():
        rows, columns = np.nonzero(nonzero.any(1))[0], np.nonzero(nonzero.any(0))[0]
        top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    else:
        top = bottom = around[0]
        left = right = around[1]
    side = min(max(bottom - top, right - left, minimum), height, width)
    centre_row, centre_column = (top + bottom) // 2, (left + right) // 2
    top = int(np.clip(centre_row - side // 2, 0, height - side))
    left = int(np.clip(centre_column - side // 2, 0, width - side))
    return top, left, top + side, left + side


def signed_rgb(projection: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """A projection (3, H, W) as an RGB image (H, W, 3) uint8 as Zeiler & Fergus show them: grey at 0, the
    channels scaled together by the ``percentile`` of the magnitudes and clipped (as the saliency maps: a few
    extreme pixels would otherwise leave the rest grey)."""
    scale = float(np.percentile(np.abs(projection), percentile)) or float(np.abs(projection).max()) or 1.0
    return np.clip((0.5 + 0.5 * projection / scale).transpose(1, 2, 0) * 255, 0, 255).round().astype(np.uint8)
