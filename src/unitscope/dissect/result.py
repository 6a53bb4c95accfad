"""A dissection result directory read back (docs/outputs.md): what later analyses of its layer need."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from unitscope.models.registry import LoadedModel
from unitscope.results import read_thresholds
from unitscope.summary import detector_units, read_null_levels, read_tally


@dataclass(frozen=True)
class Dissected:
    """What a dissection result says about its layer's units: the detectors (1-based, best IoU first; the
    significant ones when it has a permutation null), each unit's top ``label`` (empty when its best IoU is 0),
    ``category`` and best IoU (``score``), indexed by unit, its highest activation over the dataset (the first of
    its top images) and its top images (``unit``, ``rank``, ``image``: a path below the dataset's ``images/``)."""

    path: Path
    meta: dict
    detectors: list[int]
    units: pd.DataFrame
    peaks: dict[int, float]
    top: pd.DataFrame

    @classmethod
    def read(cls, path: str | Path) -> Dissected:
        path = Path(path)
        try:
            meta = json.loads((path / "meta.json").read_text())
            if meta.get("kind") != "dissection":
                raise ValueError(f"kind {meta.get('kind')!r}")
            tally = read_tally(path / "tally.csv")
            top = pd.read_csv(path / "top_images.csv")
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"--dissection {path}: not a dissection result directory ({error}); give a "
                             "results/dissect/<run>/<layer> directory") from None
        levels = read_null_levels(path / "null.csv") if (path / "null.csv").exists() else None
        detectors = detector_units(tally, meta["iou_threshold"], levels)["unit"].tolist()
        first = top[top["rank"] == 1]
        units = tally.set_index("unit")[["label", "category", "score"]].sort_index()
        return cls(path, meta, detectors, units, dict(zip(first["unit"].astype(int), first["max_activation"].astype(float))),
                   top[["unit", "rank", "image"]])

    def thresholds(self) -> np.ndarray:
        """T_u of every unit, float32 (exactly the dissection's)."""
        return read_thresholds(self.path / "thresholds.csv")

    def check_weights(self, model: LoadedModel) -> None:
        """Refuse a model whose weights are not the dissected ones."""
        recorded = self.meta.get("weights_sha256")
        if recorded and recorded != model.weights_sha256():
            raise ValueError(f"--dissection {self.path} was computed with other weights than --model {model.spec} "
                             f"(sha256 {recorded[:12]}… there, {model.weights_sha256()[:12]}… here); give the "
                             f"model it dissected ({self.meta.get('model_spec')})")
