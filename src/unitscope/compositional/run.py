"""Compositional explanations of a dissected layer, written as a result (kind ``compositional``, docs/outputs.md):
every unit's best formula of each length, from the dissection's own masks (its thresholds, dataset, presence
rule and basis), with the IoUs by formula length over the layer."""

from __future__ import annotations

from contextlib import closing
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from unitscope import __version__
from unitscope.broden.reader import BrodenDataset
from unitscope.compositional.counts import CombinationCounts, CombinationTally
from unitscope.compositional.search import FormulaSearch, Scored
from unitscope.dissect.result import Dissected
from unitscope.dissect.sources import Source, every_row, labelled_batches
from unitscope.dissect.tables import label_names
from unitscope.io import staged_directory, write_csv, write_json
from unitscope.progress import progress
from unitscope.settings import COMPOSITIONAL_DEFAULTS, CompositionalSettings

KIND = "compositional"
SCHEMA_VERSION = 1
FORMULAS_COLUMNS = ["unit", "max_length", "formula", "length", "labels", "operators", "iou", "intersect", "union"]


def count_layer(dataset: BrodenDataset, source: Source, dissected: Dissected, batch_size: int = 32,
                normalize: str | None = None, device: str = "auto", workers: int = 0) -> CombinationCounts:
    """The dissected layer's masks (its thresholds over the same images, in the same basis; a model's input
    normalised as the dissection's unless ``normalize`` says otherwise) counted by label set; refuses activations
    whose masks are not the dissection's (other weights, normalisation or dataset)."""
    dataset = dissected.dataset(dataset)
    run, transform = dissected.rerun(dataset, source, batch_size, normalize, device, workers)
    meta = dissected.meta
    tally = CombinationTally(dissected.thresholds(), np.asarray(dataset.primary), len(dataset.categories),
                             meta["presence"], run.device)
    with closing(every_row(run, labelled_batches(run), "masks")) as batches:
        for _, raw, seg in batches:
            tally.update(transform(raw[meta["layer"]]), seg)
    counts = tally.combination_counts(dataset.categories)
    _check_masks(counts, dissected)
    return counts


def _check_masks(counts: CombinationCounts, dissected: Dissected) -> None:
    """The masks' intersections with every label must be the dissection's, integer for integer (``ious.csv`` lists
    every non-zero one)."""
    ious = pd.read_csv(dissected.path / "ious.csv")
    expected = np.zeros_like(counts.tally.intersect)
    expected[ious["unit"].to_numpy() - 1, ious["number"].to_numpy()] = ious["intersect"].to_numpy()
    if not np.array_equal(counts.tally.intersect, expected):
        raise ValueError(f"the masks differ from those of --dissection {dissected.path}: give the activations "
                         "(model, checkpoint, normalisation) it dissected")


def explain_units(counts: CombinationCounts, settings: CompositionalSettings, names: list[str]) -> pd.DataFrame:
    """:data:`FORMULAS_COLUMNS`: each unit's best formula of length at most n, n = 1 … ``settings.max_length``."""
    search = FormulaSearch(counts, settings.union, settings.beam)
    rows = []
    bar = progress(total=counts.units, desc="formulas", unit="unit")
    for unit in range(counts.units):
        for n, scored in enumerate(search.explain(unit, settings.max_length), start=1):
            rows.append(_row(unit + 1, n, scored, names))
        bar.update(1)
    bar.close()
    return pd.DataFrame(rows, columns=FORMULAS_COLUMNS)


def _row(unit: int, max_length: int, scored: Scored, names: list[str]) -> tuple:
    f = scored.formula
    if f is None:
        return unit, max_length, "", 0, "", "", 0.0, 0, 0
    return (unit, max_length, f.text(names), len(f), " ".join(map(str, f.labels)), ",".join(f.operators),
            scored.iou, scored.intersect, scored.union)


def summarize_formulas(formulas: pd.DataFrame, detectors: list[int]) -> dict:
    """Mean IoU by the longest formula allowed, over every unit and over the dissection's detectors, and how many
    units a longer formula fits better than their best label."""
    def means(frame: pd.DataFrame) -> dict[str, float | None]:
        return {str(n): (float(group["iou"].mean()) if len(group) else None)
                for n, group in frame.groupby("max_length")}

    longest = formulas[formulas["max_length"] == formulas["max_length"].max()]
    return {"units": int(formulas["unit"].nunique()), "mean_iou": means(formulas),
            "detectors": len(detectors), "mean_iou_detectors": means(formulas[formulas["unit"].isin(detectors)]),
            "longer_than_one": int((longest["length"] > 1).sum())}


def compositional_layer(dataset: str | Path | BrodenDataset, source: Source, dissection: str | Path,
                        out_dir: str | Path, settings: CompositionalSettings = COMPOSITIONAL_DEFAULTS,
                        normalize: str | None = None, device: str = "auto", workers: int = 0) -> Path:
    """Explain every unit of a dissected layer with formulas; writes ``formulas.csv``, ``summary.json`` and
    ``meta.json`` into ``out_dir``. ``source``: the dissected model (spec or :class:`LoadedModel`) or its
    activation caches."""
    settings.validate()
    dissected = Dissected.read(dissection)
    dataset = dissected.dataset(dataset)
    counts = count_layer(dataset, source, dissected, settings.batch_size, normalize, device, workers)
    formulas = explain_units(counts, settings, label_names(dataset))
    meta = {"kind": KIND, "schema_version": SCHEMA_VERSION,
            **{key: dissected.meta[key] for key in ("model", "model_spec", "weights_sha256", "layer", "units",
                                                    "dataset", "categories", "presence", "rotation")},
            "dissection": {"path": str(dissected.path), "run": dissected.path.parent.name},
            "settings": asdict(settings), "label_sets": int(counts.pixels.shape[0]),
            "unitscope_version": __version__}
    with staged_directory(Path(out_dir)) as staged:
        write_csv(formulas, staged / "formulas.csv")
        write_json(summarize_formulas(formulas, dissected.detectors), staged / "summary.json")
        write_json(meta, staged / "meta.json")
    return Path(out_dir)
