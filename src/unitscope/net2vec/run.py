"""Net2Vec of a dissected layer, written as a result (kind ``net2vec``, docs/outputs.md): every concept's segmentation
and classification probe over the layer's binarised units (the dissection's thresholds), trained on the dataset's
``train`` images and evaluated on its ``val`` images against the best single unit, under both IoU protocols."""

from __future__ import annotations

from contextlib import closing
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from unitscope import __version__
from unitscope.broden.loaders import SegmentationBatch, segmentation_loader
from unitscope.broden.reader import BrodenDataset
from unitscope.dissect.result import Dissected
from unitscope.dissect.sources import Source, every_row, labelled_batches
from unitscope.dissect.tables import label_names
from unitscope.io import staged_directory, write_csv, write_json, write_npz
from unitscope.memory import memory_limit
from unitscope.net2vec.probes import (
    average_precision,
    retrain_top_units,
    segmentation_logits,
    top_units,
    train_classification,
    train_segmentation,
    units_carrying,
)
from unitscope.progress import progress
from unitscope.settings import NET2VEC_DEFAULTS, Net2VecSettings, format_bytes
from unitscope.tally import Bilinear

KIND = "net2vec"
SCHEMA_VERSION = 1
#: How many of each concept's largest weights the sparsity sweep keeps (``None``: all).
SPARSITY = (1, 2, 4, 8, 16, 32, None)
CONCEPTS_COLUMNS = ["number", "concept", "category", "train_images", "val_images", "alpha", "iou", "iou_dissection",
                    "unit", "unit_iou", "unit_iou_dissection", "units_90", "ap", "ap_unit", "unit_ap"]
SPARSITY_COLUMNS = ["number", "concept", "k", "iou", "iou_dissection"]
#: Net2Vec's paper-scale results (Fong & Vedaldi 2018, Net2Vec protocol, mean over Broden's concepts).
REFERENCE = {"AlexNet (ImageNet) conv5": {"combination": 0.115, "single unit": 0.043},
             "VGG16 (Places365) conv5_3": {"combination": 0.150, "single unit": 0.115}}


