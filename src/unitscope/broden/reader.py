"""Read a Broden-format dataset (spec §1.3–1.11).

Public API (other modules code against exactly this):

    class BrodenFormatError(ValueError)    # a file of the dataset breaks the format; names file, row, fix

    @dataclass(frozen=True)
    class Segmentation:
        layers: np.ndarray        # int32 (D, sh, sw): every pixel-label layer of every selected pixel
                                  # category, global label numbers, 0 = unlabelled; D may be 0
        image_labels: np.ndarray  # int32 (K,): image-level label numbers (scene/texture) of selected categories

    class BrodenDataset:
        def __init__(self, root: str | Path, categories: Sequence[str] | None = None) -> None
        root: Path
        categories: list[str]          # selected categories, in category.csv order (None = all)
        labels: pd.DataFrame           # one row per label number 0..L (row 0 is "-"), index = number,
                                       # columns: name, primary (category name or ""), frequency, coverage
        primary: np.ndarray            # int64 (L+1,): index into `categories` of each label's primary
                                       # category, -1 for label 0 and labels of no selected category
        category_coverage: pd.DataFrame  # index = number 0..L, one column per selected category: the label's
                                         # coverage in c_<cat>.csv, NaN where the label is not in that category
        index: pd.DataFrame            # the kept rows of index.csv (images with data in a selected category)
        image_size: tuple[int, int]    # (ih, iw), uniform over the dataset
        label_size: tuple[int, int]    # (sh, sw), uniform over the dataset
        def __len__(self) -> int
        def image_path(self, i: int) -> Path
        def image(self, i: int) -> np.ndarray          # uint8 (ih, iw, 3) RGB (grayscale replicated)
        def segmentation(self, i: int) -> Segmentation
        def index_sha256(self) -> str                  # sha256 of index.csv bytes (dataset identity)

    # in unitscope.broden.loaders (torch DataLoaders, kept apart so that the reader needs no torch):
    def image_loader(dataset, indices: Sequence[int], batch_size: int, num_workers: int = 0) -> DataLoader
        # yields (indices: LongTensor (B,), images: uint8 Tensor (B, 3, ih, iw)), in `indices` order
    def segmentation_loader(dataset, indices: Sequence[int], batch_size: int, num_workers: int = 0) -> DataLoader
        # yields SegmentationBatch(indices: LongTensor (B,), combination_ids, combination_labels,
        #        combination_pixels: each image's label tuples (unitscope.broden.combinations), zero-padded,
        #        image_labels: int32 Tensor (B, K) zero-padded), in `indices` order

Details:
- ``index`` is re-numbered 0..len-1 (item ``i`` is ``index.iloc[i]``); its ``ih, iw, sh, sw`` are ints, the
  other columns the raw strings of index.csv.
- ``labels.frequency`` / ``labels.coverage`` are the totals of label.csv (over all categories).
- Primary category (spec §1.11.4): the selected category whose ``c_<cat>.csv`` gives the label the largest
  per-category coverage; ties (including all-zero) go to the category that comes later in category.csv.
- A cell item is an image-level label if it is all digits, otherwise a PNG path relative to ``images/``
  (spec §1.3), whatever the category is called. Label 0 (unlabelled; the real index.csv has scene ``0``
  for ADE20K scenes dropped by the frequency filter) is skipped, so a row whose only data is ``0`` is
  dropped like an empty one.
- CSV structure and index cells are checked when the dataset is opened; each JPEG/PNG when it is read.
  Every problem raises :class:`BrodenFormatError` naming the file, the index.csv line (1-based, header =
  line 1) and what to do. An unknown category in ``categories`` raises a plain ``ValueError``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from unitscope.broden.format import INDEX_COLUMNS, decode_labels, parse_cell

__all__ = [
    "BrodenDataset",
    "BrodenFormatError",
    "Segmentation",
]

_FIX = "re-download the dataset (`unitscope download broden`) or regenerate it (`unitscope probe-dataset`)"
#: Exceptions Pillow raises for a missing, truncated or corrupt image file.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
#: Pillow modes whose RGB conversion keeps Broden's R + 256·G label encoding intact.
_LABEL_PNG_MODES = frozenset({"RGB", "RGBA", "P"})


class BrodenFormatError(ValueError):
    """A file of a Broden dataset is missing or breaks the format (spec §1); the message names file and row."""


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Ground truth of one image: pixel-label layers and image-level labels, as global label numbers."""

    layers: np.ndarray
    image_labels: np.ndarray


