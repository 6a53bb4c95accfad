"""The permutation null of a dissection: how high a unit's IoU with a label gets by chance (docs/engine.md).

Each of R permutations pairs the activations of image i with the labels of a random image π_r(i) of the same
*kind* (possibly i itself) (the same annotated columns of index.csv: scene photos with scene photos, texture photos with texture
photos) and tallies them exactly, thresholds fixed, with the dissection's own counting
(:func:`unitscope.tally.update_tallies`: the masks are computed once for the real labels and every
permutation). The null level of a label c is the 1 − α/L quantile of its IoU over every unit and permutation
(α = :data:`NULL_ALPHA`, L the labels of the selected categories: a unit picks its label among L, so the level
is corrected for that choice); a detector is *significant* when its IoU beats both the IoU threshold and its
label's null level.

How many detectors the rule lets through by chance is measured on the null itself, leaving one permutation
out: its units are counted against the levels of the other permutations (:func:`chance_significant`).

Permutations span all dissected images, whatever the shard: a shard pairs its own activations with labels of
any image, so shard tallies of the null add up exactly like the real ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unitscope.broden.combinations import LabelCombinations, label_combinations
from unitscope.broden.loaders import SegmentationBatch, batch_combinations
from unitscope.broden.reader import BrodenDataset
from unitscope.tally import TallyCounts

#: Chance of a unit passing by chance with some label, which sets the null level's quantile 1 − α/L.
NULL_ALPHA = 0.01


def null_quantile(labels: int) -> float:
    """The quantile of a label's null IoUs that a significant detector must beat, with ``labels`` to choose from."""
    return 1.0 - NULL_ALPHA / max(labels, 1)


def image_kinds(dataset: BrodenDataset, images: int) -> np.ndarray:
    """(images,) int: images with the same kind have data in the same categories (index.csv columns)."""
    present = dataset.index[list(dataset.categories)].iloc[:images].ne("").to_numpy()
    _, kinds = np.unique(present, axis=0, return_inverse=True)
    return kinds.reshape(-1)


def permutations(kinds: np.ndarray, count: int, seed: int) -> np.ndarray:
    """(count, images) int64: row r maps image i to π_r(i), a random image of the same kind (each image once)."""
    rng = np.random.default_rng(seed)
    images = np.arange(len(kinds))
    out = np.empty((count, len(kinds)), np.int64)
    for r in range(count):
        for kind in np.unique(kinds):
            members = images[kinds == kind]
            out[r, members] = rng.permutation(members)
    return out


class PermutedLabels:
    """The label batches of the R permutations for a batch of activation rows; each image's label maps are
    decoded and numbered (:func:`label_combinations`) once, and kept as such (4 bytes per label pixel)."""

    def __init__(self, dataset: BrodenDataset, permutation: np.ndarray) -> None:
        self.dataset = dataset
        self.permutation = permutation
        self._kept: dict[int, tuple[LabelCombinations, np.ndarray]] = {}

    def batches(self, indices: Sequence[int]) -> list[SegmentationBatch]:
        """One label batch per permutation: row b holds the labels of image π_r(indices[b])."""
        batches = []
        for row in self.permutation:
            kept = [self._labels(int(j)) for j in row[np.asarray(indices)]]
            batches.append(batch_combinations([c for c, _ in kept], [labels for _, labels in kept], indices))
        return batches

    def _labels(self, image: int) -> tuple[LabelCombinations, np.ndarray]:
        """The image's label combinations (numbered alone) and its image-level labels."""
        if image not in self._kept:
            found = self.dataset.segmentation(image)
            self._kept[image] = (label_combinations(found.layers[None]), found.image_labels)
        return self._kept[image]


def stack_counts(counts: Sequence[TallyCounts]) -> dict[str, np.ndarray]:
    """The R null tallies of a layer as arrays with a leading permutation axis (``null.npz``)."""
    arrays = [c.arrays() for c in counts]
    return {key: np.stack([a[key] for a in arrays]) for key in arrays[0]}


def unstack_counts(arrays) -> list[TallyCounts]:
    """The inverse of :func:`stack_counts`."""
    return [TallyCounts.from_arrays({key: arrays[key][r] for key in arrays}) for r in range(len(arrays["images"]))]


def null_ious(counts: Sequence[TallyCounts], primary: np.ndarray) -> np.ndarray:
    """(R, units, L+1) float64: every unit's IoU with every label under each permutation."""
    return np.stack([c.iou(primary) for c in counts])


def null_levels(ious: np.ndarray, quantile: float) -> np.ndarray:
    """(L+1,) float64: each label's ``quantile`` of the null IoUs (R, units, L+1) over units and permutations."""
    return np.quantile(ious.reshape(-1, ious.shape[-1]), quantile, axis=0)


def chance_detectors(ious: np.ndarray, iou_threshold: float) -> np.ndarray:
    """(R,) int: units whose best null IoU exceeds the threshold in each permutation (raw detectors by chance)."""
    return (ious.max(axis=2) > iou_threshold).sum(axis=1)


def chance_significant(ious: np.ndarray, iou_threshold: float, quantile: float) -> np.ndarray:
    """(R,) int: units of permutation r whose best null IoU beats the threshold and the level of its label
    computed from the other permutations (empty with a single permutation)."""
    counts = []
    for r in range(len(ious) if len(ious) > 1 else 0):
        levels = null_levels(np.delete(ious, r, axis=0), quantile)
        best, label = ious[r].max(axis=1), ious[r].argmax(axis=1)
        counts.append(int(((best > iou_threshold) & (best > levels[label])).sum()))
    return np.asarray(counts, dtype=np.int64)
