"""Primitives of the Broden on-disk format (spec §1): cells, label PNG encoding, splits."""

from __future__ import annotations

import hashlib

import numpy as np

#: Broden's categories in the order the real ``category.csv`` lists them.
CATEGORIES: tuple[str, ...] = ("color", "object", "part", "material", "scene", "texture")
#: Categories whose labels apply to a whole image and are stored as integers in ``index.csv``.
IMAGE_LEVEL_CATEGORIES: frozenset[str] = frozenset({"scene", "texture"})
#: Pixel categories that can have several layers; real Broden numbers their files ``_<k>`` even when there is one.
MULTI_LAYER_CATEGORIES: frozenset[str] = frozenset({"part"})
#: Columns of ``index.csv`` that precede the per-category columns.
INDEX_COLUMNS: tuple[str, ...] = ("image", "split", "ih", "iw", "sh", "sw")
#: Fraction of images assigned to the ``train`` split by the md5 rule.
TRAIN_FRACTION = 0.7


def parse_cell(cell: object) -> list[str | int]:
    """Split an ``index.csv`` category cell on ``;``: all-digit items become label numbers, the rest filenames."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    items = [item.strip() for item in str(cell).split(";")]
    return [int(item) if item.isdigit() else item for item in items if item]


def format_cell(items: list[str | int]) -> str:
    """Inverse of :func:`parse_cell`."""
    return ";".join(str(item) for item in items)


def decode_labels(rgb: np.ndarray) -> np.ndarray:
    """Global label numbers of a label PNG: R + 256·G (B is unused)."""
    if rgb.ndim != 3 or rgb.shape[2] < 2:
        raise ValueError(f"a Broden label PNG must be RGB, got an array of shape {rgb.shape}")
    return rgb[..., 0].astype(np.int32) + 256 * rgb[..., 1].astype(np.int32)


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """Label numbers (H, W) to the RGB array of a Broden label PNG."""
    labels = np.asarray(labels)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= 256 * 256:
        raise ValueError("label numbers must lie in [0, 65535] to be stored as R + 256·G")
    rgb = np.zeros(labels.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = labels & 255  # = labels % 256 for numbers checked non-negative; numpy's % is slow
    rgb[..., 1] = labels >> 8
    return rgb


def split_of(image_path: str) -> str:
    """Broden's split rule: md5 of the image path mapped to [0, 1); ≤ 0.7 is train, the rest val."""
    digest = hashlib.md5(image_path.encode("utf-8")).hexdigest()
    fraction = int(digest, 16) / float(1 << 128)
    return "train" if fraction <= TRAIN_FRACTION else "val"