@dataclass
class ProbeData:
    """A layer over a dataset, as the probes need it. Held in memory: ``units`` (N, K, ⌈hw/8⌉) the binarised units
    (A_k > T_k) packed along the layer's h·w positions and ``features`` (N, K) their mean over positions; per image
    and concept ``contains``, ``present`` (the concept's category is present: the dissection's ``image`` rule) and
    ``concept_pixels``; ``unit_pixels`` (N, K) each unit's mask pixels per image (the dissection's masks) and
    ``unit_hits`` (2, K, C) those on each concept, summed over the train images and over the val images. The
    concepts' pixels are read again from the label maps whenever a batch needs them (:meth:`batches`); peak memory
    in :func:`peak_bytes`."""

    dataset: BrodenDataset
    concepts: np.ndarray
    units: np.ndarray
    map_size: tuple[int, int]
    features: torch.Tensor
    train: np.ndarray
    contains: np.ndarray
    present: np.ndarray
    concept_pixels: np.ndarray
    unit_pixels: np.ndarray
    unit_hits: np.ndarray
    workers: int = 0

    @property
    def label_size(self) -> tuple[int, int]:
        return self.dataset.label_size

    def unit_batch(self, rows: np.ndarray) -> torch.Tensor:
        """The binarised units of images ``rows`` as float32 (B, K, h, w)."""
        h, w = self.map_size
        bits = np.unpackbits(self.units[rows], axis=2, count=h * w)
        return torch.from_numpy(bits.reshape(len(rows), -1, h, w)).float()

    def batches(self, rows: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """``(rows, binarised units (B, K, h, w) float32, concept pixels (B, C, sh, sw) bool)`` over ``rows`` in
        their order, ``size`` images at a time, the label maps decoded again (by ``workers`` processes)."""
        for seg in segmentation_loader(self.dataset, rows, size, self.workers):
            part = seg.indices.numpy()
            pixels = concept_targets(label_members(seg, len(self.dataset.primary)), seg, self.concepts)
            yield part, self.unit_batch(part), pixels.reshape(len(part), -1, *self.label_size)


def label_members(seg: SegmentationBatch, labels: int) -> torch.Tensor:
    """(B, combinations, L) bool: the labels of each label combination of each image of ``seg``, its image-level
    labels included and label 0 left out."""
    b = len(seg.combination_ids)
    members = torch.zeros(b, seg.combination_labels.shape[1], labels, dtype=torch.bool)
    members.scatter_(2, seg.combination_labels.long(), True)
    members |= torch.zeros(b, labels, dtype=torch.bool).scatter_(1, seg.image_labels.long(), True)[:, None, :]
    members[:, :, 0] = False
    return members


def concept_targets(members: torch.Tensor, seg: SegmentationBatch, concepts: np.ndarray) -> torch.Tensor:
    """(B, C, S) bool: the pixels of ``concepts`` (label numbers) in each image, over its S label-map pixels."""
    b = len(members)
    ids = seg.combination_ids.long().reshape(b, -1, 1).expand(-1, -1, len(concepts))
    return members[:, :, torch.as_tensor(concepts, dtype=torch.long)].gather(1, ids).transpose(1, 2)


def probed_concepts(dataset: BrodenDataset) -> np.ndarray:
    """The label numbers Net2Vec probes by default: every label with a category."""
    numbers = np.flatnonzero(np.asarray(dataset.primary) >= 0)
    return numbers[numbers > 0]


#: Bytes per image, concept and label-map pixel of one training step (logits, their upsampling, the loss's terms and
#: their gradients: measured 20–33 on CPU).
STEP_BYTES = 33
#: Resampled unit-map values (images × units × label pixels) the pass holds at once while it counts the masks.
MASK_ELEMENTS = 1 << 23
#: Bytes per label-map pixel of the pass: per image of a batch and concept (its pixels, bool), and per image of
#: :func:`mask_images` and concept (their float32 copy) or unit (the resampling's float32 terms and the mask).
PASS_BYTES = {"concept": 1, "masked concept": 4, "masked unit": 40}


def mask_images(units: int, label_size: Sequence[int]) -> int:
    """How many images' unit maps the pass resamples at once (:data:`MASK_ELEMENTS`)."""
    return max(1, MASK_ELEMENTS // (units * int(np.prod(label_size))))


def peak_bytes(dataset: BrodenDataset, concepts: int, units: int, map_size: Sequence[int], step_images: int,
               batch_size: int) -> int:
    """At most the bytes Net2Vec holds at its peak over every image of ``dataset``: twice (while the batches' parts
    are joined) what it keeps per image, the packed binarised units (⌈hw/8⌉ bytes per unit), their means and mask
    pixels (float32 and int32: 8 bytes per unit), and per concept the containment, presence and pixel count (bool,
    bool, int32: 6 bytes); plus the larger of a batch of the pass (``batch_size`` images, :data:`PASS_BYTES`) and a
    training step (``step_images`` images, :data:`STEP_BYTES`). Torch and the model come on top."""
    pixels = dataset.label_size[0] * dataset.label_size[1]
    packed = -(-int(np.prod(map_size)) // 8)
    held = len(dataset) * (units * (packed + 8) + 6 * concepts)
    masked = min(batch_size, mask_images(units, dataset.label_size))
    batch = pixels * (batch_size * PASS_BYTES["concept"] * concepts
                      + masked * (PASS_BYTES["masked concept"] * concepts + PASS_BYTES["masked unit"] * units))
    return 2 * held + max(batch, STEP_BYTES * step_images * concepts * pixels)


def gather(dataset: BrodenDataset, source: Source, dissected: Dissected, batch_size: int = 32,
           normalize: str | None = None, device: str = "auto", workers: int = 0,
           concepts: np.ndarray | None = None) -> ProbeData:
    """One pass over every image: the layer's binarised units, the counts of ``concepts`` (label numbers; default
    :func:`probed_concepts`) and the single units' counts (a model's input normalised as the dissection's unless
    ``normalize`` says otherwise); refuses activations that are not the dissection's."""
    dataset = dissected.dataset(dataset)
    run, transform = dissected.rerun(dataset, source, batch_size, normalize, device, workers)
    meta = dissected.meta
    primary = torch.as_tensor(np.asarray(dataset.primary))
    every = probed_concepts(dataset)
    concepts = every if concepts is None else np.asarray(concepts, dtype=np.int64)
    thresholds = torch.as_tensor(dissected.thresholds(), device=run.device)
    categories = torch.zeros(len(primary), len(dataset.categories), dtype=torch.bool)
    categories[every, primary[every]] = True  # a category is present where any of its labels is, probed or not
    is_train = dataset.index["split"].to_numpy() == "train"
    parts: dict[str, list] = {key: [] for key in ("units", "features", "contains", "present", "concept_pixels",
                                                  "unit_pixels", "rows")}
    unit_hits = torch.zeros(2, len(thresholds), len(concepts), dtype=torch.float64)
    maxima = torch.full((len(thresholds),), -torch.inf, device=run.device)
    with closing(every_row(run, labelled_batches(run), "units")) as batches:
        for indices, raw, seg in batches:
            acts = transform(raw[meta["layer"]])
            b, units = acts.shape[:2]
            size = tuple(seg.combination_ids.shape[1:])
            members = label_members(seg, len(primary))
            targets = concept_targets(members, seg, concepts)  # (B, C, S)
            labels = (members & (seg.combination_pixels > 0)[:, :, None]).any(dim=1)
            grid = Bilinear(tuple(acts.shape[2:]), size, run.device)
            pixels, hits = [], []
            chunk = mask_images(units, size)  # the resampled maps a few images at a time
            for part, chosen in zip(acts.split(chunk), targets.split(chunk)):
                masks = grid.dense(part.flatten(0, 1)).reshape(len(part), units, -1) > thresholds[None, :, None]
                masks = masks.float().cpu()
                pixels.append(masks.sum(dim=2))
                hits.append(torch.bmm(masks, chosen.float().transpose(1, 2)).double())  # exact: at most S per image
            hits = torch.cat(hits)
            binary = (acts > thresholds[None, :, None, None]).cpu()
            parts["units"].append(np.packbits(binary.flatten(2).numpy(), axis=2))
            parts["features"].append(binary.float().mean(dim=(2, 3)).numpy())
            parts["contains"].append(labels[:, concepts].numpy())
            parts["present"].append((labels.float() @ categories.float() > 0)[:, primary[concepts]].numpy())
            parts["concept_pixels"].append(targets.sum(dim=2).int().numpy())
            parts["unit_pixels"].append(torch.cat(pixels).int().numpy())
            train_rows = torch.as_tensor(is_train[np.asarray(indices)])
            unit_hits[0] += hits[train_rows].sum(dim=0)
            unit_hits[1] += hits[~train_rows].sum(dim=0)
            maxima = torch.maximum(maxima, acts.amax(dim=(0, 2, 3)))
            parts["rows"].append(np.asarray(indices))
    dissected.check_peaks(maxima.cpu().numpy())
    rows = np.concatenate(parts.pop("rows"))  # 0, 1, …: the dissection's first images in order
    joined = {key: np.concatenate(value) for key, value in parts.items()}
    return ProbeData(dataset, concepts, joined["units"], tuple(acts.shape[2:]), torch.from_numpy(joined["features"]),
                     is_train[rows], joined["contains"], joined["present"], joined["concept_pixels"],
                     joined["unit_pixels"], unit_hits.round().long().numpy(), workers)


def _iou(hits: np.ndarray, area: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU = hits / (area + truth − hits), 0 where the union is empty."""
    union = area + truth - hits
    return np.divide(hits, union, out=np.zeros(hits.shape), where=union > 0)


def _protocols(hits: np.ndarray, areas: tuple[np.ndarray, np.ndarray],
               truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoUs (…, C) over a set of images by Net2Vec's protocol and by the dissection's, from the mask pixels counted
    on the images that contain the concept and on those where its category is present (``areas``, each (…, C)) and
    the concept's pixels ``truth`` (N, C)."""
    total = truth.sum(axis=0)
    return _iou(hits, areas[0], total), _iou(hits, areas[1], total)


def net2vec_layer(dataset: str | Path | BrodenDataset, source: Source, dissection: str | Path, out_dir: str | Path,
                  settings: Net2VecSettings = NET2VEC_DEFAULTS, normalize: str | None = None,
                  device: str = "auto", concepts: Sequence[str] = (), batch_size: int = 32, workers: int = 0) -> Path:
    """Train and evaluate the probes of every concept with training images (or of the named ``concepts``) on a
    dissected layer (``batch_size`` images per forward pass: the dissection's, for the same activations); writes
    ``concepts.csv``, ``sparsity.csv``, ``weights.npz``, ``summary.json`` and ``meta.json`` into ``out_dir``."""
    settings.validate()
    dissected = Dissected.read(dissection)
    dataset = dissected.dataset(dataset)
    names, primary = label_names(dataset), np.asarray(dataset.primary)
    probed = probed_concepts(dataset)
    if concepts:
        number = {names[n]: n for n in probed}
        unknown = [name for name in concepts if name not in number]
        if unknown:
            raise ValueError(f"--concept {unknown[0]!r} is not a label of the dissected categories of {dataset.root}")
        probed = np.array(sorted({number[name] for name in concepts}))
    needed = peak_bytes(dataset, len(probed), dissected.meta["units"], dissected.meta["map_size"],
                        settings.step_images, batch_size)
    limit = memory_limit()
    if needed > 3 * limit / 4:
        raise ValueError(f"--dataset {dataset.root}: Net2Vec's probes of {len(probed)} concepts over {len(dataset)} "
                         f"images ({settings.step_images} a step, {batch_size} a batch of the pass) need "
                         f"{format_bytes(needed)} at the peak, more than 3/4 of the {format_bytes(limit)} this process "
                         "may use (the rest: torch and the model); name fewer concepts with --concept, or lower "
                         "--step-images or --batch-size")
    data = gather(dataset, source, dissected, batch_size, normalize, device, workers, probed)
    train, val = np.flatnonzero(data.train), np.flatnonzero(~data.train)  # val: every image not in the train split
    if not len(train) or not len(val):
        raise ValueError(f"--dataset {dataset.root}: Net2Vec needs train and val images (index.csv split); it has "
                         f"{len(train)} and {len(val)}")
    trained = data.concept_pixels[train].sum(axis=0) > 0
    if concepts:
        has_train = {names[n]: bool(has) for n, has in zip(data.concepts, trained)}
        lacking = [name for name in concepts if not has_train[name]]  # in the order they were named
        if lacking:
            raise ValueError(f"--concept {lacking[0]!r} has no training image in {dataset.root} (split=train): "
                             "its probe cannot be trained; leave it out")
    if not trained.any():
        raise ValueError(f"--dataset {dataset.root}: no concept has a training image")
    keep = np.flatnonzero(trained)
    pixels = data.label_size[0] * data.label_size[1]
    alpha = torch.as_tensor(1 - data.concept_pixels[train][:, keep].sum(axis=0) / (len(train) * pixels),
                            dtype=torch.float32)
    units = data.units.shape[1]
    ks = sorted({min(k or units, units) for k in SPARSITY})
    fewer = ks[:-1]  # every k but all the units: the probes restricted to their k largest weights
    retraining = settings.sparsity_epochs if fewer else 0
    bar = progress(total=settings.epochs + retraining, desc="segmentation probes", unit="epoch")

    def batches(epoch: int):
        order = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(settings.seed + epoch))]
        for _, binary, targets in data.batches(order, settings.step_images):
            yield binary, targets[:, keep]
        bar.update(1)

    weight, bias = train_segmentation(batches, units, alpha, data.label_size, settings.epochs, settings.lr,
                                      settings.momentum)
    if retraining:
        restricted = retrain_top_units(batches, weight, bias, fewer, alpha, data.label_size, retraining, settings.lr,
                                       settings.momentum)
    else:
        restricted = [(top_units(weight, k), bias) for k in fewer]
    bar.close()
    sweep = [*restricted, (weight, bias)]
    hits = np.zeros((len(sweep), len(keep)), np.int64)
    areas = np.zeros((2, len(sweep), len(keep)), np.int64)  # mask pixels where the concept is contained / present
    contains, present = data.contains[:, keep], data.present[:, keep]
    for rows, binary, targets in data.batches(val, settings.step_images):
        targets = targets[:, keep]
        for s, (w, b) in enumerate(sweep):
            with torch.no_grad():
                masks = segmentation_logits(binary, w, b, data.label_size) > 0
            hits[s] += (masks & targets).flatten(2).sum(dim=2).sum(dim=0).numpy()
            sizes = masks.flatten(2).sum(dim=2).numpy()
            areas[0, s] += (sizes * contains[rows]).sum(axis=0)
            areas[1, s] += (sizes * present[rows]).sum(axis=0)
    combo = _protocols(hits, areas, data.concept_pixels[val][:, keep])

    def single(rows: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pixels = data.unit_pixels[rows].astype(np.int64).T
        return _protocols(hits[:, keep], (pixels @ contains[rows], pixels @ present[rows]),
                          data.concept_pixels[rows][:, keep])

    best = single(train, data.unit_hits[0])[0].argmax(axis=0)  # each concept's best single unit, on train images
    unit_val = single(val, data.unit_hits[1])

    features = data.features
    labels = torch.as_tensor(contains)
    cls_weight, cls_bias = train_classification(features[train], labels[train], settings.classification_epochs,
                                                settings.classification_lr, settings.momentum)
    ap = average_precision((features[val] @ cls_weight.T + cls_bias), labels[val]).numpy()
    units_ap = torch.stack([average_precision(features[train], labels[train][:, c:c + 1].expand(-1, units))
                            for c in range(len(keep))])  # (C, K): each unit's pooled activation as the score
    best_ap = units_ap.nan_to_num(-1.0).argmax(dim=1)
    unit_ap = average_precision(features[val][:, best_ap], labels[val]).numpy()

    carrying = units_carrying(weight).numpy()
    numbers = data.concepts[keep]
    categories = [dataset.categories[primary[n]] for n in numbers]
    last = len(ks) - 1
    rows = [(int(n), names[n], categories[i], int(contains[train][:, i].sum()), int(contains[val][:, i].sum()),
             float(alpha[i]), float(combo[0][last, i]), float(combo[1][last, i]),
             int(best[i] + 1), float(unit_val[0][best[i], i]), float(unit_val[1][best[i], i]), int(carrying[i]),
             float(ap[i]), int(best_ap[i]) + 1, float(unit_ap[i])) for i, n in enumerate(numbers)]
    table = pd.DataFrame(rows, columns=CONCEPTS_COLUMNS)
    sparsity = pd.DataFrame([(int(n), names[n], k, float(combo[0][s, i]), float(combo[1][s, i]))
                             for s, k in enumerate(ks) for i, n in enumerate(numbers)], columns=SPARSITY_COLUMNS)
    unseen = table["val_images"] == 0  # no val image contains the concept: nothing to score
    table.loc[unseen, ["iou", "iou_dissection", "unit_iou", "unit_iou_dissection"]] = np.nan
    sparsity.loc[sparsity["number"].isin(table.loc[unseen, "number"]), ["iou", "iou_dissection"]] = np.nan
    evaluated = table[~unseen]

    def mean(column: str) -> float | None:
        values = evaluated[column].dropna()
        return float(values.mean()) if len(values) else None

    summary = {"concepts": len(table), "evaluated": len(evaluated),
               "mean": {"net2vec": {"combination": mean("iou"), "single unit": mean("unit_iou")},
                        "dissection": {"combination": mean("iou_dissection"), "single unit": mean("unit_iou_dissection")},
                        "classification_ap": {"combination": mean("ap"), "single unit": mean("unit_ap")}},
               "units_90": float(table["units_90"].median()), "reference": REFERENCE}
    untrained = [] if concepts else [names[n] for n in data.concepts[~trained]]
    meta = {"kind": KIND, "schema_version": SCHEMA_VERSION,
            **{key: dissected.meta[key] for key in ("model", "model_spec", "weights_sha256", "layer", "units",
                                                    "dataset", "categories", "rotation")},
            "dissection": {"path": str(dissected.path), "run": dissected.path.parent.name},
            "settings": asdict(settings), "requested_concepts": list(concepts), "images": {"train": len(train), "val": len(val)},
            "untrained_concepts": untrained, "unitscope_version": __version__}
    with staged_directory(Path(out_dir)) as staged:
        write_csv(table, staged / "concepts.csv")
        write_csv(sparsity, staged / "sparsity.csv")
        write_npz({"concepts": numbers, "segmentation_weight": weight.numpy(), "segmentation_bias": bias.numpy(),
                   "sparsity_k": np.array(fewer, np.int64),
                   "sparsity_weight": np.asarray([w.numpy() for w, _ in restricted],
                                                 np.float32).reshape(-1, *weight.shape),
                   "sparsity_bias": np.asarray([b.numpy() for _, b in restricted], np.float32).reshape(-1, *bias.shape),
                   "classification_weight": cls_weight.numpy(), "classification_bias": cls_bias.numpy()},
                  staged / "weights.npz")
        write_json(summary, staged / "summary.json")
        write_json(meta, staged / "meta.json")
    return Path(out_dir)
