"""Lucid's transformation robustness (lucid/optvis/transform ``standard_transforms``), drawn per image and
applied as one resampling: pad 12 px with grey (0.5), jitter by up to 8 px, scale by one of 0.90, 0.92, …, 1.10,
rotate by one of −10…10° (0° five times more likely, as Lucid's list), jitter by up to 4 px.

Lucid draws one transformation per step for the whole batch; here every image draws its own from its own
generator (so an image does not depend on which others share its batch), and the jitters, scale and rotation
are composed into one affine map sampled with ``grid_sample`` (bilinear): one interpolation instead of three.
The grey pad is not built: the image minus grey is sampled with zeros outside, plus grey, the same values at
less cost.
Lucid's jitter crops the canvas by d pixels at a random offset, a shift of −d/2 … d/2 − 1 about its centre; here
the shift is the same and the canvas keeps its size, the grey border repeated where a shift, a scale below 1 or a
rotation uncovers the outside (Lucid's crops never do; its rotation fills corners with black). Scale and rotation
are about the centre; the output is always ``size + 2 · PAD`` square.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

PAD = 12
PAD_VALUE = 0.5
JITTERS = (8, 4)
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
ANGLES = tuple(range(-10, 11)) + 5 * (0,)


def draw(rng: np.random.Generator) -> tuple[int, int, float, float, int, int]:
    """One image's transformation: (dx1, dy1, scale, degrees, dx2, dy2), each jitter d drawn from −d/2 … d/2 − 1
    (Lucid's random crop of d pixels, centred)."""
    dx1, dy1 = (int(v) - JITTERS[0] // 2 for v in rng.integers(JITTERS[0], size=2))
    scale = float(SCALES[rng.integers(len(SCALES))])
    degrees = float(ANGLES[rng.integers(len(ANGLES))])
    dx2, dy2 = (int(v) - JITTERS[1] // 2 for v in rng.integers(JITTERS[1], size=2))
    return dx1, dy1, scale, degrees, dx2, dy2


def affine(params: Sequence[float], side: int, source: int | None = None) -> torch.Tensor:
    """The (2, 3) ``affine_grid`` matrix mapping output to input coordinates (normalised, ``align_corners=False``)
    of translate(dx1, dy1) → scale → rotate → translate(dx2, dy2) on a ``side``-pixel square canvas; the input
    coordinates of a ``source``-pixel image centred on the canvas (default: the canvas itself)."""
    dx1, dy1, scale, degrees, dx2, dy2 = params
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    # the inverse of rotate ∘ scale, in image coordinates (y down; a positive angle turns counter-clockwise)
    inverse = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64) / scale
    to_unit = 2.0 / side
    shift2 = torch.tensor([dx2, dy2], dtype=torch.float64) * to_unit
    shift1 = torch.tensor([dx1, dy1], dtype=torch.float64) * to_unit
    offset = -inverse @ shift2 - shift1
    return (torch.cat([inverse, offset[:, None]], dim=1) * (side / (source or side))).float()


def transform(images: torch.Tensor, rngs: Sequence[np.random.Generator]) -> torch.Tensor:
    """Images (B, 3, S, S) in [0, 1] → (B, 3, S + 2·PAD, S + 2·PAD), image ``i`` transformed by a draw of
    ``rngs[i]``."""
    source = images.shape[-1]
    side = source + 2 * PAD
    theta = torch.stack([affine(draw(rng), side, source) for rng in rngs]).to(images.device, images.dtype)
    grid = F.affine_grid(theta, [len(images), images.shape[1], side, side], align_corners=False)
    return F.grid_sample(images - PAD_VALUE, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + PAD_VALUE
