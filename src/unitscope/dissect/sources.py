"""The activation source of a dissection: the validated run, and its batches in image order.

:func:`prepare` checks a dissection's inputs (dataset, model or activation caches, layers, settings, shard)
and returns a :class:`Run`. :func:`activation_batches` yields ``(dataset rows, {layer: raw activations})``
over the run's rows in image order, from the model's forward pass or from caches, and
:func:`labelled_batches` pairs each batch with the label maps of the same rows: the stream every analysis
of a layer reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unitscope import __version__
from unitscope.activations import extract_batches, layer_sizes, read_cache_batches
from unitscope.broden.loaders import image_loader, segmentation_loader
from unitscope.broden.reader import BrodenDataset
from unitscope.dissect.null import NULL_ALPHA, null_quantile
from unitscope.models import LoadedModel, load_model, normalizer, resolve_layers
from unitscope.models.layers import warn_linear_layers
from unitscope.progress import progress
from unitscope.settings import DissectError, DissectSettings, Shard, resolve_device

#: ``kind`` and ``schema_version`` of a dissection's ``meta.json`` (docs/outputs.md).
KIND = "dissection"
SCHEMA_VERSION = 1

Source = LoadedModel | nn.Module | str | Sequence[Path]


@dataclass
class Run:
    """A validated dissection: dataset, activation source, layers, settings and the image rows to process."""

    dataset: BrodenDataset
    layers: list[str]
    settings: DissectSettings
    model: LoadedModel | None
    caches: list[Path]
    images: int  # rows 0..images-1 of the dataset are dissected (all shards together)
    rows: range  # this process's rows
    source_meta: dict

    @property
    def device(self) -> torch.device:
        return resolve_device(str(self.settings.device))

    def dataset_meta(self) -> dict:
        return self.dataset.record(self.images)

    def identity(self, kind: str, schema_version: int, layer: str, units: int) -> dict:
        """The first keys of a result's ``meta.json``: what it is, and which model and layer it comes from."""
        return {
            "kind": kind,
            "schema_version": schema_version,
            "model": self.settings.name or self.source_meta["model"],
            "model_spec": self.source_meta["model_spec"],
            "weights_sha256": self.source_meta["weights_sha256"],
            "checkpoint": self.source_meta["checkpoint"],
            "layer": layer,
            "units": units,
        }

    def layer_meta(self, layer: str, units: int, map_size: tuple[int, int]) -> dict:
        s = self.settings
        return {
            **self.identity(KIND, SCHEMA_VERSION, layer, units),
            "map_size": list(map_size),
            "image_size": list(self.dataset.image_size),
            "label_size": list(self.dataset.label_size),
            "dataset": self.dataset_meta(),
            "categories": list(self.dataset.categories),
            "quantile": 1.0 - s.level if s.netdissect_level else s.quantile,
            "quantile_level": s.level,
            "iou_threshold": s.iou_threshold,
            "presence": s.presence,
            "normalize": self.source_meta["normalize"],
            "top_k": s.top_k,
            "rotation": asdict(s.rotation) if s.rotation is not None else None,
            "null": {"permutations": s.null_permutations, "seed": s.null_seed, "alpha": NULL_ALPHA,
                     "quantile": null_quantile(int((np.asarray(self.dataset.primary) >= 0).sum()))}
            if s.null_permutations else None,
            "tags": dict(s.tags),
            "unitscope_version": __version__,
        }


def prepare(
    dataset: BrodenDataset, source: Source, layers: Sequence[str], settings: DissectSettings, shard: Shard | None
) -> Run:
    settings.validate()
    if not layers:
        raise DissectError("give at least one --layer")
    if len(set(layers)) != len(layers):
        raise DissectError(f"--layer names repeat: {', '.join(layers)}")
    images = len(dataset) if settings.max_images is None else min(len(dataset), settings.max_images)
    if images == 0:
        raise DissectError(f"dataset {dataset.root} has no images with data in the selected categories")
    if shard is not None and not 0 <= shard.index < shard.count:
        raise DissectError(f"--shard {shard}: expected I/N with 0 <= I < N")
    rows = shard.range(images, settings.batch_size) if shard is not None else range(images)
    if not rows:
        raise DissectError(
            f"--shard {shard} of {images} images is empty (shards split at multiples of --batch-size "
            f"{settings.batch_size}); use fewer shards or a smaller batch size"
        )
    if isinstance(source, str):
        source = load_model(source)
    if isinstance(source, nn.Module):
        source = LoadedModel(module=source.eval(), spec=f"python:{type(source).__qualname__}",
                             name=type(source).__name__, default_normalize="imagenet")
    if isinstance(source, LoadedModel):
        normalize = settings.normalize or source.default_normalize
        try:
            resolve_layers(source.module, layers)
            normalizer(normalize)  # validates the name
        except ValueError as error:
            raise DissectError(str(error)) from None
        warn_linear_layers(source.module, list(layers), tuple(dataset.image_size))
        meta = {"model": source.name, "model_spec": source.spec, "weights_sha256": source.weights_sha256(),
                "checkpoint": source.checkpoint, "normalize": normalize}
        return Run(dataset, list(layers), settings, source, [], images, rows, meta)
    caches = [Path(p) for p in source]
    if not caches:
        raise DissectError("give --model or at least one --activations cache directory")
    meta = {}
    for layer in layers:
        for cache in caches:
            info_path = cache / layer / "activations.json"
            if not info_path.is_file():
                raise DissectError(f"{info_path} not found: the activation cache {cache} has no layer {layer!r}")
            info = json.loads(info_path.read_text())
            recorded = info.get("dataset")
            if isinstance(recorded, dict) and recorded.get("index_sha256") not in (None, dataset.index_sha256()):
                raise DissectError(f"{info_path} was extracted from another dataset (index.csv checksum differs)")
            if info.get("categories", dataset.categories) != dataset.categories:
                raise DissectError(
                    f"{info_path} was extracted with --categories {','.join(info['categories'])}; dissect with the "
                    "same categories (they decide which dataset rows are used)"
                )
            meta.setdefault("model", info.get("model"))
            meta.setdefault("model_spec", info.get("model_spec"))
            meta.setdefault("weights_sha256", info.get("weights_sha256"))
            meta.setdefault("checkpoint", info.get("checkpoint"))
            meta.setdefault("normalize", info.get("normalize", settings.normalize))
    return Run(dataset, list(layers), settings, None, caches, images, rows, meta)


