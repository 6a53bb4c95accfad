"""Writing a dissection's result files (docs/outputs.md): staged in a scratch directory, moved into place."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pandas as pd

from unitscope.broden.reader import BrodenDataset
from unitscope.io import make_scratch, publish_directory, write_csv, write_json, write_npy
from unitscope.dissect.null import chance_detectors, chance_significant, null_ious, null_levels
from unitscope.results import iou_table, null_table, tally_table, thresholds_table, top_images_table
from unitscope.settings import DissectError
from unitscope.summary import summarize
from unitscope.tally import TallyCounts
from unitscope.thresholds import TopImages


@contextmanager
def output_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a private scratch directory inside ``out_dir`` (removed at the end); on error also remove
    ``out_dir`` if this call created it and nothing else was put there (other layers may write beside us)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DissectError(f"--out {out_dir} is a file; give a directory (one is made per layer inside it)")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = make_scratch(out_dir)
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        if created:
            with suppress(OSError):
                out_dir.rmdir()
        raise
    shutil.rmtree(scratch, ignore_errors=True)


def image_paths(dataset: BrodenDataset):
    images = dataset.index["image"]
    return lambda i: str(images.iloc[i])


def write_layer(
    target: Path, staging: Path, meta: dict, counts: TallyCounts, thresholds: np.ndarray, top: TopImages,
    maps: np.ndarray, names: Sequence[str], primary: np.ndarray, image_paths, null: Sequence[TallyCounts] = (),
) -> Path:
    """Write one layer's result files (docs/outputs.md) into ``staging``, then move them to ``target``; with
    the tallies of a permutation null, also ``null.csv`` and the significant counts in ``summary.json``."""
    categories = meta["categories"]
    primary = np.asarray(primary)
    tally = tally_table(counts, names, primary, categories)
    levels, chance = None, {}
    if null:
        ious, quantile = null_ious(null, primary), meta["null"]["quantile"]
        level = null_levels(ious, quantile)
        write_csv(null_table(level, ious, names, primary, categories), staging / "null.csv")
        levels = {names[c]: float(level[c]) for c in np.flatnonzero(primary >= 0)}
        chance = {"chance_detectors": chance_detectors(ious, meta["iou_threshold"]),
                  "chance_significant": chance_significant(ious, meta["iou_threshold"], quantile)}
    write_csv(tally, staging / "tally.csv")
    write_csv(thresholds_table(thresholds), staging / "thresholds.csv")
    write_csv(iou_table(counts, names, primary, categories), staging / "ious.csv")
    write_csv(top_images_table(top, image_paths), staging / "top_images.csv")
    write_npy(maps, staging / "top_maps.npy")
    summary = summarize(tally, meta["iou_threshold"], categories, levels)
    for key, counts in chance.items():
        summary["significant"][key] = {
            "mean": float(counts.mean()) if len(counts) else None,
            "sd": float(counts.std(ddof=1)) if len(counts) > 1 else None, "per_permutation": counts.tolist()}
    write_json(summary, staging / "summary.json")
    write_json(meta, staging / "meta.json")
    publish_directory(staging, target)
    return target


def label_names(dataset: BrodenDataset) -> list[str]:
    names = dataset.labels["name"].reindex(range(len(dataset.primary)))
    return ["" if pd.isna(n) else str(n) for n in names]
