"""Parallel batch loading of a :class:`~unitscope.broden.reader.BrodenDataset` with torch DataLoaders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from unitscope.broden.reader import BrodenDataset, Segmentation

__all__ = ["SegmentationBatch", "image_loader", "segmentation_loader"]


class SegmentationBatch(NamedTuple):
    """A batch of :class:`Segmentation` padded with label 0 to the batch's largest layer/label count."""

    indices: torch.Tensor
    layers: torch.Tensor
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


def _collate_segmentations(items: list[tuple[int, Segmentation]]) -> SegmentationBatch:
    depth = max(s.layers.shape[0] for _, s in items)
    count = max(s.image_labels.shape[0] for _, s in items)
    layers = torch.zeros((len(items), depth, *items[0][1].layers.shape[1:]), dtype=torch.int32)
    image_labels = torch.zeros((len(items), count), dtype=torch.int32)
    for b, (_, segmentation) in enumerate(items):
        layers[b, : segmentation.layers.shape[0]] = torch.from_numpy(segmentation.layers)
        image_labels[b, : segmentation.image_labels.shape[0]] = torch.from_numpy(segmentation.image_labels)
    indices = torch.tensor([i for i, _ in items], dtype=torch.long)
    return SegmentationBatch(indices=indices, layers=layers, image_labels=image_labels)
