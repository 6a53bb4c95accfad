"""Label combinations: the distinct tuples of labels (one per layer) found at each image's pixels.

A segmentation with D pixel-label layers gives every pixel a D-tuple of labels; an image has few distinct
tuples (tens, against sh·sw pixels). Numbering them once per image lets the tally count one small id per
mask pixel instead of D labels (``unitscope.tally``), and gives the images' ground-truth pixel counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LabelCombinations", "label_combinations", "stack_combinations"]


@dataclass(frozen=True)
class LabelCombinations:
    """The label tuples of a batch of images: pixel (y, x) of image b has labels ``labels[b, ids[b, y, x]]``.

    ``ids`` int32 (B, sh, sw), values 0..C_b−1 for image b; ``labels`` int32 (B, C, D), one row per distinct
    tuple of the image; ``pixels`` int64 (B, C), how many of the image's pixels have each tuple. Rows
    past C_b are padding: label 0, 0 pixels.
    """

    ids: np.ndarray
    labels: np.ndarray
    pixels: np.ndarray


def label_combinations(layers: np.ndarray) -> LabelCombinations:
    """Number the distinct per-pixel label tuples of each image of ``layers`` (B, D, sh, sw), D ≥ 0."""
    images, depth, sh, sw = layers.shape
    area = sh * sw
    flat = np.ascontiguousarray(layers).reshape(images, depth, area)
    # Label maps are piecewise constant: number the runs of equal tuples along rows, not every pixel.
    change = np.ones((images, area), bool)
    np.any(flat[:, :, 1:] != flat[:, :, :-1], axis=1, out=change[:, 1:])
    starts = np.flatnonzero(change)  # into (images · area); every image starts a run
    lengths = np.diff(np.r_[starts, images * area])
    image, position = np.divmod(starts, area)
    ids, count = image, images  # the image is the leading digit: its tuples get consecutive ids
    for d in range(depth):  # fold one layer at a time into dense ids of the tuples seen so far
        layer = flat.reshape(-1).take((image * depth + d) * area + position)
        radix = int(layer.max()) + 1
        ids, count = _dense_ranks(ids * radix + layer, count * radix)
    first = np.empty(count, np.int64)
    first[ids] = np.arange(len(starts))  # a run of each tuple
    owner = image[first]
    per_image = np.bincount(owner, minlength=images)
    offset = np.cumsum(per_image) - per_image
    slot = np.arange(count) - offset[owner]
    labels = np.zeros((images, per_image.max(), depth), np.int32)
    labels[owner, slot] = flat[image[first], :, position[first]]
    pixels = np.zeros((images, per_image.max()), np.int64)
    pixels[owner, slot] = np.bincount(ids, weights=lengths, minlength=count)
    local = (ids - offset[image]).astype(np.int32)
    return LabelCombinations(np.repeat(local, lengths).reshape(images, sh, sw), labels, pixels)


def stack_combinations(images: Sequence[LabelCombinations]) -> LabelCombinations:
    """The combinations of a batch from those of its images, each numbered alone (a batch of one): ids are local to
    an image and ordered by its own tuples, so this equals :func:`label_combinations` of the stacked layers, the
    label rows padded with 0 to the largest C and D (a missing layer reads as label 0, as in the padded layers)."""
    count = max(one.labels.shape[1] for one in images)
    depth = max(one.labels.shape[2] for one in images)
    labels = np.zeros((len(images), count, depth), np.int32)
    pixels = np.zeros((len(images), count), np.int64)
    for b, one in enumerate(images):
        c, d = one.labels.shape[1:]
        labels[b, :c, :d] = one.labels[0]
        pixels[b, :c] = one.pixels[0]
    return LabelCombinations(np.concatenate([one.ids for one in images]), labels, pixels)


def _dense_ranks(keys: np.ndarray, bound: int) -> tuple[np.ndarray, int]:
    """Ranks 0..n-1 of the distinct values of ``keys`` (all in [0, bound)), in order, and n."""
    if bound <= 4 * len(keys) + 65536:  # a lookup table is cheaper than sorting
        table = np.cumsum(np.bincount(keys, minlength=bound) > 0) - 1
        return table[keys], int(table[-1]) + 1
    distinct, ranks = np.unique(keys, return_inverse=True)
    return ranks.reshape(-1), len(distinct)