class BrodenDataset:
    """A Broden-format directory restricted to a subset of its categories (spec §1.11)."""

    def __init__(self, root: str | Path, categories: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise BrodenFormatError(f"Broden dataset directory {self.root} does not exist; {_FIX}")
        self.categories = _select_categories(self.root / "category.csv", categories)
        self.labels = _read_label_table(self.root / "label.csv")
        self.category_coverage = _read_category_coverage(self.root, self.categories, len(self.labels))
        self.primary = _primary_categories(self.category_coverage)
        self.labels.insert(1, "primary", ["" if p < 0 else self.categories[p] for p in self.primary])
        index_path = self.root / "index.csv"
        raw = _read_bytes(index_path)
        self._index_sha256 = hashlib.sha256(raw).hexdigest()
        index = _read_csv(io.BytesIO(raw), index_path, (*INDEX_COLUMNS, *self.categories))
        for column in ("ih", "iw", "sh", "sw"):
            index[column] = _int_column(index, column, index_path, minimum=1)
        _raise_on_bad((index["image"] == "").to_numpy(), index, "image", index_path, "a JPEG path relative to images/")
        self._layers, self._image_labels, lines = _parse_cells(index, self.categories, len(self.labels) - 1, index_path)
        if not lines:
            raise BrodenFormatError(
                f"{index_path}: no image has data in the selected categories {self.categories}; "
                "select other categories or check the dataset"
            )
        self._lines = np.asarray(lines, dtype=np.int64)
        self.index = index.iloc[self._lines - 2].reset_index(drop=True)
        self.image_size = _uniform_size(self.index, ("ih", "iw"), "image", self._lines, index_path)
        self.label_size = _uniform_size(self.index, ("sh", "sw"), "label", self._lines, index_path)

    def __len__(self) -> int:
        return len(self._lines)

    def __repr__(self) -> str:
        return f"BrodenDataset({str(self.root)!r}, categories={self.categories}, images={len(self)})"

    def image_path(self, i: int) -> Path:
        """Path of the JPEG of item ``i``."""
        return self.root / "images" / self.index.at[self.check_item(i), "image"]

    def image(self, i: int) -> np.ndarray:
        """The photo of item ``i`` as uint8 (ih, iw, 3) RGB; grayscale and CMYK JPEGs are converted."""
        path = self.image_path(i)
        rgb = np.array(self._decode(path, i, "image").convert("RGB"))
        if rgb.shape[:2] != self.image_size:
            raise self._error(path, i, f"image is {rgb.shape[0]}×{rgb.shape[1]}, index.csv says {self.image_size}")
        return rgb

    def segmentation(self, i: int) -> Segmentation:
        """All pixel-label layers and image-level labels of item ``i`` in the selected categories."""
        layers = [self._label_layer(self.root / "images" / name, i) for name in self._layers[self.check_item(i)]]
        stacked = np.stack(layers) if layers else np.zeros((0, *self.label_size), dtype=np.int32)
        return Segmentation(layers=stacked, image_labels=np.array(self._image_labels[i], dtype=np.int32))

    def index_sha256(self) -> str:
        """SHA-256 of the bytes of index.csv as read at open time: the dataset's identity."""
        return self._index_sha256

    def record(self, images: int) -> dict[str, object]:
        """How a result names this dataset (``meta.json``): directory name, path relative to the working
        directory when it lies inside it, the number of images used and the index checksum; no absolute path."""
        root = self.root.resolve()
        record: dict[str, object] = {"name": root.name}
        if root.is_relative_to(Path.cwd().resolve()):
            record["path"] = root.relative_to(Path.cwd().resolve()).as_posix() or "."
        return {**record, "images": images, "index_sha256": self.index_sha256()}

    def _label_layer(self, path: Path, i: int) -> np.ndarray:
        image = self._decode(path, i, "label PNG")
        if image.mode not in _LABEL_PNG_MODES:
            raise self._error(path, i, f"label PNG has mode {image.mode}; labels must be stored as RGB, R + 256·G")
        layer = decode_labels(np.asarray(image.convert("RGB")))
        if layer.shape != self.label_size:
            raise self._error(
                path, i, f"label PNG is {layer.shape[0]}×{layer.shape[1]}, index.csv says {self.label_size}"
            )
        largest = int(layer.max(initial=0))
        if largest >= len(self.labels):
            raise self._error(path, i, f"label number {largest} is not in label.csv (1..{len(self.labels) - 1})")
        return layer

    def _decode(self, path: Path, i: int, kind: str) -> Image.Image:
        try:
            with Image.open(path) as image:
                image.load()
                return image
        except FileNotFoundError:
            raise self._error(path, i, f"{kind} is missing") from None
        except _DECODE_ERRORS as exc:
            raise self._error(path, i, f"{kind} is unreadable or corrupt ({exc})") from exc

    def _error(self, path: Path, i: int, problem: str) -> BrodenFormatError:
        return BrodenFormatError(
            f"{path}: {problem}; referenced by index.csv line {self._lines[i]} "
            f"(image {self.index.at[i, 'image']}); {_FIX}"
        )

    def check_item(self, i: int) -> int:
        """``i`` as an int if it is an item of the dataset, else an IndexError."""
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} is out of range for a Broden dataset of {len(self)} images")
        return int(i)


