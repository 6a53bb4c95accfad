"""Dissection result tables (``docs/outputs.md``): built from exact counts (written with :mod:`unitscope.io`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from unitscope.tally import TallyCounts
from unitscope.thresholds import TopImages


def tally_table(
    counts: TallyCounts, names: Sequence[str], primary: np.ndarray, categories: Sequence[str]
) -> pd.DataFrame:
    """``tally.csv``: per unit the best label of every category and the overall best (spec §2.6).

    Within a category the best label is the first (lowest number) of maximal IoU; the top category is the
    first (in category order) of maximal score. A label is left empty when its IoU is 0.
    """
    iou = counts.iou(primary)
    units = iou.shape[0]
    names = np.asarray(names, dtype=object)
    table: dict[str, object] = {"unit": np.arange(1, units + 1)}
    columns: dict[str, object] = {}
    scores = np.zeros((units, len(categories)))
    best_labels = np.zeros((units, len(categories)), dtype=np.int64)
    for k, category in enumerate(categories):
        members = np.flatnonzero(primary == k)
        if len(members):
            best = members[np.argmax(iou[:, members], axis=1)]
        else:
            best = np.zeros(units, dtype=np.int64)
        score = iou[np.arange(units), best] if len(members) else np.zeros(units)
        scores[:, k] = score
        best_labels[:, k] = best
        columns[f"{category}-label"] = np.where(score > 0, names[best], "")
        columns[f"{category}-truth"] = np.where(score > 0, counts.truth[best], 0)
        columns[f"{category}-activation"] = counts.act_cat[:, k]
        columns[f"{category}-intersect"] = np.where(score > 0, counts.intersect[np.arange(units), best], 0)
        columns[f"{category}-iou"] = score
    top = np.argmax(scores, axis=1)
    score = scores[np.arange(units), top]
    table["category"] = np.asarray(categories, dtype=object)[top]
    table["label"] = np.where(score > 0, names[best_labels[np.arange(units), top]], "")
    table["score"] = score
    frame = pd.DataFrame({**table, **columns})
    return frame.sort_values(["score", "unit"], ascending=[False, True], kind="stable").reset_index(drop=True)


def iou_table(
    counts: TallyCounts, names: Sequence[str], primary: np.ndarray, categories: Sequence[str]
) -> pd.DataFrame:
    """``ious.csv``: every (unit, label) with IoU > 0, by unit, then IoU descending, then label number."""
    iou = counts.iou(primary)
    unit, label = np.nonzero(iou > 0)
    frame = pd.DataFrame(
        {
            "unit": unit + 1,
            "label": np.asarray(names, dtype=object)[label],
            "number": label,
            "category": np.asarray(categories, dtype=object)[primary[label]],
            "iou": iou[unit, label],
            "intersect": counts.intersect[unit, label],
            "activation": counts.union_activation(primary)[unit, label],
            "truth": counts.truth[label],
        }
    )
    order = frame.sort_values(["unit", "iou", "number"], ascending=[True, False, True], kind="stable")
    return order.reset_index(drop=True)


def null_table(
    levels: np.ndarray, ious: np.ndarray, names: Sequence[str], primary: np.ndarray, categories: Sequence[str]
) -> pd.DataFrame:
    """``null.csv``: per label of a selected category, its null level and the largest and mean null IoU
    over units and permutations (``ious`` (R, units, L+1), :mod:`unitscope.dissect.null`)."""
    label = np.flatnonzero(np.asarray(primary) >= 0)
    return pd.DataFrame(
        {
            "number": label,
            "label": np.asarray(names, dtype=object)[label],
            "category": np.asarray(categories, dtype=object)[primary[label]],
            "level": levels[label],
            "max": ious[:, :, label].max(axis=(0, 1)),
            "mean": ious[:, :, label].mean(axis=(0, 1)),
        }
    )


def thresholds_table(thresholds: np.ndarray) -> pd.DataFrame:
    """``thresholds.csv``; float32 thresholds are written as the shortest float64 repr (exact round trip)."""
    return pd.DataFrame({"unit": np.arange(1, len(thresholds) + 1), "threshold": np.asarray(thresholds, np.float64)})


def read_thresholds(path: Path) -> np.ndarray:
    frame = pd.read_csv(path)
    if frame.columns.tolist() != ["unit", "threshold"] or frame["unit"].tolist() != list(range(1, len(frame) + 1)):
        raise ValueError(f"{path}: expected columns unit,threshold with units 1..n in order")
    return frame["threshold"].to_numpy(np.float64).astype(np.float32)


def top_images_table(top: TopImages, image_paths: Callable[[int], str]) -> pd.DataFrame:
    """``top_images.csv``: each unit's top images, best first (ties: lower image index)."""
    units, k = top.indices.shape
    return pd.DataFrame(
        {
            "unit": np.repeat(np.arange(1, units + 1), k),
            "rank": np.tile(np.arange(1, k + 1), units),
            "image_index": top.indices.reshape(-1),
            "image": [image_paths(int(i)) for i in top.indices.reshape(-1)],
            "max_activation": top.values.reshape(-1).astype(np.float64),
        }
    )


def read_top_images(path: Path, units: int, k: int) -> TopImages:
    frame = pd.read_csv(path, keep_default_na=False)
    expected = ["unit", "rank", "image_index", "image", "max_activation"]
    if frame.columns.tolist() != expected or len(frame) % units:
        raise ValueError(f"{path}: expected columns {','.join(expected)} with the same number of rows per unit")
    per_unit = len(frame) // units
    values = frame["max_activation"].to_numpy(np.float64).astype(np.float32).reshape(units, per_unit)
    indices = frame["image_index"].to_numpy(np.int64).reshape(units, per_unit)
    return TopImages(values, indices, k)
