"""How similar two saliency maps are, as Adebayo et al. measure it, and the two controls of every comparison.

=================  =================================================================================================
``spearman-abs``   Spearman rank correlation of the grayscale maps (Σ|·|, :func:`.maps.grayscale`)
``spearman``       Spearman rank correlation of the signed maps (:func:`.maps.diverging`)
``ssim``           structural similarity of the grayscale maps (scikit-image, ``data_range=1``: maps lie in [0, 1])
``hog-pearson``    Pearson correlation of the HOG descriptors of the grayscale maps (scikit-image, 9 orientations,
                   8×8-pixel cells, 3×3-cell blocks)
=================  =================================================================================================

A constant map has no ranks and no gradient orientations: the correlations with it are undefined and recorded as
NaN, to be counted and shown, never dropped. The controls: ``sobel`` (the image's edge magnitude, a map that does
not depend on the model, so a randomised model cannot change it) and ``noise`` (a fresh uniform noise map at
every stage against the one of the original model: the similarity of unrelated maps).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from skimage.feature import hog
from skimage.filters import sobel
from skimage.metrics import structural_similarity

METRICS = ("spearman-abs", "spearman", "ssim", "hog-pearson")
CONTROLS = ("sobel", "noise")
HOG = {"orientations": 9, "pixels_per_cell": (8, 8), "cells_per_block": (3, 3)}
#: The smallest map side HOG can describe with :data:`HOG` (one block of 3×3 cells of 8 pixels).
HOG_MIN_SIDE = HOG["pixels_per_cell"][0] * HOG["cells_per_block"][0]


def _correlation(function, a: np.ndarray, b: np.ndarray) -> float:
    if a.min() == a.max() or b.min() == b.max():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(function(a.ravel(), b.ravel()).statistic)


def similarities(gray: np.ndarray, other_gray: np.ndarray, signed: np.ndarray,
                 other_signed: np.ndarray) -> dict[str, float]:
    """Every metric between two maps, given post-processed as grayscale (H, W) in [0, 1] and signed (H, W)."""
    if min(gray.shape) < HOG_MIN_SIDE:
        raise ValueError(f"saliency maps of {gray.shape[0]}×{gray.shape[1]} pixels are too small for HOG "
                         f"({HOG_MIN_SIDE} pixels a side at least); use larger images")
    return {
        "spearman-abs": _correlation(stats.spearmanr, gray, other_gray),
        "spearman": _correlation(stats.spearmanr, signed, other_signed),
        "ssim": float(structural_similarity(gray, other_gray, data_range=1.0)),
        "hog-pearson": _correlation(stats.pearsonr, hog(gray, **HOG), hog(other_gray, **HOG)),
    }


def sobel_map(image: np.ndarray) -> np.ndarray:
    """The edge magnitude of an image (H, W, 3) uint8 or (H, W) on its gray levels, scaled to [0, 1]."""
    gray = image.astype(np.float64).mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    edges = sobel(gray)
    top = edges.max()
    return (edges / top if top > 0 else edges).astype(np.float32)


def noise_map(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Uniform noise in [0, 1]."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)
