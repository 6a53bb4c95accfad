"""Exact IoU tally: intersections, category-conditional activations and ground truth, counted in batches.

Per image x and unit u the mask is M_u(x) = bilinear_upsample(A_u(x), label size) > T_u (half-pixel
centres and edge clamping, as NetDissect-Lite's Pillow resize and ``F.interpolate(align_corners=False)``;
spec §2.4; see :class:`Bilinear`). Counting is sparse (spec §5.3): only (image, unit) pairs whose raw
maximum exceeds T_u are looked at, and within them only the interpolation cells with a corner above T_u
are evaluated; the label layers are gathered at the masks' pixels and ``unit · (L+1) + label`` keys are
accumulated with ``index_add_``. Counts are int64 and exact, on whatever device the activations live
(GPU when there). Work is split into chunks of pairs so memory is bounded by ``max_elements``,
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

from dataclasses import dataclass

import numpy as np
import torch

from unitscope.options import PRESENCE_RULES



@dataclass(frozen=True)
class _Axis:
    """Bilinear taps along one axis: output index i reads source i0[i], i1[i] with weights w0[i], w1[i].

    Consecutive outputs with the same taps form a *cell*; ``cell_*`` hold each cell's taps, first output
    index and weights, padded with NaN to the longest cell (a NaN value is never above a threshold).
    """

    i0: torch.Tensor
    i1: torch.Tensor
    w0: torch.Tensor
    w1: torch.Tensor
    cell_i0: torch.Tensor
    cell_i1: torch.Tensor
    cell_start: torch.Tensor
    cell_w0: torch.Tensor
    cell_w1: torch.Tensor

    @classmethod
    def build(cls, n_in: int, n_out: int, device: torch.device) -> _Axis:
        src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)  # half-pixel centres
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        lam = np.where(i1 > i0, src - i0, 0.0)
        w0, w1 = (1.0 - lam).astype(np.float32), lam.astype(np.float32)
        starts = np.flatnonzero(np.r_[True, np.diff(i0) != 0])
        lengths = np.diff(np.r_[starts, n_out])
        offsets = np.arange(lengths.max())
        valid = offsets[None, :] < lengths[:, None]
        index = np.minimum(starts[:, None] + offsets[None, :], n_out - 1)
        t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        return cls(t(i0), t(i1), t(w0), t(w1), t(i0[starts]), t(i1[starts]), t(starts),
                   t(np.where(valid, w0[index], np.float32("nan"))),
                   t(np.where(valid, w1[index], np.float32("nan"))))


class Bilinear:
    """Bilinear resampling of (P, h, w) maps to ``size`` with half-pixel centres and edge clamping.

    This is Pillow's BILINEAR resize of a float image and ``F.interpolate(align_corners=False)`` (spec §2.4,
    equal to ~1e-6), written as explicit float32 operations so that :meth:`dense` and the sparse
    :meth:`above` give identical values on every device. Each value is clamped to the largest of its four
    source corners (float rounding could otherwise overshoot by an ulp), so a value can exceed a threshold
    only where a corner does: :meth:`above` evaluates only those cells, and its cost follows the size of
    the masks, not sh·sw.
    """

    def __init__(self, source: tuple[int, int], size: tuple[int, int], device: torch.device | str = "cpu") -> None:
        self.size = size
        self.rows = _Axis.build(source[0], size[0], torch.device(device))
        self.cols = _Axis.build(source[1], size[1], torch.device(device))

    def dense(self, maps: torch.Tensor) -> torch.Tensor:
        """All resampled values, (P, sh, sw)."""
        r, c = self.rows, self.cols
        left, right = maps[:, :, c.i0], maps[:, :, c.i1]
        across, highest = left * c.w0 + right * c.w1, torch.maximum(left, right)
        values = across[:, r.i0, :] * r.w0[:, None] + across[:, r.i1, :] * r.w1[:, None]
        return torch.minimum(values, torch.maximum(highest[:, r.i0, :], highest[:, r.i1, :]))

    def above(self, maps: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(pair, y, x)`` of every resampled value > its map's threshold (same values as :meth:`dense`)."""
        r, c = self.rows, self.cols
        corners = [maps[:, yi][:, :, xi] for yi in (r.cell_i0, r.cell_i1) for xi in (c.cell_i0, c.cell_i1)]
        highest = torch.stack(corners).amax(dim=0)  # (P, cells y, cells x)
        pair, cy, cx = (highest > thresholds[:, None, None]).nonzero(as_tuple=True)
        a00, a01, a10, a11 = (corner[pair, cy, cx][:, None] for corner in corners)
        x0, x1 = c.cell_w0[cx], c.cell_w1[cx]
        top, bottom = a00 * x0 + a01 * x1, a10 * x0 + a11 * x1  # (Q, Lx), as `across` in dense
        values = top[:, None, :] * r.cell_w0[cy][:, :, None] + bottom[:, None, :] * r.cell_w1[cy][:, :, None]
        values = torch.minimum(values, highest[pair, cy, cx][:, None, None])
        q, dy, dx = (values > thresholds[pair][:, None, None]).nonzero(as_tuple=True)
        return pair[q], r.cell_start[cy[q]] + dy, c.cell_start[cx[q]] + dx


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of (P, h, w) maps to ``size`` as the tally does it (see :class:`Bilinear`)."""
    return Bilinear(tuple(maps.shape[1:]), size, maps.device).dense(maps)


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
        self._grids: dict[tuple, Bilinear] = {}

    def update(self, acts: torch.Tensor, layers: torch.Tensor, image_labels: torch.Tensor) -> None:
        """Count one batch: activations (B, units, h, w), pixel label layers (B, D, sh, sw) and image-level
        labels (B, K), both global label numbers zero-padded."""
        acts = acts.to(device=self.device, dtype=torch.float32)
        layers = layers.to(device=self.device, dtype=torch.int32)  # int32 halves the gathers of label pixels
        image_labels = image_labels.to(device=self.device, dtype=torch.int64)
        batch, units = acts.shape[:2]
        if units != self.units:
            raise ValueError(f"activations have {units} units but {self.units} thresholds were given")
        if layers.shape[0] != batch or image_labels.shape[0] != batch:
            raise ValueError("activation and segmentation batches differ in size")
        size = (int(layers.shape[2]), int(layers.shape[3]))
        self._images += batch

        # Labels that never count (0, or no selected primary category) become 0; column 0 is dropped at the end.
        layers = torch.where(self.primary[layers] >= 0, layers, 0)
        image_labels = torch.where(self.primary[image_labels] >= 0, image_labels, 0)
        # Ground truth: every layer counts; an image-level label counts sh·sw pixels per occurrence.
        self._truth += torch.bincount(layers.reshape(-1), minlength=self.labels)
        self._truth += torch.bincount(image_labels.reshape(-1), minlength=self.labels) * (size[0] * size[1])

        image_present = self._present(image_labels)  # (B, C) from image-level labels
        if self.presence == "image":
            image_present |= self._present(layers.reshape(batch, -1))
        pixels = layers.permute(0, 2, 3, 1).reshape(batch * size[0] * size[1], -1)  # (B·sh·sw, D)

        key = (tuple(acts.shape[2:]), size)
        if key not in self._grids:
            self._grids[key] = Bilinear(*key, self.device)
        # resampled values never exceed the map's maximum (Bilinear clamps), so other pairs have empty masks
        pair_image, pair_unit = (acts.amax(dim=(2, 3)) > self.thresholds).nonzero(as_tuple=True)
        chunk = max(1, self.max_elements // (size[0] * size[1]))
        for start in range(0, len(pair_image), chunk):
            image, unit = pair_image[start : start + chunk], pair_unit[start : start + chunk]
            self._count_pairs(self._grids[key], acts, pixels, image_labels, image_present, image, unit)

    def _present(self, labels: torch.Tensor) -> torch.Tensor:
        """(rows, C) bool: which primary categories the labels of each row of ``labels`` (rows, n) have."""
        rows, buckets = labels.shape[0], self.categories + 1
        keys = torch.arange(rows, device=self.device)[:, None] * buckets + self._category[labels]
        return torch.bincount(keys.reshape(-1), minlength=rows * buckets).view(rows, buckets)[:, :-1] > 0

    def _count_pairs(self, grid, acts, pixels, image_labels, image_present, image, unit) -> None:
        pair, y, x = grid.above(acts[image, unit], self.thresholds[unit])  # the masks' pixels
        size_of_mask = torch.bincount(pair, minlength=len(image))  # |M_u(x)|
        self._activation.index_add_(0, unit, size_of_mask)

        sh, sw = grid.size
        labels = pixels[(image[pair] * sh + y) * sw + x]  # (mask pixels, D)
        keys = (unit[pair] * self.labels)[:, None] + labels
        ones = torch.ones(keys.numel(), dtype=torch.int64, device=self.device)
        self._intersect.index_add_(0, keys.reshape(-1), ones)
        image_keys = unit[:, None] * self.labels + image_labels[image]  # (P, K)
        weights = size_of_mask[:, None].expand_as(image_keys)
        self._intersect.index_add_(0, image_keys.reshape(-1), weights.reshape(-1))

        present = image_present[image]
        if self.presence == "mask":
            buckets = self.categories + 1
            under = torch.bincount((pair[:, None] * buckets + self._category[labels]).reshape(-1),
                                   minlength=len(image) * buckets)
            present = present | (under.view(len(image), buckets)[:, :-1] > 0)
        self._act_cat.index_add_(0, unit, size_of_mask[:, None] * present.long())

    def counts(self) -> TallyCounts:
        """The totals so far, on the CPU."""
        return TallyCounts(
            _without_label_zero(self._intersect.view(self.units, self.labels).cpu().numpy()),
            _without_label_zero(self._truth.cpu().numpy()),
            self._act_cat.cpu().numpy(),
            self._activation.cpu().numpy(),
            self._images,
        )


def _without_label_zero(counts: np.ndarray) -> np.ndarray:
    """Counts with the label-0 column zeroed: uncounted labels were mapped to 0 and landed there."""
    counts = counts.copy()
    counts[..., 0] = 0
    return counts