def _select_categories(path: Path, requested: Sequence[str] | None) -> list[str]:
    """The requested categories (all if None) in category.csv order."""
    table = _read_csv(path, path, ("name",))
    available = table["name"].tolist()
    duplicate = _first_duplicate(available)
    if duplicate is not None:
        raise BrodenFormatError(
            f"{path} line {duplicate + 2}: category {available[duplicate]!r} is listed twice; {_FIX}"
        )
    if requested is None:
        return available
    requested = [requested] if isinstance(requested, str) else list(requested)
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise ValueError(
            f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
            f"{path} lists: {', '.join(available)}"
        )
    if not requested:
        raise ValueError(f"select at least one category; {path} lists: {', '.join(available)}")
    return [name for name in available if name in requested]


def _read_label_table(path: Path) -> pd.DataFrame:
    """label.csv as rows 0..L (row 0 = "-") with name, frequency and coverage."""
    table = _read_csv(path, path, ("number", "name", "frequency", "coverage"))
    numbers = _int_column(table, "number", path)
    wrong = np.flatnonzero(numbers != np.arange(1, len(numbers) + 1))
    if wrong.size:
        raise BrodenFormatError(
            f"{path} line {wrong[0] + 2}: label number {numbers[wrong[0]]} where {wrong[0] + 1} was expected; "
            f"label numbers must run 1, 2, …, L in order; {_FIX}"
        )
    return pd.DataFrame(
        {
            "name": ["-", *table["name"].tolist()],
            "frequency": np.concatenate([[0], _int_column(table, "frequency", path, minimum=0)]),
            "coverage": np.concatenate([[0.0], _float_column(table, "coverage", path)]),
        },
        index=pd.RangeIndex(len(numbers) + 1, name="number"),
    )


def _read_category_coverage(root: Path, categories: list[str], count: int) -> pd.DataFrame:
    """Per-category coverage of labels 0..count-1 from each ``c_<category>.csv``; NaN where not listed."""
    columns = {category: _coverage_column(root / f"c_{category}.csv", count) for category in categories}
    return pd.DataFrame(columns, index=pd.RangeIndex(count, name="number"))


def _coverage_column(path: Path, count: int) -> np.ndarray:
    table = _read_csv(path, path, ("number", "coverage"))
    numbers = _int_column(table, "number", path)
    unknown = np.flatnonzero((numbers < 1) | (numbers >= count))
    if unknown.size:
        row = unknown[0]
        raise BrodenFormatError(f"{path} line {row + 2}: label number {numbers[row]} is not in label.csv; {_FIX}")
    duplicate = _first_duplicate(numbers.tolist())
    if duplicate is not None:
        raise BrodenFormatError(
            f"{path} line {duplicate + 2}: label number {numbers[duplicate]} is listed twice; {_FIX}"
        )
    coverage = np.full(count, np.nan)
    coverage[numbers] = _float_column(table, "coverage", path)
    return coverage


