"""Predictions explained by interpreted units, written as a result (kind ``prediction-explanation``,
docs/outputs.md): for each image, its class's logit split over the dissected layer's units, the units that carry
most of it with their dissection labels and IoUs, the share carried by interpretable units, and the contributions
summed per concept and per category."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from unitscope import __version__
from unitscope.dissect.result import Dissected
from unitscope.explain.decomposition import decompose, linear_head
from unitscope.io import staged_directory, write_csv, write_json, write_npz
from unitscope.models.normalize import normalizer
from unitscope.models.registry import LoadedModel
from unitscope.saliency.images import Image
from unitscope.settings import WEIGHTINGS, resolve_device

KIND = "prediction-explanation"
SCHEMA_VERSION = 1
IMAGES_COLUMNS = ["image", "source", "class", "class_name", "logit", "bias", "units_sum", "residual",
                  "interpretable_sum", "interpretable_share"]
UNITS_COLUMNS = ["image", "rank", "unit", "contribution", "label", "category", "iou", "interpretable"]
CONCEPTS_COLUMNS = ["image", "kind", "name", "contribution", "units"]
#: Units listed (with their activation maps) per image, largest contribution first.
TOP_UNITS = 8


def explain_images(model: LoadedModel, dissection: str | Path, images: Sequence[Image], out_dir: str | Path,
                   weighting: str = "auto", target: int | None = None, normalize: str | None = None,
                   device: str = "auto", batch_size: int = 16) -> Path:
    """Explain each image's top class (or ``target``) by the units of the dissected layer; ``weighting``: ``cam``
    (the linear head after global average pooling: exact), ``grad-cam`` (gradient weights), or ``auto`` (``cam``
    where the model has that head). Writes ``images.csv``, ``units.csv``, ``concepts.csv``, ``maps.npz`` and
    ``meta.json`` into ``out_dir``."""
    dissected = Dissected.read(dissection)
    dissected.check_weights(model)
    dissected.check_unrotated("explaining predictions")
    layer = dissected.meta["layer"]
    if weighting not in ("auto", *WEIGHTINGS):
        raise ValueError(f"--weights {weighting!r} is not one of auto, {', '.join(WEIGHTINGS)}")
    if not images:
        raise ValueError("no images to explain")
    names = list(model.classes or [])
    device = resolve_device(str(device))
    normalize = normalize or dissected.meta.get("normalize") or model.default_normalize
    to_input = normalizer(normalize)
    module = model.module.eval().to(device)
    batches = [torch.from_numpy(np.stack([image.pixels for image in images[i:i + batch_size]])).permute(0, 3, 1, 2)
               for i in range(0, len(images), batch_size)]
    head = linear_head(module, layer, to_input(batches[0][:1].to(device)))
    if weighting == "cam" and head is None:
        raise ValueError(f"--weights cam: {model.spec} has no linear classifier right after the global average of "
                         f"{layer} (CAM's structure); use --weights grad-cam")
    used = "cam" if head is not None and weighting != "grad-cam" else "grad-cam"
    parts = [decompose(module, layer, to_input(batch.to(device)), head if used == "cam" else None, target)
             for batch in batches]
    joined = {key: torch.cat([getattr(part, key) for part in parts]).numpy()
              for key in ("target", "logit", "bias", "contributions", "cam", "activations")}
    units = dissected.units
    interpretable = np.isin(np.arange(1, joined["contributions"].shape[1] + 1), dissected.detectors)
    image_rows, unit_rows, concept_rows, top = [], [], [], []
    for i, image in enumerate(images):
        contributions = joined["contributions"][i]
        total, explained = float(contributions.sum()), float(contributions[interpretable].sum())
        c = int(joined["target"][i])
        image_rows.append((image.name, image.source, c, names[c] if c < len(names) else str(c),
                           float(joined["logit"][i]), float(joined["bias"][i]), total,
                           float(joined["logit"][i] - joined["bias"][i] - total) if used == "cam" else float("nan"),
                           explained, explained / total if total else float("nan")))
        order = np.argsort(-contributions, kind="stable")[:TOP_UNITS]
        top.append(order)
        for rank, u in enumerate(order, start=1):
            row = units.loc[u + 1]
            unit_rows.append((image.name, rank, int(u + 1), float(contributions[u]), row["label"], row["category"],
                              float(row["score"]), bool(interpretable[u])))
        labelled = pd.DataFrame({"contribution": contributions[interpretable],
                                 "label": units["label"].to_numpy()[interpretable],
                                 "category": units["category"].to_numpy()[interpretable]})
        for kind, column in (("concept", "label"), ("category", "category")):
            sums = labelled.groupby(column, sort=True)["contribution"].agg(["sum", "size"])
            for name, (value, count) in sums.sort_values("sum", ascending=False, kind="stable").iterrows():
                concept_rows.append((image.name, kind, name, float(value), int(count)))
    top = np.stack(top)
    maps = {"pixels": np.stack([image.pixels for image in images]), "cam": joined["cam"].astype(np.float32),
            "top_units": (top + 1).astype(np.int64),
            "top_maps": np.take_along_axis(joined["activations"], top[:, :, None, None], axis=1).astype(np.float32),
            "contributions": joined["contributions"].astype(np.float32),
            "thresholds": dissected.thresholds()}
    meta = {"kind": KIND, "schema_version": SCHEMA_VERSION, "model": dissected.meta["model"], "model_spec": model.spec,
            "weights_sha256": model.weights_sha256(), "checkpoint": model.checkpoint, "normalize": normalize,
            "layer": layer, "units": int(joined["contributions"].shape[1]), "weighting": used,
            "head": head.name if used == "cam" else None, "target": target,
            "interpretable_units": int(interpretable.sum()), "iou_threshold": dissected.meta["iou_threshold"],
            "significance": dissected.meta.get("null") is not None,
            "images": [{"name": image.name, "source": image.source, "sha256": image.sha256} for image in images],
            "dissection": {"path": str(dissected.path), "run": dissected.path.parent.name},
            "unitscope_version": __version__}
    with staged_directory(Path(out_dir)) as staged:
        write_csv(pd.DataFrame(image_rows, columns=IMAGES_COLUMNS), staged / "images.csv")
        write_csv(pd.DataFrame(unit_rows, columns=UNITS_COLUMNS), staged / "units.csv")
        write_csv(pd.DataFrame(concept_rows, columns=CONCEPTS_COLUMNS), staged / "concepts.csv")
        write_npz(maps, staged / "maps.npz", compressed=True)
        write_json(meta, staged / "meta.json")
    return Path(out_dir)
