"""Unit ablation of one layer of a scene classifier, written as a result (kind ``ablation``, docs/outputs.md): every
unit zeroed alone, with each class's accuracy and mean logit on the held-out images; and for each class its most
important units (the largest drops of its logit) removed together, kept alone, and a random set of as many
removed (docs/ablation.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from unitscope import __version__
from unitscope.ablation.effects import class_accuracy, class_logits, masked_outputs
from unitscope.broden.reader import BrodenDataset
from unitscope.dissect.result import Dissected
from unitscope.hooks import Trace
from unitscope.io import staged_directory, write_csv, write_json
from unitscope.models.normalize import normalizer
from unitscope.models.registry import LoadedModel
from unitscope.settings import resolve_device
from unitscope.train import scene_data

KIND = "ablation"
SCHEMA_VERSION = 1
UNITS_COLUMNS = ["unit", "class", "images", "accuracy", "ablated_accuracy", "logit", "ablated_logit"]
CLASSES_COLUMNS = ["class", "n", "units", "labels", "images", "accuracy", "removed_accuracy", "kept_accuracy",
                   "random_accuracy", "others_accuracy", "removed_others_accuracy", "kept_others_accuracy"]
#: How many of a class's most important units are removed (or kept) together.
TOP_UNITS = (1, 2, 4, 8, 16, 32)


def layer_units(model: torch.nn.Module, layer: str, image: torch.Tensor, normalize: str, device) -> int:
    """How many units (channels) ``layer`` has, from one forward pass on ``image``."""
    with torch.no_grad(), Trace(model.eval().to(device), [layer], stop=True) as trace:
        output = trace(normalizer(normalize)(image[None].to(device)))[layer]
    if output.dim() < 2:
        raise ValueError(f"layer {layer} has no units (output shape {tuple(output.shape)})")
    return int(output.shape[1])


def ablate_layer(model: LoadedModel, layer: str, dataset: str | Path, out_dir: str | Path,
                 dissection: str | Path | None = None, split: str = "val", normalize: str | None = None,
                 device: str = "auto", batch_size: int = 64, seed: int = 0) -> Path:
    """Ablate every unit of ``layer`` of a classifier of ``dataset``'s scenes (``model.classes`` names them, as a
    ProbeCNN checkpoint does) on the ``split`` images with a scene label; writes ``units.csv``, ``classes.csv`` and ``meta.json``.
    With ``dissection`` (the layer's dissection), the labels of each class's most important units are recorded and
    the model is named as the dissection names it (the report joins them on that name)."""
    classes = list(model.classes or [])
    if not classes:
        raise ValueError(f"--model {model.spec}: its weights name no classes; ablation needs a classifier of the "
                         "dataset's scenes, e.g. a checkpoint of `unitscope train-probecnn` (it records them)")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    if not (Path(dataset) / "index.csv").is_file():
        raise ValueError(f"--dataset {dataset}: no index.csv; give the Broden-format dataset the model was trained on")
    labels, name = None, model.name
    if dissection is not None:
        dissected = Dissected.read(dissection)
        dissected.check_weights(model)
        dissected.check_unrotated("ablation")
        if dissected.meta["layer"] != layer:
            raise ValueError(f"--dissection {dissection} dissected layer {dissected.meta['layer']!r}, not {layer!r}")
        labels = {int(unit): label if unit in dissected.detectors else ""
                  for unit, label in dissected.units["label"].items()}
        name = dissected.meta["model"]
    scenes = BrodenDataset(dataset, categories=["scene"])
    images, targets = scene_data(scenes, split, classes)
    normalize = normalize or model.default_normalize
    device = resolve_device(str(device))
    units = layer_units(model.module, layer, images[0], normalize, device)

    def outputs(keep: torch.Tensor) -> torch.Tensor:
        return masked_outputs(model.module, layer, images, keep, normalize, device, batch_size)

    everything = torch.ones(1, units, dtype=torch.bool)
    original = outputs(everything)
    single = outputs(~torch.eye(units, dtype=torch.bool))
    count = len(classes)
    accuracy, logit = class_accuracy(original, targets, count)[0], class_logits(original, targets, count)[0]
    ablated_accuracy, ablated_logit = class_accuracy(single, targets, count), class_logits(single, targets, count)
    per_class = torch.bincount(targets, minlength=count)
    unit_rows = [(u + 1, classes[c], int(per_class[c]), float(accuracy[c]), float(ablated_accuracy[u, c]),
                  float(logit[c]), float(ablated_logit[u, c])) for u in range(units) for c in range(count)]

    sizes = sorted({min(n, units) for n in TOP_UNITS})
    drops = (ablated_logit - logit[None, :]).numpy()  # (units, classes): most negative = most important
    plans, masks = [], []
    for c in range(count):
        order = np.argsort(drops[:, c], kind="stable")
        generator = np.random.default_rng([seed, c])
        for n in sizes:
            top = torch.as_tensor(order[:n])
            chance = torch.as_tensor(generator.choice(units, size=n, replace=False))
            removed, random = torch.ones(units, dtype=torch.bool), torch.ones(units, dtype=torch.bool)
            kept = torch.zeros(units, dtype=torch.bool)
            removed[top], kept[top], random[chance] = False, True, False
            plans.append((c, n, order[:n]))
            masks += [removed, kept, random]
    grouped = outputs(torch.stack(masks)).reshape(len(plans), 3, len(images), count)
    correct = grouped.argmax(-1) == targets  # (plans, 3, images)
    base = original[0].argmax(-1) == targets
    class_rows = []
    for (c, n, top), hits in zip(plans, correct):
        own, others = targets == c, targets != c
        class_rows.append((
            classes[c], n, " ".join(str(u + 1) for u in top),
            "" if labels is None else ";".join(labels[u + 1] for u in top), int(own.sum()),
            _mean(base[own]), _mean(hits[0][own]), _mean(hits[1][own]), _mean(hits[2][own]),
            _mean(base[others]), _mean(hits[0][others]), _mean(hits[1][others])))
    meta = {"kind": KIND, "schema_version": SCHEMA_VERSION, "model": name, "model_spec": model.spec,
            "weights_sha256": model.weights_sha256(), "checkpoint": model.checkpoint, "normalize": normalize,
            "layer": layer, "units": units, "classes": classes, "split": split, "images": len(images),
            "accuracy": _mean(base), "top_units": sizes, "seed": seed,
            "dataset": {"path": str(dataset), "index_sha256": scenes.index_sha256()},
            "dissection": None if dissection is None else {"path": str(dissection), "run": Path(dissection).parent.name},
            "unitscope_version": __version__}
    with staged_directory(Path(out_dir)) as staged:
        write_csv(pd.DataFrame(unit_rows, columns=UNITS_COLUMNS), staged / "units.csv")
        write_csv(pd.DataFrame(class_rows, columns=CLASSES_COLUMNS), staged / "classes.csv")
        write_json(meta, staged / "meta.json")
    return Path(out_dir)


def _mean(hits: torch.Tensor) -> float:
    return float(hits.double().mean()) if len(hits) else float("nan")
