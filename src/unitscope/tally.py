"""Exact IoU tally: intersections, category-conditional activations and ground truth, counted in batches.

Per image x and unit u the mask is M_u(x) = bilinear_upsample(A_u(x), label size) > T_u (half-pixel
centres and edge clamping, as NetDissect-Lite's Pillow resize and ``F.interpolate(align_corners=False)``;
spec §2.4; see :class:`Bilinear`). Counting is sparse (spec §5.3): only (image, unit) pairs whose raw
maximum exceeds T_u are looked at, within them only the interpolation cells with a corner above T_u,
and within those only the small tiles that can pass T_u. Each image's pixels come as ids of their label
combinations (:mod:`unitscope.broden.combinations`), so a mask pixel costs one id, not one label per
layer: ``pair · C + id`` keys are counted with ``bincount``, and the few (pair, combination) totals are
spread over the combinations' labels with ``index_add_``. Counts are int64 and exact, on whatever device
the activations live (GPU when there). Work is split into chunks so memory is bounded by
``max_elements`` per label batch counted (:func:`update_tallies` counts several against one set of masks),
independent of the number of images. Counts of image shards add up exactly.

Presence rules for the category-conditional activation count act_cat[u, k] (spec §2.5.1–2.5.2); the
category of a label is always its **primary** category; label 0 and labels without a selected primary
category never count anywhere:

- ``"image"`` (original NetDissect): k is present in x if any pixel of any layer, or any image-level
  label of x, has a label of primary category k.
- ``"mask"`` (NetDissect-Lite): k is present for (x, u) if a labelled pixel of primary category k lies
  under M_u(x) in some layer, or x has an image-level label of primary category k.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from unitscope.broden.loaders import SegmentationBatch
from unitscope.settings import PRESENCE_RULES

#: Relative slack of the tile test: far above the float32 rounding of any bilinear value (a few ulps).
_ROUNDING = 64 * 2.0**-24
#: Longest cell, in tiles: longer runs of outputs with the same taps are cut into several cells.
_CELL_TILES = 4


@dataclass(frozen=True)
class _Axis:
    """Bilinear taps along one axis, grouped into cells and tiles.

    Output index i lies between source pixels i0[i] and i1[i], at fraction w[i] from i0[i]. A *cell* is a
    run of at most ``_CELL_TILES · tile`` consecutive outputs with the same taps, cut into *tiles* of
    ``tile`` outputs (fewer at the cell's end; ``tile`` is at most the longest run). Per cell c:
    ``cell_i0``/``cell_i1`` its taps; ``bound_w[:, c]`` the fractions at the bounds of its tiles (the first
    output of each tile, then the cell's last output). Per tile slot c·K + k (K = ``tiles_per_cell``):
    ``tile_w[:, slot]`` the fractions of its outputs and ``tile_number[slot]`` the tile's number along the
    axis. Padding is NaN (never above a threshold). ``layout[j]`` are the outputs of tile j, the last one
    repeated to pad; ``regular`` when that is ``arange(n_out)`` cut into rows. Per-cell arrays put the
    cells last, where torch vectorises.
    """

    i0: torch.Tensor
    i1: torch.Tensor
    w: torch.Tensor
    cell_i0: torch.Tensor
    cell_i1: torch.Tensor
    bound_w: torch.Tensor
    tile_w: torch.Tensor
    tile_number: torch.Tensor
    layout: torch.Tensor
    regular: bool
    tile: int
    tiles_per_cell: int

    @classmethod
    def build(cls, n_in: int, n_out: int, tile: int, device: torch.device) -> _Axis:
        src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)  # half-pixel centres
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = np.where(i1 > i0, src - i0, 0.0).astype(np.float32)
        runs = np.flatnonzero(np.r_[True, np.diff(i0) != 0])
        tile = min(tile, int(np.diff(np.r_[runs, n_out]).max()))
        starts = np.array([first for run, end in zip(runs, np.r_[runs[1:], n_out])
                           for first in range(run, end, _CELL_TILES * tile)])
        lengths = np.diff(np.r_[starts, n_out])
        counts = -(-lengths // tile)
        per_cell = int(counts.max())
        bound_w = np.full((per_cell + 1, len(starts)), np.nan, np.float32)
        tile_w = np.full((tile, len(starts) * per_cell), np.nan, np.float32)
        tile_number = np.zeros(len(starts) * per_cell, np.int64)
        layout = []
        for c, (first, length, count) in enumerate(zip(starts, lengths, counts)):
            bound_w[: count + 1, c] = w[np.r_[first + tile * np.arange(count), first + length - 1]]
            for k in range(count):
                outputs = np.arange(first + k * tile, min(first + (k + 1) * tile, first + length))
                tile_w[: len(outputs), c * per_cell + k] = w[outputs]
                tile_number[c * per_cell + k] = len(layout)
                layout.append(np.r_[outputs, np.full(tile - len(outputs), outputs[-1])])
        layout = np.array(layout)
        regular = layout.size == n_out and bool((layout.reshape(-1) == np.arange(n_out)).all())
        t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        return cls(t(i0), t(i1), t(w), t(i0[starts]), t(i1[starts]), t(bound_w), t(tile_w), t(tile_number),
                   t(layout), regular, tile, per_cell)


class Bilinear:
    """Bilinear resampling of (P, h, w) maps to ``size`` with half-pixel centres and edge clamping.

    This is Pillow's BILINEAR resize of a float image and ``F.interpolate(align_corners=False)`` (spec §2.4,
    equal to ~1e-6), written as explicit float32 operations (``a + (b − a)·w`` across, then down) so that
    :meth:`dense` and the sparse :meth:`mask_tiles` give identical masks on every device. Each value is
    clamped to the largest of its four source corners (float rounding could otherwise overshoot by an
    ulp), so a value can exceed a threshold only in a cell with a corner above it.

    :meth:`mask_tiles` evaluates only such cells, and within them only the tiles (about ``tile`` × ``tile``
    outputs, see :class:`_Axis`) that can pass: in exact arithmetic a bilinear function is largest at a
    corner of any rectangle inside a cell, so a tile whose four corner values (plus a rounding slack) are
    not above the threshold holds no mask pixel. Its cost follows the size of the masks, not sh·sw.
    """

    def __init__(self, source: tuple[int, int], size: tuple[int, int], device: torch.device | str = "cpu",
                 tile: int = 4) -> None:
        self.size = size
        self.rows = _Axis.build(source[0], size[0], tile, torch.device(device))
        self.cols = _Axis.build(source[1], size[1], tile, torch.device(device))
        self.tiles = (len(self.rows.layout), len(self.cols.layout))
        width = source[1]  # flat source positions of every cell's corners a00, a01, a10, a11
        self._corners = torch.cat([(y[:, None] * width + x[None, :]).reshape(-1)
                                   for y in (self.rows.cell_i0, self.rows.cell_i1)
                                   for x in (self.cols.cell_i0, self.cols.cell_i1)])
        # with one tile per cell, testing the tiles' corners would cost as much as evaluating them
        self._tiled = self.rows.tiles_per_cell > 1 or self.cols.tiles_per_cell > 1

    def dense(self, maps: torch.Tensor) -> torch.Tensor:
        """All resampled values, (P, sh, sw)."""
        r, c = self.rows, self.cols
        left, right = maps[:, :, c.i0], maps[:, :, c.i1]
        across, highest = left + (right - left) * c.w, torch.maximum(left, right)
        upper, lower = across[:, r.i0, :], across[:, r.i1, :]
        values = upper + (lower - upper) * r.w[:, None]
        return torch.minimum(values, torch.maximum(highest[:, r.i0, :], highest[:, r.i1, :]))

    def layout(self, field: torch.Tensor) -> torch.Tensor:
        """A (B, sh, sw) field cut into tiles, (B · tiles_y · tiles_x, tile_y · tile_x): row
        ``(b · tiles_y + ty) · tiles_x + tx`` is tile (ty, tx) of image b, in row-major order."""
        r, c = self.rows, self.cols
        if not (r.regular and c.regular):
            field = field.index_select(1, r.layout.reshape(-1)).index_select(2, c.layout.reshape(-1))
        tiles = field.reshape(field.shape[0], self.tiles[0], r.tile, self.tiles[1], c.tile).transpose(2, 3)
        return tiles.reshape(-1, r.tile * c.tile)

    def mask_tiles(self, maps: torch.Tensor, thresholds: torch.Tensor, max_elements: int = 1 << 21
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The mask ``dense(maps) > thresholds`` as ``(pair, tile_y, tile_x, mask (tile_y · tile_x, n))``
        groups of n tiles, each at most ``max_elements`` values; the tiles left out hold no mask pixel."""
        r, c = self.rows, self.cols
        cells = len(r.cell_i0) * len(c.cell_i0)
        corners = maps.flatten(1).index_select(1, self._corners).view(len(maps), 4, cells)  # a00, a01, a10, a11
        pair, cell = (corners.amax(dim=1) > thresholds[:, None]).nonzero(as_tuple=True)
        which = cells * torch.arange(4, device=cell.device)[:, None]
        corners = corners.view(-1).take((pair * 4 * cells + cell)[None] + which)  # (4, Q) at the candidates
        cy, cx = cell // len(c.cell_i0), cell % len(c.cell_i0)
        step = max(1, max_elements // (r.tiles_per_cell * r.tile * c.tiles_per_cell * c.tile))
        for s in range(0, len(cell), step):
            part = slice(s, s + step)
            yield self._cell_tiles(torch.stack([pair[part], cy[part], cx[part]]), corners[:, part], thresholds)

    def _cell_tiles(self, cells: torch.Tensor, corners: torch.Tensor, thresholds: torch.Tensor):
        """Mask tiles of the given cells: ``cells`` (3, Q) = pair, cell y, cell x; ``corners`` (4, Q)."""
        r, c = self.rows, self.cols
        if self._tiled:
            pair, cy, cx = cells
            bounds = _bilinear(corners, c.bound_w.index_select(1, cx), r.bound_w.index_select(1, cy))
            highest = torch.maximum(torch.maximum(bounds[:-1, :-1], bounds[:-1, 1:]),
                                    torch.maximum(bounds[1:, :-1], bounds[1:, 1:]))
            slack = corners.abs().amax(dim=0) * _ROUNDING + torch.finfo(torch.float32).tiny
            ky, kx, q = (highest > thresholds[pair] - slack).nonzero(as_tuple=True)
            cells, corners = cells.index_select(1, q), corners.index_select(1, q)
        else:
            ky = kx = torch.zeros_like(cells[0])
        pair, cy, cx = cells
        slot_y, slot_x = cy * r.tiles_per_cell + ky, cx * c.tiles_per_cell + kx
        values = _bilinear(corners, c.tile_w.index_select(1, slot_x), r.tile_w.index_select(1, slot_y))
        # no clamp to the corners needed: every evaluated cell has a corner above its threshold
        mask = (values > thresholds[pair]).flatten(0, 1)
        return pair, r.tile_number[slot_y], c.tile_number[slot_x], mask


def _bilinear(corners: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Values (ny, nx, Q) of Q cells with corners (4, Q) = a00, a01, a10, a11 at fractions x (nx, Q) across
    and y (ny, Q) down, by the same float32 operations as :meth:`Bilinear.dense`."""
    a00, a01, a10, a11 = corners
    upper, lower = a00 + (a01 - a00) * x, a10 + (a11 - a10) * x
    return upper[None] + (lower - upper)[None] * y[:, None]


@lru_cache(maxsize=16)
def _grid(source: tuple[int, int], size: tuple[int, int], device: torch.device) -> Bilinear:
    """The :class:`Bilinear` of a layer's map size, built once per process (its tables take milliseconds)."""
    return Bilinear(source, size, device)


@dataclass
class TallyCounts:
    """Integer totals of one layer over a set of images; ``+`` combines disjoint image sets.

    ``intersect`` (units, L+1), ``truth`` (L+1,), ``act_cat`` (units, categories) and ``activation``
    (units,: |M_u| summed over images, unconditioned) are int64; ``images`` counts the images tallied.
    """

    intersect: np.ndarray
    truth: np.ndarray
    act_cat: np.ndarray
    activation: np.ndarray
    images: int

    def __add__(self, other: TallyCounts) -> TallyCounts:
        if self.intersect.shape != other.intersect.shape or self.act_cat.shape != other.act_cat.shape:
            raise ValueError("cannot add tallies of different layers or label sets")
        return TallyCounts(
            self.intersect + other.intersect,
            self.truth + other.truth,
            self.act_cat + other.act_cat,
            self.activation + other.activation,
            self.images + other.images,
        )

    def union_activation(self, primary: np.ndarray) -> np.ndarray:
        """act_cat[u, cat(c)] for every label c, (units, L+1) int64; 0 where c has no primary category."""
        primary = np.asarray(primary)
        gathered = self.act_cat[:, np.clip(primary, 0, None)]
        return np.where(primary[None, :] >= 0, gathered, 0)

    def iou(self, primary: np.ndarray) -> np.ndarray:
        """IoU[u, c] = I / (act_cat[u, cat(c)] + truth[c] − I), float64 (units, L+1); 0 where the union is 0."""
        union = self.union_activation(primary) + self.truth[None, :] - self.intersect
        out = np.zeros(union.shape, dtype=np.float64)
        np.divide(self.intersect, union, out=out, where=union > 0)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays to save with ``numpy.savez``; :meth:`from_arrays` restores them."""
        return {
            "intersect": self.intersect,
            "truth": self.truth,
            "act_cat": self.act_cat,
            "activation": self.activation,
            "images": np.int64(self.images),
        }

    @classmethod
    def from_arrays(cls, arrays) -> TallyCounts:
        keys = ("intersect", "truth", "act_cat", "activation")
        return cls(*(np.asarray(arrays[key], dtype=np.int64) for key in keys), int(arrays["images"]))


class Tally:
    """Streaming exact tally of one layer.

    ``thresholds`` (units,) float32; ``primary`` (L+1,) int: index of each label's primary category in the
    selected categories, −1 for label 0 and unselected labels; ``categories`` = number of selected categories.
    """

    def __init__(
        self,
        thresholds: np.ndarray | torch.Tensor,
        primary: np.ndarray,
        categories: int,
        presence: str = "image",
        device: torch.device | str = "cpu",
        max_elements: int = 1 << 21,
    ) -> None:
        if presence not in PRESENCE_RULES:
            raise ValueError(f"presence must be one of {PRESENCE_RULES}, got {presence!r}")
        self.device = torch.device(device)
        self.thresholds = torch.as_tensor(np.asarray(thresholds, dtype=np.float32), device=self.device)
        self.primary = torch.as_tensor(np.asarray(primary, dtype=np.int64), device=self.device)
        # category of each label for presence, with "none" (label 0, unselected) as an extra last bucket
        self._category = torch.where(self.primary >= 0, self.primary, categories)
        self.units = int(self.thresholds.shape[0])
        self.labels = int(self.primary.shape[0])
        self.categories = categories
        self.presence = presence
        self.max_elements = max_elements
        zeros = lambda *shape: torch.zeros(shape, dtype=torch.int64, device=self.device)  # noqa: E731
        self._intersect = zeros(self.units * self.labels)
        self._truth = zeros(self.labels)
        self._act_cat = zeros(self.units, categories)
        self._activation = zeros(self.units)
        self._images = 0

    def update(self, acts: torch.Tensor, batch: SegmentationBatch) -> None:
        """Count one batch: activations (B, units, h, w) and the batch's segmentations."""
        update_tallies([self], acts, [batch])

    def _labels(self, acts: torch.Tensor, batch: SegmentationBatch) -> _BatchLabels:
        """Count the ground truth of one label batch and return it in the form the mask counts need."""
        ids = batch.combination_ids.to(device=self.device)
        labels = batch.combination_labels.to(device=self.device, dtype=torch.int64)  # (B, C, D)
        pixels = batch.combination_pixels.to(device=self.device)
        image_labels = batch.image_labels.to(device=self.device, dtype=torch.int64)
        size, units = (int(ids.shape[1]), int(ids.shape[2])), acts.shape[1]
        if units != self.units:
            raise ValueError(f"activations have {units} units but {self.units} thresholds were given")
        if ids.shape[0] != acts.shape[0]:
            raise ValueError("activation and segmentation batches differ in size")
        self._images += acts.shape[0]

        # Ground truth: every layer counts; an image-level label counts sh·sw pixels per occurrence.
        self._truth.index_add_(0, labels.reshape(-1), pixels[:, :, None].expand_as(labels).reshape(-1))
        self._truth += torch.bincount(image_labels.reshape(-1), minlength=self.labels) * (size[0] * size[1])
        image_present = self._present(image_labels)  # (B, C) from image-level labels
        if self.presence == "image":
            image_present |= self._present(labels.reshape(len(labels), -1))  # padding is label 0: no category
        return _BatchLabels(ids, labels, image_labels, image_present, size)

    def _count_pairs(self, combinations, batch: _BatchLabels, image, unit) -> torch.Tensor:
        """Count the pixels ``combinations`` (P, C) of each label combination under the masks of the pairs
        (``image``, ``unit``); returns which categories are present for each pair (P, categories), the
        presence rule's answer (subclasses count more from it)."""
        labels, image_labels = batch.labels, batch.image_labels
        size_of_mask = combinations.sum(dim=1)  # |M_u(x)|
        self._activation.index_add_(0, unit, size_of_mask)
        pair, combination = combinations.nonzero(as_tuple=True)
        under = labels[image[pair], combination]  # (E, D): every layer's label under the mask
        keys = (unit[pair] * self.labels)[:, None] + under
        pixels = combinations[pair, combination][:, None].expand_as(keys)
        self._intersect.index_add_(0, keys.reshape(-1), pixels.reshape(-1))
        image_keys = unit[:, None] * self.labels + image_labels[image]  # (P, K)
        weights = size_of_mask[:, None].expand_as(image_keys)
        self._intersect.index_add_(0, image_keys.reshape(-1), weights.reshape(-1))

        present = batch.image_present[image]
        if self.presence == "mask":
            buckets = self.categories + 1
            found = torch.bincount((pair[:, None] * buckets + self._category[under]).reshape(-1),
                                   minlength=len(image) * buckets)
            present = present | (found.view(len(image), buckets)[:, :-1] > 0)
        self._act_cat.index_add_(0, unit, size_of_mask[:, None] * present.long())
        return present

    def _present(self, labels: torch.Tensor) -> torch.Tensor:
        """(rows, C) bool: which primary categories the labels of each row of ``labels`` (rows, n) have."""
        rows, buckets = labels.shape[0], self.categories + 1
        keys = torch.arange(rows, device=self.device)[:, None] * buckets + self._category[labels]
        return torch.bincount(keys.reshape(-1), minlength=rows * buckets).view(rows, buckets)[:, :-1] > 0

    def counts(self) -> TallyCounts:
        """The totals so far, on the CPU."""
        uncounted = self.primary.cpu().numpy() < 0  # label 0 and labels of no selected category
        intersect, truth = self._intersect.view(self.units, self.labels).cpu().numpy(), self._truth.cpu().numpy()
        return TallyCounts(
            np.where(uncounted[None, :], 0, intersect),
            np.where(uncounted, 0, truth),
            self._act_cat.cpu().numpy(),
            self._activation.cpu().numpy(),
            self._images,
        )


@dataclass(frozen=True)
class _BatchLabels:
    """One label batch on a tally's device: combination ids (B, sh, sw), their labels (B, C, D), image-level
    labels (B, K) and the categories present in each image (B, categories)."""

    ids: torch.Tensor
    labels: torch.Tensor
    image_labels: torch.Tensor
    image_present: torch.Tensor
    size: tuple[int, int]


def update_tallies(tallies: Sequence[Tally], acts: torch.Tensor, batches: Sequence[SegmentationBatch]) -> None:
    """Count one batch of activations (B, units, h, w) into several tallies, each with its own label batch
    (the permutation null pairs the same activations with other images' labels, :mod:`unitscope.dissect.null`).

    The tallies share thresholds, labels and device; the masks M_u(x) are computed once for all of them.
    """
    first = tallies[0]
    acts = acts.to(device=first.device, dtype=torch.float32)
    labelled = [tally._labels(acts, batch) for tally, batch in zip(tallies, batches, strict=True)]
    sizes = {batch.size for batch in labelled}
    if len(sizes) != 1:
        raise ValueError(f"label batches of different sizes {sorted(sizes)} cannot share masks")
    grid = _grid(tuple(acts.shape[2:]), labelled[0].size, first.device)
    tiles = [grid.layout(batch.ids) for batch in labelled]
    units = acts.shape[1]
    # resampled values never exceed the map's maximum (Bilinear clamps), so other pairs have empty masks
    pair_image, pair_unit = (acts.amax(dim=(2, 3)) > first.thresholds).nonzero(as_tuple=True)
    most = max(batch.labels.shape[1] for batch in labelled)  # label combinations of an image
    chunk = max(1, first.max_elements // (acts.shape[2] * acts.shape[3] + most))
    for start in range(0, len(pair_image), chunk):
        image, unit = pair_image[start : start + chunk], pair_unit[start : start + chunk]
        maps = acts.flatten(0, 1).index_select(0, image * units + unit)
        counts = [torch.zeros(len(image) * batch.labels.shape[1] + 1, dtype=torch.int64, device=first.device)
                  for batch in labelled]
        for pair, tile_y, tile_x, mask in grid.mask_tiles(maps, first.thresholds[unit], first.max_elements):
            rows = (image[pair] * grid.tiles[0] + tile_y) * grid.tiles[1] + tile_x
            for total, batch_tiles, batch in zip(counts, tiles, labelled):
                ids = batch_tiles.index_select(0, rows)
                # key 1 + pair · C + id inside the mask, 0 outside; int32 (pairs · C < max_elements) halves traffic
                keys = (ids + (pair * batch.labels.shape[1] + 1).int()[:, None]) * mask.T
                total += torch.bincount(keys.reshape(-1), minlength=len(total))
        for tally, total, batch in zip(tallies, counts, labelled):
            combinations = total[1:].view(len(image), batch.labels.shape[1])  # (P, C) pixels of each combination
            tally._count_pairs(combinations, batch, image, unit)