def _primary_categories(coverage: pd.DataFrame) -> np.ndarray:
    """Column of each row's largest coverage, the last one on ties (spec §1.11.4); -1 where a row is all NaN."""
    values = coverage.to_numpy()
    values = np.where(np.isnan(values), -np.inf, values)
    last_best = values.shape[1] - 1 - np.argmax(values[:, ::-1], axis=1)
    return np.where(coverage.notna().any(axis=1), last_best, -1).astype(np.int64)


def _parse_cells(
    index: pd.DataFrame, categories: list[str], last_label: int, path: Path
) -> tuple[list[tuple[str, ...]], list[tuple[int, ...]], list[int]]:
    """Per kept row: layer PNG paths, image-level label numbers, and the CSV line (rows with no data dropped)."""
    layers: list[tuple[str, ...]] = []
    image_labels: list[tuple[int, ...]] = []
    lines: list[int] = []
    for row, cells in enumerate(zip(*(index[category].tolist() for category in categories))):
        names: list[str] = []
        numbers: list[int] = []
        for category, cell in zip(categories, cells):
            for item in parse_cell(cell) if cell else ():
                if isinstance(item, str):
                    names.append(item)
                elif item == 0:
                    continue  # unlabelled (the real index has scene "0" for scenes dropped by the frequency filter)
                elif item <= last_label:
                    numbers.append(item)
                else:
                    raise BrodenFormatError(
                        f"{path} line {row + 2}, column {category!r}: label number {item} is not in label.csv "
                        f"(1..{last_label}); {_FIX}"
                    )
        if names or numbers:
            layers.append(tuple(names))
            image_labels.append(tuple(numbers))
            lines.append(row + 2)
    return layers, image_labels, lines


def _uniform_size(
    index: pd.DataFrame, columns: tuple[str, str], kind: str, lines: np.ndarray, path: Path
) -> tuple[int, int]:
    sizes = index[list(columns)].to_numpy()
    different = np.flatnonzero((sizes != sizes[0]).any(axis=1))
    if different.size:
        k = different[0]
        raise BrodenFormatError(
            f"{path} line {lines[k]}: {kind} size {columns} = {tuple(sizes[k].tolist())} differs from "
            f"{tuple(sizes[0].tolist())} on line {lines[0]}; every {kind} of a Broden dataset must have the same size"
        )
    return int(sizes[0, 0]), int(sizes[0, 1])


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BrodenFormatError(f"{path} is missing; {_FIX}") from None
    except OSError as exc:
        raise BrodenFormatError(f"{path} cannot be read ({exc}); {_FIX}") from exc


def _read_csv(source: Path | io.BytesIO, path: Path, required: Sequence[str]) -> pd.DataFrame:
    """A CSV of the dataset as strings (empty cells stay ""), with its ``required`` columns checked."""
    try:
        table = pd.read_csv(source, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise BrodenFormatError(f"{path} is missing; {_FIX}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BrodenFormatError(f"{path} is not a readable CSV ({exc}); {_FIX}") from exc
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise BrodenFormatError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(header line 1 has: {', '.join(map(str, table.columns))}); {_FIX}"
        )
    return table


def _int_column(table: pd.DataFrame, column: str, path: Path, *, minimum: int | None = None) -> np.ndarray:
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if minimum is not None:
        bad |= values < minimum
    _raise_on_bad(bad, table, column, path, "an integer" if minimum is None else f"an integer ≥ {minimum}")
    return values.astype(np.int64)


def _float_column(table: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    _raise_on_bad(~np.isfinite(values), table, column, path, "a finite number")
    return values


def _raise_on_bad(bad: np.ndarray, table: pd.DataFrame, column: str, path: Path, expected: str) -> None:
    rows = np.flatnonzero(bad)
    if rows.size:
        value = table[column].iloc[rows[0]]
        raise BrodenFormatError(
            f"{path} line {rows[0] + 2}: column {column!r} must be {expected}, got {value!r}; {_FIX}"
        )


def _first_duplicate(values: list) -> int | None:
    """Position of the first value that repeats an earlier one, or None."""
    seen: set = set()
    for position, value in enumerate(values):
        if value in seen:
            return position
        seen.add(value)
    return None
