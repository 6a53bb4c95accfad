"""Write a dataset in the Broden on-disk format (spec §1.2–1.7).

Used by the procedural probe-set generator and by tests that build small Broden directories. The writer
accumulates the per-category label statistics while images are added and writes the metadata CSVs at
:meth:`BrodenWriter.close`. Everything goes to a temporary sibling directory that is renamed into place
only when complete, so an interrupted run never leaves a half-written dataset behind.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
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
from unitscope.io import staged_directory

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: zlib level of label PNGs: a 112² label map deflates to ≈ 1.2 KB at level 1 (0.6 KB at 6, four times slower).
PNG_LEVEL = 1


def label_png(labels: np.ndarray) -> bytes:
    """The bytes of a Broden label PNG (8-bit RGB, number = R + 256·G) for label numbers of shape (H, W).

    Written directly rather than by Pillow, whose per-row filter search costs more than the compression: every
    row is stored unfiltered (filter type 0) and the scanlines are deflated at :data:`PNG_LEVEL`.
    """
    height, width = labels.shape
    rows = np.zeros((height, 1 + 3 * width), dtype=np.uint8)  # column 0: each row's filter type
    rows[:, 1:] = encode_labels(labels).reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no filter, no interlace
    return b"".join(
        (PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", zlib.compress(rows, PNG_LEVEL)), _chunk(b"IEND"))
    )


def _chunk(kind: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@dataclass(frozen=True)
class EncodedImage:
    """One image ready for :meth:`BrodenWriter.add_encoded`: its files' bytes, ``index.csv`` row and pixel counts.

    ``files`` are (path under ``images/``, bytes), the image first; ``pixel_counts`` maps each pixel category
    to the label numbers present in its layers and their pixel counts.
    """

    files: tuple[tuple[str, bytes], ...]
    row: dict[str, object]
    pixel_counts: dict[str, tuple[list[int], list[int]]]
    image_labels: dict[str, list[int]]

    def label_pixels(self) -> dict[int, int]:
        """Pixels per label number present, over all categories; an image-level label covers all sh·sw pixels."""
        pixels: dict[int, int] = {}
        for numbers, counts in self.pixel_counts.values():
            for number, count in zip(numbers, counts, strict=True):
                pixels[number] = pixels.get(number, 0) + count
        area = int(self.row["sh"]) * int(self.row["sw"])
        for numbers in self.image_labels.values():
            for number in numbers:
                pixels[number] = pixels.get(number, 0) + area
        return pixels


@dataclass(frozen=True)
class ImageEncoder:
    """Encodes images and their labels (JPEG, label PNGs, pixel counts) for one dataset; cheap to send to workers."""

    image_size: int
    label_size: int
    categories: tuple[str, ...] = CATEGORIES
    jpeg_quality: int = 92

    def encode(
        self,
        source: str,
        stem: str,
        image: np.ndarray,
        pixel_layers: Mapping[str, Sequence[np.ndarray]] | None = None,
        image_labels: Mapping[str, Sequence[int]] | None = None,
    ) -> EncodedImage:
        """Encode one image with its pixel-label layers per category and its image-level labels."""
        size = self.image_size
        if image.shape != (size, size, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"image {stem!r} must be uint8 of shape ({size}, {size}, 3), got {image.dtype} {image.shape}"
            )
        jpeg = io.BytesIO()
        Image.fromarray(image).save(jpeg, format="JPEG", quality=self.jpeg_quality)
        image_rel = f"{source}/{stem}.jpg"
        files = [(image_rel, jpeg.getvalue())]
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
        pixel_counts = {}
        for category, layers in (pixel_layers or {}).items():
            self._check_category(category, image_level=False)
            layers = [np.asarray(layer) for layer in layers]
            names = []
            for k, layer in enumerate(layers, start=1):
                if layer.shape != (self.label_size, self.label_size):
                    raise ValueError(f"{category} layer {k} of {stem!r} has shape {layer.shape}")
                numbered = len(layers) > 1 or category in MULTI_LAYER_CATEGORIES
                name = f"{source}/{stem}_{category}_{k}.png" if numbered else f"{source}/{stem}_{category}.png"
                files.append((name, label_png(layer)))
                names.append(name)
            counts = np.bincount(np.concatenate([layer.ravel() for layer in layers]))
            numbers = np.flatnonzero(counts[1:]) + 1
            pixel_counts[category] = (numbers.tolist(), counts[numbers].tolist())
            row[category] = format_cell(names)
        image_labels = {category: [int(n) for n in numbers] for category, numbers in (image_labels or {}).items()}
        for category, numbers in image_labels.items():
            self._check_category(category, image_level=True)
            row[category] = format_cell(numbers)
        return EncodedImage(tuple(files), row, pixel_counts, image_labels)

    def _check_category(self, category: str, *, image_level: bool) -> None:
        if category not in self.categories:
            raise ValueError(f"unknown category {category!r}; expected one of {list(self.categories)}")
        if (category in IMAGE_LEVEL_CATEGORIES) != image_level:
            kind = "image-level" if category in IMAGE_LEVEL_CATEGORIES else "pixel"
            raise ValueError(f"category {category!r} is {kind}")


class BrodenWriter:
    """Accumulates images, label layers and image-level labels; writes a complete Broden directory.

    ``labels`` maps every global label number (1..L, contiguous) to its unique name. Pixel layers hold
    global label numbers (0 = unlabelled). Use as a context manager, or call :meth:`close` to finish.
    Images are added whole (:meth:`add_image`) or, from worker processes, encoded by :attr:`encoder` and
    then added as bytes (:meth:`add_encoded`).
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
        self.encoder = ImageEncoder(image_size, label_size, tuple(categories), jpeg_quality)
        self._staging = ExitStack()
        self._tmp = self._staging.enter_context(staged_directory(self.root))
        (self._tmp / "images").mkdir()
        self._images = str(self._tmp / "images")  # a plain string: pathlib joins cost as much as small writes
        self._folders: set[str] = set()
        self._rows: list[dict[str, object]] = []
        # (category, label) -> [image count, coverage in image-equivalents]
        self._stats: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0])

    def __enter__(self) -> BrodenWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._staging.__exit__(exc_type, exc, tb)  # removes the staged directory

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
        return self.add_encoded(self.encoder.encode(source, stem, image, pixel_layers, image_labels))

    def add_encoded(self, encoded: EncodedImage) -> str:
        """Add an image encoded by :attr:`encoder`; return its path relative to ``images/``."""
        for numbers, _ in encoded.pixel_counts.values():
            for number in numbers:
                self._check_label(number)
        for numbers in encoded.image_labels.values():
            for number in numbers:
                self._check_label(number)
        folder = encoded.files[0][0].rpartition("/")[0]  # images/<source>/, shared by the image's files
        if folder not in self._folders:
            os.makedirs(f"{self._images}/{folder}", exist_ok=True)
            self._folders.add(folder)
        for name, data in encoded.files:
            _write_new(f"{self._images}/{name}", data)
        pixels = float(self.encoder.label_size**2)
        for category, (numbers, counts) in encoded.pixel_counts.items():
            for number, count in zip(numbers, counts, strict=True):
                stats = self._stats[(category, number)]
                stats[0] += 1
                stats[1] += count / pixels
        for category, numbers in encoded.image_labels.items():
            for number in numbers:
                stats = self._stats[(category, number)]
                stats[0] += 1
                stats[1] += 1.0
        self._rows.append(encoded.row)
        return str(encoded.row["image"])

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
        except BaseException as error:
            self._staging.__exit__(type(error), error, error.__traceback__)
            raise
        self._staging.close()  # moves the staged directory into place
        return self.root

    def _check_label(self, number: int) -> None:
        if number not in self.labels:
            raise ValueError(f"label number {number} is not in the label table")

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


def _write_new(path: str, data: bytes) -> None:
    """Write ``data`` to the new file ``path`` (plain system calls: file creation dominates the cost)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
