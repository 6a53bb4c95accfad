"""Write a dataset in the Broden on-disk format (spec §1.2–1.7).

Used by the procedural probe-set generator and by tests that build small Broden directories. The writer
accumulates the per-category label statistics while images are added and writes the metadata CSVs at
:meth:`BrodenWriter.close`. Everything goes to a temporary sibling directory that is renamed into place
only when complete, so an interrupted run never leaves a half-written dataset behind.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from unitscope.broden.format import (
    CATEGORIES,
    IMAGE_LEVEL_CATEGORIES,
    INDEX_COLUMNS,
    MULTI_LAYER_CATEGORIES,
    encode_labels,
    format_cell,
    split_of,
)


class BrodenWriter:
    """Accumulates images, label layers and image-level labels; writes a complete Broden directory.

    ``labels`` maps every global label number (1..L, contiguous) to its unique name. Pixel layers hold
    global label numbers (0 = unlabelled). Use as a context manager, or call :meth:`close` to finish.
    """

    def __init__(
        self,
        root: str | Path,
        labels: Mapping[int, str],
        *,
        image_size: int,
        label_size: int,
        categories: Sequence[str] = CATEGORIES,
        jpeg_quality: int = 92,
    ) -> None:
        numbers = sorted(labels)
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError("label numbers must be contiguous from 1")
        if len(set(labels.values())) != len(labels):
            raise ValueError("label names must be unique")
        self.root = Path(root)
        if self.root.exists():
            raise FileExistsError(f"{self.root} already exists; remove it or choose another --out")
        self.labels = dict(labels)
        self.categories = list(categories)
        self.image_size = image_size
        self.label_size = label_size
        self.jpeg_quality = jpeg_quality
        self._tmp = self.root.with_name(f".{self.root.name}.partial")
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        (self._tmp / "images").mkdir(parents=True)
        self._rows: list[dict[str, object]] = []
        # (category, label) -> [image count, coverage in image-equivalents]
        self._stats: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0])

    def __enter__(self) -> BrodenWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def add_image(
        self,
        source: str,
        stem: str,
        image: np.ndarray,
        pixel_layers: Mapping[str, Sequence[np.ndarray]] | None = None,
        image_labels: Mapping[str, Sequence[int]] | None = None,
    ) -> str:
        """Add one image with its pixel-label layers per category and its image-level labels.

        Returns the image path relative to ``images/`` as written in ``index.csv``.
        """
        pixel_layers = pixel_layers or {}
        image_labels = image_labels or {}
        size = self.image_size
        if image.shape != (size, size, 3) or image.dtype != np.uint8:
            raise ValueError(f"image {stem!r} must be uint8 of shape ({size}, {size}, 3), got {image.dtype} {image.shape}")
        image_rel = f"{source}/{stem}.jpg"
        (self._tmp / "images" / source).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(self._tmp / "images" / image_rel, quality=self.jpeg_quality)
        row: dict[str, object] = {
            "image": image_rel,
            "split": split_of(image_rel),
            "ih": size,
            "iw": size,
            "sh": self.label_size,
            "sw": self.label_size,
        }
        for category in self.categories:
            row[category] = ""
        for category, layers in pixel_layers.items():
            self._check_category(category, image_level=False)
            names = []
            for k, layer in enumerate(layers, start=1):
                layer = np.asarray(layer)
                if layer.shape != (self.label_size, self.label_size):
                    raise ValueError(f"{category} layer {k} of {stem!r} has shape {layer.shape}")
                numbered = len(layers) > 1 or category in MULTI_LAYER_CATEGORIES
                name = f"{source}/{stem}_{category}_{k}.png" if numbered else f"{source}/{stem}_{category}.png"
                Image.fromarray(encode_labels(layer)).save(self._tmp / "images" / name, compress_level=1)
                names.append(name)
            self._count_pixels(category, layers)
            row[category] = format_cell(names)
        for category, numbers in image_labels.items():
            self._check_category(category, image_level=True)
            for number in numbers:
                self._check_label(number)
                stats = self._stats[(category, number)]
                stats[0] += 1
                stats[1] += 1.0
            row[category] = format_cell(list(numbers))
        self._rows.append(row)
        return image_rel

    def add_file(self, name: str, text: str) -> None:
        """Add a text file (e.g. a generator's metadata) at the dataset root; it appears with the dataset."""
        if Path(name).name != name or name in {"index.csv", "category.csv", "label.csv"} or name.startswith("c_"):
            raise ValueError(f"{name!r} must be a plain file name that is not one of the Broden tables")
        (self._tmp / name).write_text(text, encoding="utf-8")

    def close(self) -> Path:
        """Write the metadata CSVs and move the finished dataset into place."""
        try:
            if not self._rows:
                raise ValueError("refusing to write an empty Broden dataset: add at least one image")
            index = pd.DataFrame(self._rows, columns=[*INDEX_COLUMNS, *self.categories])
            index.to_csv(self._tmp / "index.csv", index=False)
            self._write_label_tables()
            self._tmp.rename(self.root)
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        return self.root

    def _check_category(self, category: str, *, image_level: bool) -> None:
        if category not in self.categories:
            raise ValueError(f"unknown category {category!r}; expected one of {self.categories}")
        if (category in IMAGE_LEVEL_CATEGORIES) != image_level:
            kind = "image-level" if category in IMAGE_LEVEL_CATEGORIES else "pixel"
            raise ValueError(f"category {category!r} is {kind}")

    def _check_label(self, number: int) -> None:
        if number not in self.labels:
            raise ValueError(f"label number {number} is not in the label table")

    def _count_pixels(self, category: str, layers: Sequence[np.ndarray]) -> None:
        counts = np.bincount(np.concatenate([np.asarray(layer).ravel() for layer in layers]))
        counts[0] = 0
        pixels = float(self.label_size * self.label_size)
        for number in np.flatnonzero(counts).tolist():
            count = int(counts[number])
            self._check_label(number)
            stats = self._stats[(category, number)]
            stats[0] += 1
            stats[1] += count / pixels

    def _write_label_tables(self) -> None:
        per_label: dict[int, list[tuple[str, int, float]]] = defaultdict(list)
        for (category, number), (frequency, coverage) in self._stats.items():
            per_label[number].append((category, int(frequency), coverage))
        label_rows = []
        for number in sorted(self.labels):
            entries = sorted(per_label[number], key=lambda e: (-e[1], self.categories.index(e[0])))
            label_rows.append(
                {
                    "number": number,
                    "name": self.labels[number],
                    "category": ";".join(f"{c}({f})" for c, f, _ in entries),
                    "frequency": sum(f for _, f, _ in entries),
                    "coverage": round(sum(v for _, _, v in entries), 6),
                    "syns": "",
                }
            )
        pd.DataFrame(label_rows).to_csv(self._tmp / "label.csv", index=False)
        category_rows = []
        for category in self.categories:
            members = [(n, f, v) for (c, n), (f, v) in self._stats.items() if c == category]
            members.sort(key=lambda m: (-m[1], -m[2], m[0]))
            pd.DataFrame(
                [
                    {"code": code, "number": n, "name": self.labels[n], "frequency": int(f), "coverage": round(v, 6)}
                    for code, (n, f, v) in enumerate(members, start=1)
                ],
                columns=["code", "number", "name", "frequency", "coverage"],
            ).to_csv(self._tmp / f"c_{category}.csv", index=False)
            numbers = [n for n, _, _ in members]
            category_rows.append(
                {
                    "name": category,
                    "first": min(numbers, default=0),
                    "last": max(numbers, default=0),
                    "count": len(numbers),
                    "frequency": int(sum(f for _, f, _ in members)),
                }
            )
        pd.DataFrame(category_rows).to_csv(self._tmp / "category.csv", index=False)
