"""Saliency maps for display and comparison, as Adebayo et al. post-process them (docs/saliency.md).

``grayscale``: Σ|·| over channels, clipped at the 99th percentile, scaled to [0, 1] (the PAIR ``saliency``
package's ``VisualizeImageGrayscale``, which the paper's code uses); ``diverging``: the signed Σ over channels
divided by the 99th percentile of its magnitude and clipped to [−1, 1]. A constant map post-processes to zeros.
"""

from __future__ import annotations

import numpy as np


def grayscale(raw: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Σ|·| over the channels of a raw map (C, H, W), clipped at ``percentile`` and scaled to [0, 1] (H, W)."""
    magnitude = np.abs(raw).sum(axis=0, dtype=np.float64)
    low, high = magnitude.min(), np.percentile(magnitude, percentile)
    if high <= low:  # more than (100 − percentile) % of the map at its minimum: scale by the maximum instead
        high = magnitude.max()
    if high <= low:
        return np.zeros(magnitude.shape, np.float32)
    return np.clip((magnitude - low) / (high - low), 0.0, 1.0).astype(np.float32)


def diverging(raw: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """The signed Σ over the channels of a raw map (C, H, W) over the ``percentile`` of its magnitude, in [−1, 1]."""
    signed = raw.sum(axis=0, dtype=np.float64)
    span = np.percentile(np.abs(signed), percentile)
    if span <= 0:
        span = np.abs(signed).max()
    if span <= 0:
        return np.zeros(signed.shape, np.float32)
    return np.clip(signed / span, -1.0, 1.0).astype(np.float32)
