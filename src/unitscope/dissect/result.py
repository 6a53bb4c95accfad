"""A dissection result directory read back (docs/outputs.md): what later analyses of its layer need."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from unitscope.broden.reader import BrodenDataset
from unitscope.dissect.passes import Transform
from unitscope.dissect.sources import Run, Source, prepare
from unitscope.models.registry import LoadedModel
from unitscope.results import read_thresholds
from unitscope.settings import DissectSettings, Rotation
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
            for name in ("thresholds.csv", "ious.csv"):
                if not (path / name).is_file():
                    raise ValueError(f"no {name}")
            levels = read_null_levels(path / "null.csv") if (path / "null.csv").exists() else None
            detectors = detector_units(tally, meta["iou_threshold"], levels)["unit"].tolist()
            first = top[top["rank"] == 1]
            peaks = dict(zip(first["unit"].astype(int), first["max_activation"].astype(float)))
            units = tally.set_index("unit")[["label", "category", "score"]].sort_index()
            view = top[["unit", "rank", "image"]]
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"--dissection {path}: not a dissection result directory ({error}); give a "
                             "results/dissect/<run>/<layer> directory") from None
        return cls(path, meta, detectors, units, peaks, view)

    def dataset(self, dataset: str | Path | BrodenDataset) -> BrodenDataset:
        """``dataset`` opened with the dissection's categories, refused unless it is the dissected one."""
        if not isinstance(dataset, BrodenDataset):
            if not (Path(dataset) / "index.csv").is_file():
                raise ValueError(f"--dataset {dataset}: no index.csv; give the Broden-format dataset the layer was "
                                 "dissected on")
            dataset = BrodenDataset(dataset, self.meta["categories"])
        recorded = self.meta["dataset"]
        if dataset.index_sha256() != recorded["index_sha256"] or dataset.categories != self.meta["categories"]:
            raise ValueError(f"--dataset {dataset.root} is not the dataset {self.path} dissected (index.csv or "
                             f"categories differ); give {recorded.get('path', 'that dataset')}")
        return dataset

    def rerun(self, dataset: BrodenDataset, source: Source, batch_size: int = 32, normalize: str | None = None,
              device: str = "auto", workers: int = 0) -> tuple[Run, Transform]:
        """The dissection's images, activation source and basis again, for a later pass over its layer: the
        validated run (a model's input normalised as the dissection's unless ``normalize`` says otherwise; a model
        of other weights refused) and the change of basis to apply to each batch."""
        meta = self.meta
        rotation = Rotation(**meta["rotation"]) if meta.get("rotation") else None
        settings = DissectSettings(presence=meta["presence"], rotation=rotation, batch_size=batch_size,
                                   device=device, workers=workers, max_images=meta["dataset"]["images"],
                                   normalize=normalize or meta["normalize"])
        if isinstance(source, LoadedModel):
            self.check_weights(source)  # before its layers are looked up: another network is named as such
        run = prepare(dataset, source, [meta["layer"]], settings, None)
        return run, Transform(rotation, run.device)

    def check_unrotated(self, what: str) -> None:
        """Refuse a dissection of a rotated basis where ``what`` works on the model's own units."""
        if self.meta.get("rotation"):
            raise ValueError(f"--dissection {self.path} was computed in a rotated basis; {what} works on the model's "
                             "own units: give the unrotated dissection of the layer")

    def check_peaks(self, maxima: np.ndarray) -> None:
        """Refuse activations whose per-unit maxima over the dataset are not the dissection's (its first top images):
        another checkpoint, normalisation or dataset."""
        expected = np.array([self.peaks[unit] for unit in range(1, len(maxima) + 1)], np.float32)
        if not np.array_equal(np.asarray(maxima, np.float32), expected):
            raise ValueError(f"the activations differ from those of --dissection {self.path}: give the activations "
                             "(model, checkpoint, normalisation) it dissected")

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
