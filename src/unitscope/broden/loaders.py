"""Parallel batch loading of a :class:`~unitscope.broden.reader.BrodenDataset` with torch DataLoaders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from unitscope.broden.combinations import LabelCombinations, label_combinations, stack_combinations
from unitscope.broden.reader import BrodenDataset, Segmentation

__all__ = ["SegmentationBatch", "batch_combinations", "batch_segmentations", "image_loader", "segmentation_loader"]


class SegmentationBatch(NamedTuple):
    """A batch of :class:`Segmentation` as label combinations (:mod:`unitscope.broden.combinations`).

    Pixel (y, x) of image b has the labels ``combination_labels[b, combination_ids[b, y, x]]``, one per
    layer. ``combination_ids`` int32 (B, sh, sw); ``combination_labels`` int32 (B, C, D) and
    ``combination_pixels`` int64 (B, C) padded with label 0 and 0 pixels to the batch's largest C and D;
    ``image_labels`` int32 (B, K) zero-padded.
    """

    indices: torch.Tensor
    combination_ids: torch.Tensor
    combination_labels: torch.Tensor
    combination_pixels: torch.Tensor
    image_labels: torch.Tensor


def image_loader(dataset: BrodenDataset, indices: Sequence[int], batch_size: int, num_workers: int = 0) -> DataLoader:
    """Batches ``(indices, images)`` of the given items in order; images are uint8 (B, 3, ih, iw)."""
    return DataLoader(_Items(dataset, indices, "image"), batch_size=batch_size, num_workers=num_workers)


def segmentation_loader(
    dataset: BrodenDataset, indices: Sequence[int], batch_size: int, num_workers: int = 0
) -> DataLoader:
    """Batches of :class:`SegmentationBatch` of the given items in order, zero-padded per batch."""
    return DataLoader(
        _Items(dataset, indices, "segmentation"),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate_segmentations,
    )


class _Items(Dataset):
    """The items ``indices`` of a :class:`BrodenDataset`, as tensors (picklable for worker processes)."""

    def __init__(self, dataset: BrodenDataset, indices: Sequence[int], kind: str) -> None:
        self.dataset = dataset
        self.indices = [dataset.check_item(int(i)) for i in indices]
        self.kind = kind

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor] | tuple[int, Segmentation]:
        i = self.indices[k]
        if self.kind == "image":
            return i, torch.from_numpy(self.dataset.image(i)).permute(2, 0, 1)
        return i, self.dataset.segmentation(i)


def batch_segmentations(segmentations: Sequence[Segmentation], indices: Sequence[int]) -> SegmentationBatch:
    """Stack segmentations of the same label size into a :class:`SegmentationBatch`."""
    size = segmentations[0].layers.shape[1:]
    layers = np.zeros((len(segmentations), max(s.layers.shape[0] for s in segmentations), *size), np.int32)
    for b, segmentation in enumerate(segmentations):
        layers[b, : len(segmentation.layers)] = segmentation.layers
    return _batch(label_combinations(layers), [s.image_labels for s in segmentations], indices)


def batch_combinations(
    combinations: Sequence[LabelCombinations], image_labels: Sequence[np.ndarray], indices: Sequence[int]
) -> SegmentationBatch:
    """The :class:`SegmentationBatch` of images whose label combinations were numbered one image at a time
    (:func:`label_combinations` of each alone): equal to :func:`batch_segmentations` of the images, without
    numbering them again (the permutation null pairs the same images' labels with many batches)."""
    return _batch(stack_combinations(combinations), image_labels, indices)


def _batch(combinations: LabelCombinations, image_labels: Sequence[np.ndarray], indices: Sequence[int]) -> SegmentationBatch:
    padded = np.zeros((len(image_labels), max(len(labels) for labels in image_labels)), np.int32)
    for b, labels in enumerate(image_labels):
        padded[b, : len(labels)] = labels
    return SegmentationBatch(
        indices=torch.tensor(list(indices), dtype=torch.long),
        combination_ids=torch.from_numpy(combinations.ids),
        combination_labels=torch.from_numpy(combinations.labels),
        combination_pixels=torch.from_numpy(combinations.pixels),
        image_labels=torch.from_numpy(padded),
    )


def _collate_segmentations(items: list[tuple[int, Segmentation]]) -> SegmentationBatch:
    return batch_segmentations([segmentation for _, segmentation in items], [index for index, _ in items])
