"""A layer's masks counted by label set: everything a formula's IoU needs, in a few sparse tables.

A logical formula over concepts holds at a pixel or not according to the *set* of labels there: the pixel's
labels in every layer plus its image's image-level labels. The dataset has few distinct sets (one per label
combination of each image, :mod:`unitscope.broden.combinations`, most of them shared between images), so the
exact IoU of any formula follows from counts per set: the dataset's pixels of each set, and each unit's mask
pixels of each set. :class:`CombinationTally` is the dissection's :class:`~unitscope.tally.Tally` (same masks,
same counts) that records those as well, together with each unit's mask pixels by which categories are
present, the union term of the dissection's presence rule.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from scipy import sparse

from unitscope.broden.loaders import SegmentationBatch
from unitscope.tally import Tally, TallyCounts, _BatchLabels

#: Batches of counts kept apart before they are added up (bounds memory by the distinct pairs, not the batches).
_PENDING_PARTS = 64


@dataclass(frozen=True)
class _SetLabels(_BatchLabels):
    """A label batch whose combinations are also numbered among the dataset's label sets: ``sets`` (B, C)."""

    sets: torch.Tensor


@dataclass(frozen=True)
class CombinationCounts:
    """A layer's masks by label set, over a dataset.

    ``members`` bool CSR (S, L+1): the labels of each label set (selected categories only; label 0 never);
    ``pixels`` int64 (S,): the dataset's pixels with each set; ``mask`` int64 CSR (units, S): each unit's mask
    pixels with each set; ``signatures`` int64 (G,): bit k set when category k is present (the presence rule
    of the dissection) and ``activation`` int64 (units, G): each unit's mask pixels under each signature;
    ``primary`` (L+1,) the primary category of each label (−1: not counted); ``tally``: the dissection's own
    counts from the same masks.
    """

    members: sparse.csr_matrix
    pixels: np.ndarray
    mask: sparse.csr_matrix
    signatures: np.ndarray
    activation: np.ndarray
    primary: np.ndarray
    categories: list[str]
    presence: str
    tally: TallyCounts

    @property
    def units(self) -> int:
        return self.mask.shape[0]


class CombinationTally(Tally):
    """A :class:`~unitscope.tally.Tally` that also counts each unit's mask pixels per label set and per
    category-presence signature (:class:`CombinationCounts`)."""

    def __init__(self, thresholds, primary, categories: int, presence: str = "image", device="cpu",
                 max_elements: int = 1 << 21) -> None:
        super().__init__(thresholds, primary, categories, presence, device, max_elements)
        if categories > 62:
            raise ValueError(f"{categories} categories: presence signatures hold at most 62")
        self._primary = np.asarray(primary, dtype=np.int64)
        self._sets: dict[bytes, int] = {}
        self._set_labels: list[np.ndarray] = []
        self._set_pixels: list[int] = []
        self._mask_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._signature_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._bits = 1 << torch.arange(categories, device=self.device)

    def _labels(self, acts: torch.Tensor, batch: SegmentationBatch) -> _SetLabels:
        labelled = super()._labels(acts, batch)
        sets = torch.as_tensor(self._number_sets(batch), device=self.device)
        return _SetLabels(**{f.name: getattr(labelled, f.name) for f in fields(labelled)}, sets=sets)

    def _number_sets(self, batch: SegmentationBatch) -> np.ndarray:
        """(B, C) the dataset-wide number of each combination's label set (−1 for padding); counts the pixels."""
        labels = np.asarray(batch.combination_labels, dtype=np.int64)
        pixels = np.asarray(batch.combination_pixels, dtype=np.int64)
        image_labels = np.asarray(batch.image_labels, dtype=np.int64)
        b, c = pixels.shape
        rows = np.concatenate([labels, np.broadcast_to(image_labels[:, None, :], (b, c, image_labels.shape[1]))], 2)
        rows = np.sort(np.where(self._primary[rows] >= 0, rows, 0), axis=2)
        rows[:, :, 1:][rows[:, :, 1:] == rows[:, :, :-1]] = 0  # a label in two layers is one member of the set
        rows = np.sort(rows, axis=2)
        numbers = np.full((b, c), -1, np.int64)
        for i, j in zip(*np.nonzero(pixels)):
            key = rows[i, j][rows[i, j] > 0].tobytes()  # the set, whatever the batch's padding
            number = self._sets.get(key)
            if number is None:
                number = self._sets[key] = len(self._set_labels)
                self._set_labels.append(rows[i, j][rows[i, j] > 0])
                self._set_pixels.append(0)
            self._set_pixels[number] += int(pixels[i, j])
            numbers[i, j] = number
        return numbers

    def _count_pairs(self, combinations, batch: _SetLabels, image, unit) -> torch.Tensor:
        present = super()._count_pairs(combinations, batch, image, unit)
        pair, combination = combinations.nonzero(as_tuple=True)
        self._mask_parts.append(tuple(t.cpu().numpy() for t in (
            unit[pair], batch.sets[image[pair], combination], combinations[pair, combination])))
        signature = (present.long() * self._bits).sum(dim=1)
        self._signature_parts.append(tuple(t.cpu().numpy() for t in (unit, signature, combinations.sum(dim=1))))
        if len(self._mask_parts) >= _PENDING_PARTS:  # keep memory to the distinct (unit, set) pairs
            self._mask_parts = [_coalesced(self._mask_parts)]
            self._signature_parts = [_coalesced(self._signature_parts)]
        return present

    def combination_counts(self, categories: list[str]) -> CombinationCounts:
        """The counts so far (``categories``: the names of the selected categories, in order)."""
        sets = len(self._set_labels)
        lengths = [len(labels) for labels in self._set_labels]
        members = sparse.csr_matrix(
            (np.ones(sum(lengths), bool), np.concatenate([np.zeros(0, np.int64), *self._set_labels]),
             np.r_[0, np.cumsum(lengths)]), shape=(sets, self.labels))
        mask = _summed(self._mask_parts, (self.units, sets))
        rows, keys, values = (np.concatenate([part[k] for part in self._signature_parts]) if self._signature_parts
                              else np.zeros(0, np.int64) for k in range(3))
        signatures, column = np.unique(keys, return_inverse=True)
        activation = np.zeros((self.units, len(signatures)), np.int64)
        np.add.at(activation, (rows, column.reshape(-1)), values)
        return CombinationCounts(members, np.asarray(self._set_pixels, np.int64), mask, signatures.astype(np.int64),
                                 activation, self._primary, list(categories), self.presence, self.counts())


def _coalesced(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (row, column, value) triple array per distinct (row, column), values added."""
    rows, columns, values = (np.concatenate([part[k] for part in parts]) for k in range(3))
    pairs, inverse = np.unique(np.stack([rows, columns]), axis=1, return_inverse=True)
    sums = np.zeros(pairs.shape[1], np.int64)
    np.add.at(sums, inverse.reshape(-1), values.astype(np.int64))
    return pairs[0], pairs[1], sums


def _summed(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], shape: tuple[int, int]) -> sparse.csr_matrix:
    """The CSR matrix of (row, column, value) triples, duplicates added."""
    if not parts:
        return sparse.csr_matrix(shape, dtype=np.int64)
    rows, columns, values = (np.concatenate([part[k] for part in parts]) for k in range(3))
    matrix = sparse.coo_matrix((values.astype(np.int64), (rows, columns)), shape=shape).tocsr()
    matrix.sum_duplicates()
    return matrix