def _rebatch(stream, rows: range, batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Restrict a stream of ``(indices, {layer: (B, ...)})`` to ``rows`` and cut it into ``batch_size`` batches.

    Caches may hold more rows than a run needs (another shard, ``--max-images``) and several shard caches
    may end mid-batch; this makes their batches line up with the segmentation loader's.
    """
    pending_idx: list[np.ndarray] = []
    pending: dict[str, list[torch.Tensor]] = {}
    size = 0

    def flush(take: int):
        nonlocal size
        idx = np.concatenate(pending_idx)
        tensors = {k: torch.cat(v) for k, v in pending.items()}
        out = (idx[:take], {k: v[:take] for k, v in tensors.items()})
        pending_idx[:] = [idx[take:]]
        for k, v in tensors.items():
            pending[k] = [v[take:]]
        size -= take
        return out

    for indices, tensors in stream:
        indices = np.asarray(indices, dtype=np.int64)
        keep = (indices >= rows.start) & (indices < rows.stop)
        if not keep.any():
            continue
        keep_t = torch.from_numpy(keep)
        pending_idx.append(indices[keep])
        for k, v in tensors.items():
            pending.setdefault(k, []).append(v[keep_t.to(v.device)])
        size += int(keep.sum())
        while size >= batch_size:
            yield flush(batch_size)
    if size:
        yield flush(size)


def activation_batches(run: Run, cache_dirs: Sequence[Path] | None = None):
    """``(indices, {layer: raw activations})`` over ``run.rows`` in order, from the model or a cache."""
    bs = run.settings.batch_size
    if cache_dirs is None and run.model is not None:
        loader = image_loader(run.dataset, list(run.rows), bs, run.settings.workers)
        stream = extract_batches(run.model.module, run.layers, loader, run.source_meta["normalize"], run.device)
        return _with_numpy_indices(stream)  # already exactly run.rows, in batches of bs
    caches = list(cache_dirs if cache_dirs is not None else run.caches)
    per_layer = [read_cache_batches(caches, layer, bs) for layer in run.layers]

    def zipped():
        for batches in zip(*per_layer, strict=True):
            indices = np.asarray(batches[0][0])
            for other in batches[1:]:
                if not np.array_equal(np.asarray(other[0]), indices):
                    raise DissectError("the activation caches of the requested layers cover different images")
            yield indices, {layer: torch.as_tensor(b[1]) for layer, b in zip(run.layers, batches)}

    return _rebatch(zipped(), run.rows, bs)


def cache_bytes(run: Run) -> int:
    """Size of the float32 activation cache of the run's layers over its rows (a model's run only)."""
    per_image = layer_sizes(run.model.module, run.layers, tuple(run.dataset.image_size))
    return 4 * len(run.rows) * sum(per_image.values())


def caches_to_disk(run: Run) -> bool:
    """Whether the first pass writes an activation cache for the second (``settings.cache``): always with
    ``disk``, never with ``recompute``, with ``auto`` when it fits ``settings.cache_budget_gb``."""
    policy = run.settings.cache
    return policy == "disk" or (policy == "auto" and cache_bytes(run) <= run.settings.cache_budget_gb * 1e9)


def every_row(run: Run, batches, desc: str) -> Iterator:
    """The batches of ``batches`` (any of the streams above) with a progress bar over ``run.rows``. Use it with
    ``contextlib.closing``: closing it closes ``batches`` (a model's hooks come off at once, also on error);
    exhausting it checks that every row came."""
    seen = 0
    bar = progress(total=len(run.rows), desc=desc, unit="img")
    try:
        for batch in batches:
            yield batch
            seen += len(batch[0])
            bar.update(len(batch[0]))
    finally:
        batches.close()
        bar.close()
    check_rows(seen, run)


def check_rows(seen: int, run: Run) -> None:
    if seen != len(run.rows):
        raise DissectError(
            f"the activations cover {seen} of the {len(run.rows)} images {run.rows.start}..{run.rows.stop - 1} to "
            f"dissect; give caches extracted from the same dataset rows (or adjust --max-images/--shard)"
        )


def labelled_batches(run: Run, cache_dirs: Sequence[Path] | None = None):
    """``(indices, {layer: raw activations}, label batch)`` over ``run.rows`` in image order. Close it (or
    exhaust it) to release the model's hooks."""
    segmentations = segmentation_loader(run.dataset, list(run.rows), run.settings.batch_size, run.settings.workers)
    with closing(activation_batches(run, cache_dirs)) as batches:
        for (indices, raw), seg in zip(batches, segmentations):
            if not np.array_equal(np.asarray(seg.indices), indices):
                raise DissectError(
                    f"the activations start at image {indices[0]} where the dataset rows start at "
                    f"{int(seg.indices[0])}; give caches that hold every dissected row"
                )
            yield indices, raw, seg


def _with_numpy_indices(stream):
    """The model's batches with numpy indices; closing this closes the extraction (its hooks come off)."""
    with closing(stream):
        for indices, activations in stream:
            yield indices.numpy(), activations
