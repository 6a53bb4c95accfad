"""What an optimised image maximises, one objective per image of a batch (Lucid's ``objectives``): a unit's
mean activation over its map (``channel``), one spatial neuron of it (``neuron``, the centre by default), a
direction over the layer's units (the dot product with the vector, averaged over positions: Lucid's ``direction``
averages over positions and units, a constant factor; Lucent's takes the cosine), or a class logit (``logit``,
the model's output)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unitscope.hooks import LayerError

OBJECTIVES = ("channel", "neuron", "direction", "logit")


@dataclass(frozen=True)
class Objective:
    """One image's objective: ``kind`` (:data:`OBJECTIVES`), the ``unit`` (channel or class, 0-based) or the
    ``vector`` over the layer's units (``direction``), and for ``neuron`` its ``position`` (row, column; ``None``:
    the centre of the map)."""

    kind: str
    unit: int | None = None
    vector: tuple[float, ...] | None = None
    position: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return "direction" if self.kind == "direction" else f"{self.kind} {self.unit}"


def check(objectives: Sequence[Objective], shape: Sequence[int], layer: str) -> None:
    """Raise a one-line :class:`~unitscope.hooks.LayerError` where an objective does not fit the output of
    ``layer`` (its shape without the batch dimension)."""
    if not objectives:
        raise ValueError("no objective given: name one or more units")
    for objective in objectives:
        if objective.kind not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective.kind!r}; expected one of {', '.join(OBJECTIVES)}")
        units = shape[0]
        if objective.kind == "direction":
            if objective.vector is None or len(objective.vector) != units:
                length = "none" if objective.vector is None else len(objective.vector)
                raise LayerError(f"direction of length {length}: layer {layer!r} has {units} units")
            continue
        if objective.unit is None or not 0 <= objective.unit < units:
            what = "classes" if objective.kind == "logit" else "units"
            raise LayerError(f"{objective.kind} objective: index {objective.unit} is out of range; {layer!r} has "
                             f"{units} {what} (0-based indices 0 to {units - 1})")
        if objective.kind == "neuron":
            if len(shape) != 3:
                raise LayerError(f"layer {layer!r} has no spatial maps (output {tuple(shape)}): the neuron "
                                 "objective needs one; use the channel objective")
            if objective.position is not None and not all(0 <= p < s for p, s in zip(objective.position, shape[1:])):
                raise LayerError(f"position {objective.position} is outside the {shape[1]}×{shape[2]} maps of "
                                 f"{layer!r}")


def values(objectives: Sequence[Objective], output: torch.Tensor) -> torch.Tensor:
    """Each image's objective (B,) from the layer's (or the model's) output (B, C[, H, W])."""
    maps = output if output.ndim == 4 else output[:, :, None, None]
    result = []
    for i, objective in enumerate(objectives):
        if objective.kind == "direction":
            vector = torch.tensor(objective.vector, dtype=maps.dtype, device=maps.device)
            result.append(torch.einsum("chw,c->hw", maps[i], vector).mean())
        elif objective.kind == "neuron":
            row, column = objective.position or (maps.shape[2] // 2, maps.shape[3] // 2)
            result.append(maps[i, objective.unit, row, column])
        else:
            result.append(maps[i, objective.unit].mean())
    return torch.stack(result)
