"""Unit labels and detector counts from a ``tally.csv`` (spec §2.6, §2.8; ``summary.json``: docs/outputs.md).

A **detector** is a unit whose best IoU is strictly greater than the threshold (0.04, as the paper and the
authors' Matlab scripts; the original HTML header uses ``>=``). Unique detectors are counted in the two
conventions NetDissect publications use, which give different numbers:

- *top-label* (HTML reports, NetDissect-Lite, CVPR text): distinct unit labels among detectors; per
  category k, distinct labels among detectors whose top category is k.
- *per-category* (the Matlab script behind the CVPR cross-network chart): a unit is a k-detector when its
  best IoU within category k exceeds the threshold (a unit can count in several categories); unique_k is
  the number of distinct best-k labels among k-detectors and "all" is the sum over k.

Tables are read by column name, never position: the released NetDissect CSVs order their categories
differently from ``category.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from unitscope.settings import DISSECT_DEFAULTS

#: The paper's IoU threshold for calling a unit a detector (strict ``>``).
IOU_THRESHOLD = DISSECT_DEFAULTS.iou_threshold

#: Columns every tally has, and the per-category column suffixes (spec §2.8).
UNIT_COLUMNS: tuple[str, ...] = ("unit", "category", "label", "score")
CATEGORY_FIELDS: tuple[str, ...] = ("label", "truth", "activation", "intersect", "iou")

_SUFFIXES = ("-s", "-c")  # scene and colour names in Broden's label.csv (spec §1.4)


class TallyFormatError(ValueError):
    """A tally table that does not have the NetDissect ``tally.csv`` layout."""


def tally_categories(tally: pd.DataFrame) -> list[str]:
    """The categories of a tally, in column order, from its ``<category>-iou`` columns."""
    return [column[: -len("-iou")] for column in tally.columns if column.endswith("-iou") and len(column) > 4]


def read_tally(path: str | Path) -> pd.DataFrame:
    """Read a ``tally.csv`` in NetDissect(-Lite) layout: ours, Lite's, or the original's released tables.

    Labels are strings (empty where a unit has no label), ``unit`` is int, every other column numeric.
    Raises :class:`TallyFormatError` naming the file and the missing or malformed column.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise TallyFormatError(f"{path}: no such tally file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise TallyFormatError(f"{path}: not a readable CSV file ({str(error).strip()})") from None
    categories = tally_categories(frame)
    if not categories:
        raise TallyFormatError(
            f"{path}: no '<category>-iou' column; expected the tally.csv layout "
            "unit,category,label,score,<cat>-label,<cat>-truth,<cat>-activation,<cat>-intersect,<cat>-iou"
        )
    required = list(UNIT_COLUMNS) + [f"{k}-{field}" for k in categories for field in CATEGORY_FIELDS]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise TallyFormatError(
            f"{path}: missing column {missing[0]!r}{more}; expected the tally.csv layout of docs/outputs.md"
        )
    numeric = ["unit", "score"] + [f"{k}-{f}" for k in categories for f in CATEGORY_FIELDS if f != "label"]
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise TallyFormatError(
                f"{path}: column {column!r} row {row + 2} is {frame[column].iloc[row]!r}, expected a number"
            )
        frame[column] = values
    units = frame["unit"]
    if not (units == units.round()).all() or (units < 1).any() or units.duplicated().any():
        raise TallyFormatError(f"{path}: column 'unit' must hold distinct 1-based unit numbers")
    frame["unit"] = units.astype("int64")
    unknown = sorted(set(frame["category"]) - set(categories) - {""})
    if unknown:
        raise TallyFormatError(
            f"{path}: column 'category' names {unknown[0]!r}, which has no '{unknown[0]}-iou' column"
        )
    return frame


def summarize(
    tally: pd.DataFrame,
    iou_threshold: float = IOU_THRESHOLD,
    categories: Sequence[str] | None = None,
    levels: Mapping[str, float] | None = None,
) -> dict:
    """Detector and unique-detector counts of one layer: the ``summary.json`` dict (docs/outputs.md).

    ``categories`` selects and orders the categories of the per-category entries (default: the tally's
    own, in column order). With a strict subset, each unit's top label is re-chosen among the selected
    categories (first in ``categories`` order on ties); with all of them the tally's own
    ``category``/``label``/``score`` columns are used as written.

    ``levels`` (label name → null level, :mod:`unitscope.dissect.null`) adds the same counts under
    ``"significant"``, where a unit counts only when its IoU also beats its label's null level.
    """
    available = tally_categories(tally)
    categories = list(available if categories is None else categories)
    unknown = [k for k in categories if k not in available]
    if unknown:
        raise ValueError(f"category {unknown[0]!r} is not in the tally (it has {', '.join(available)})")
    if not categories:
        raise ValueError("no categories to summarize")
    summary = {"units": int(len(tally)), "iou_threshold": float(iou_threshold),
               **_counts(tally, categories, available, lambda label, iou: iou > iou_threshold)}
    if levels is not None:
        level = lambda labels: labels.map(lambda name: levels.get(name, 0.0)).astype(float)  # noqa: E731
        summary["significant"] = _counts(
            tally, categories, available, lambda labels, iou: (iou > iou_threshold) & (iou > level(labels)))
    return summary


def _counts(tally: pd.DataFrame, categories: list[str], available: list[str], passes) -> dict:
    """The counts of :func:`summarize`, with ``passes(labels, ious)`` deciding which (unit, label) count."""
    top_category, top_label, score = _top_labels(tally, categories, available)
    detector = passes(top_label, score)
    top_category, top_label = top_category[detector], top_label[detector]
    detectors_per_category: dict[str, int] = {}
    unique_per_category: dict[str, int] = {}
    top_detectors: dict[str, int] = {}
    top_unique: dict[str, int] = {}
    for k in categories:
        k_detector = passes(tally[f"{k}-label"], tally[f"{k}-iou"])
        detectors_per_category[k] = int(k_detector.sum())
        unique_per_category[k] = _distinct(tally.loc[k_detector, f"{k}-label"])
        top_detectors[k] = int((top_category == k).sum())
        top_unique[k] = _distinct(top_label[top_category == k])
    return {
        "detectors": int(detector.sum()),
        "detectors_per_category": detectors_per_category,
        "unique_top_label": {"all": _distinct(top_label), "per_category": top_unique},
        "unique_per_category": {"all": sum(unique_per_category.values()), "per_category": unique_per_category},
        "top_label_detectors_per_category": top_detectors,
    }


def detector_units(tally: pd.DataFrame, iou_threshold: float = IOU_THRESHOLD,
                   levels: Mapping[str, float] | None = None) -> pd.DataFrame:
    """The tally's detectors (best IoU > ``iou_threshold``, and above its label's null level where ``levels``
    are given), in the tally's order (best IoU first)."""
    detector = tally["score"] > iou_threshold
    if levels is not None:
        detector &= tally["score"] > tally["label"].map(lambda name: levels.get(name, 0.0)).astype(float)
    return tally[detector]


def read_null_levels(path: Path) -> dict[str, float]:
    """Each label's null level from a ``null.csv`` (:func:`unitscope.results.null_table`), by label name."""
    try:
        frame = pd.read_csv(path, keep_default_na=False)
        return dict(zip(frame["label"].astype(str), frame["level"].astype(float)))
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{path}: not a null.csv with columns label and level ({error})") from None


def display_name(label: str) -> str:
    """A label as reports show it: Broden's ``-s``/``-c`` suffix dropped, ``_`` as space (spec §1.4)."""
    for suffix in _SUFFIXES:
        if label.endswith(suffix):
            label = label[: -len(suffix)]
            break
    return label.replace("_", " ")


def _top_labels(
    tally: pd.DataFrame, categories: list[str], available: list[str]
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Each unit's top category, label and score among ``categories``."""
    if set(categories) == set(available):
        return tally["category"], tally["label"], tally["score"]
    ious = tally[[f"{k}-iou" for k in categories]].to_numpy()
    best = ious.argmax(axis=1)  # first maximum: ties go to the earlier category
    rows = range(len(tally))
    labels = tally[[f"{k}-label" for k in categories]].to_numpy()
    score = pd.Series(ious[rows, best], index=tally.index)
    label = pd.Series(labels[rows, best], index=tally.index).where(score > 0, "")
    category = pd.Series([categories[b] for b in best], index=tally.index)
    return category, label, score


def _distinct(labels: pd.Series) -> int:
    """Number of distinct non-empty label names."""
    return int(labels[labels != ""].nunique())
