"""Network Dissection of one model's layers on a Broden-format dataset (spec §2), as a library.

Exact thresholds must be known before anything can be tallied, so a dissection is two passes over the
images (``docs/engine.md``):

1. **top-k pass**: activations of every requested layer (one forward pass serves all layers, or batches
   read from an activation cache) → optional rotation → per-unit :class:`~unitscope.thresholds.TopK`
   (exact quantile) and :class:`~unitscope.thresholds.TopImages`. With a model, the raw activations are
   also written to a temporary float32 cache inside the output directory, so pass 2 needs no forward.
2. **tally pass**: cached activations + segmentations → rotation → :class:`~unitscope.tally.Tally`, and
   the raw maps of each unit's top images.

Both passes are streaming; memory is set by the batch size, units × k (thresholds) and units × top-k maps,
not by the number of images. The accumulators of image shards merge exactly, so the sharded two-stage
flow (:func:`run_topk_stage`, :func:`run_tally_stage`, :func:`merge`) writes byte-identical results.

Notebook use::

    from unitscope.broden.reader import BrodenDataset
    from unitscope.dissect import DissectSettings, dissect
    dissect(BrodenDataset("broden1_224"), "torchvision:resnet18@imagenet", ["layer4"], "out")
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from unitscope import __version__
from unitscope.activations import ActivationCacheWriter, extract_batches, read_cache_batches
from unitscope.broden.loaders import image_loader, segmentation_loader
from unitscope.broden.reader import BrodenDataset
from unitscope.models import LoadedModel, load_model, normalizer, resolve_layers
from unitscope.settings import DissectError, DissectSettings, Rotation, Shard, resolve_device
from unitscope.progress import progress
from unitscope.results import (
    iou_table,
    read_thresholds,
    read_top_images,
    tally_table,
    thresholds_table,
    top_images_table,
    write_csv,
    write_json,
    write_npy,
    write_npz,
)
from unitscope.rotation import rotate_activations, rotation_matrix
from unitscope.staging import make_scratch
from unitscope.summary import summarize
from unitscope.tally import Tally, TallyCounts
from unitscope.thresholds import TopImages, TopK, required_k

PART_FILE = "part.json"
THRESHOLDS_FILE = "thresholds.json"
#: ``kind`` and ``schema_version`` of a dissection's ``meta.json`` (docs/outputs.md).
KIND = "dissection"
SCHEMA_VERSION = 1


Source = LoadedModel | nn.Module | str | Sequence[Path]


# --------------------------------------------------------------------------------------------- inputs


@dataclass
class _Run:
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

    def layer_meta(self, layer: str, units: int, map_size: tuple[int, int]) -> dict:
        s = self.settings
        return {
            "kind": KIND,
            "schema_version": SCHEMA_VERSION,
            "model": s.name or self.source_meta["model"],
            "model_spec": self.source_meta["model_spec"],
            "weights_sha256": self.source_meta["weights_sha256"],
            "layer": layer,
            "units": units,
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
            "tags": dict(s.tags),
            "unitscope_version": __version__,
        }


def _prepare(
    dataset: BrodenDataset, source: Source, layers: Sequence[str], settings: DissectSettings, shard: Shard | None
) -> _Run:
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
        meta = {"model": source.name, "model_spec": source.spec, "weights_sha256": source.weights_sha256(),
                "normalize": normalize}
        return _Run(dataset, list(layers), settings, source, [], images, rows, meta)
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
            meta.setdefault("normalize", info.get("normalize", settings.normalize))
    return _Run(dataset, list(layers), settings, None, caches, images, rows, meta)


# --------------------------------------------------------------------------------------------- streams


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


def _activation_stream(run: _Run, cache_dirs: Sequence[Path] | None = None):
    """``(indices, {layer: raw activations})`` over ``run.rows`` in order, from the model or a cache."""
    bs = run.settings.batch_size
    if cache_dirs is None and run.model is not None:
        loader = image_loader(run.dataset, list(run.rows), bs, run.settings.workers)
        stream = extract_batches(run.model.module, run.layers, loader, run.source_meta["normalize"], run.device)
        return ((i.numpy(), acts) for i, acts in stream)  # already exactly run.rows, in batches of bs
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


class _Transform:
    """The per-batch change of basis (identity without rotation), on the run's device."""

    def __init__(self, rotation: Rotation | None, device: torch.device) -> None:
        self.rotation, self.device = rotation, device
        self.matrices: dict[int, torch.Tensor] = {}

    def __call__(self, acts: torch.Tensor) -> torch.Tensor:
        acts = acts.to(device=self.device, dtype=torch.float32)
        if acts.dim() == 2:  # (B, C) outputs are C units with 1×1 maps
            acts = acts[:, :, None, None]
        if self.rotation is None:
            return acts
        units = acts.shape[1]
        if units not in self.matrices:
            r = self.rotation
            matrix = _rotation_matrix(units, r.alpha, r.seed, r.unpermute)
            self.matrices[units] = torch.tensor(matrix, dtype=torch.float32, device=self.device)
        return rotate_activations(acts, self.matrices[units]).to(torch.float32)


@functools.lru_cache(maxsize=8)
def _rotation_matrix(units: int, alpha: float, seed: int, unpermute: bool) -> np.ndarray:
    """P·Q^α, computed once per process: its Schur decomposition is O(units³), and both passes need it."""
    matrix = np.asarray(rotation_matrix(units, alpha, seed, unpermute=unpermute))
    matrix.flags.writeable = False
    return matrix


def _check_rows(seen: int, run: _Run) -> None:
    if seen != len(run.rows):
        raise DissectError(
            f"the activations cover {seen} of the {len(run.rows)} images {run.rows.start}..{run.rows.stop - 1} to "
            f"dissect; give caches extracted from the same dataset rows (or adjust --max-images/--shard)"
        )


# --------------------------------------------------------------------------------------------- passes


@dataclass
class _LayerTopK:
    topk: TopK
    images: TopImages
    map_size: tuple[int, int]


def _topk_pass(run: _Run, cache_root: Path | None) -> dict[str, _LayerTopK]:
    """Pass 1: per-unit top-k values and top images of every layer over ``run.rows``.

    With ``cache_root``, the raw activations are also written there as an activation cache for pass 2.
    """
    transform = _Transform(run.settings.rotation, run.device)
    writer = None
    if cache_root is not None:
        writer = ActivationCacheWriter(
            cache_root, image_start=run.rows.start, image_stop=run.rows.stop, model=run.source_meta["model"],
            model_spec=run.source_meta["model_spec"], dataset=run.dataset_meta(),
            extra={"weights_sha256": run.source_meta["weights_sha256"]},
        )
    state: dict[str, _LayerTopK] = {}
    seen = 0
    bar = progress(total=len(run.rows), desc="thresholds", unit="img")
    try:
        for indices, raw in _activation_stream(run):
            if writer is not None:
                writer.write(torch.from_numpy(indices), raw)
            for layer in run.layers:
                acts = transform(raw[layer])
                if layer not in state:
                    units, (h, w) = acts.shape[1], tuple(acts.shape[2:])
                    k = required_k(run.images * h * w, run.settings.level)
                    top = TopImages.empty(units, run.settings.top_k)
                    state[layer] = _LayerTopK(TopK(units, k, run.device), top, (h, w))
                state[layer].topk.update(acts)
                state[layer].images.update(indices, acts.amax(dim=(2, 3)).cpu().numpy())
            seen += len(indices)
            bar.update(len(indices))
        _check_rows(seen, run)
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    return state


@dataclass
class _LayerTally:
    tally: Tally
    top: TopImages
    maps: np.ndarray  # (units, k, h, w) float32
    filled: np.ndarray  # (units, k) bool
    lookup: dict[int, list[tuple[int, int]]]  # image index -> [(unit, rank)]


def _tally_pass(run: _Run, thresholds: Mapping[str, np.ndarray], tops: Mapping[str, TopImages],
                map_sizes: Mapping[str, tuple[int, int]], caches: Sequence[Path] | None) -> dict[str, _LayerTally]:
    """Pass 2: exact counts of every layer over ``run.rows`` and the maps of the units' top images."""
    transform = _Transform(run.settings.rotation, run.device)
    primary = np.asarray(run.dataset.primary)
    state: dict[str, _LayerTally] = {}
    for layer in run.layers:
        top = tops[layer]
        units, k = top.indices.shape
        lookup: dict[int, list[tuple[int, int]]] = {}
        for unit in range(units):
            for rank in range(k):
                lookup.setdefault(int(top.indices[unit, rank]), []).append((unit, rank))
        state[layer] = _LayerTally(
            Tally(thresholds[layer], primary, len(run.dataset.categories), run.settings.presence, run.device),
            top, np.zeros((units, k, *map_sizes[layer]), np.float32), np.zeros((units, k), bool), lookup,
        )
    seen = 0
    segmentations = segmentation_loader(run.dataset, list(run.rows), run.settings.batch_size, run.settings.workers)
    bar = progress(total=len(run.rows), desc="tally", unit="img")
    try:
        for (indices, raw), seg in zip(_activation_stream(run, caches), segmentations):
            if not np.array_equal(np.asarray(seg.indices), indices):
                raise DissectError(
                    f"the activations start at image {indices[0]} where the dataset rows start at "
                    f"{int(seg.indices[0])}; give caches that hold every dissected row"
                )
            for layer in run.layers:
                acts = transform(raw[layer])
                layer_state = state[layer]
                layer_state.tally.update(acts, seg)
                hits = [(row, unit, rank) for row, image in enumerate(indices.tolist())
                        for unit, rank in layer_state.lookup.get(image, ())]
                if hits:  # one device-to-host copy per batch, not one per top image
                    rows, units, ranks = (list(column) for column in zip(*hits))
                    layer_state.maps[units, ranks] = acts[rows, units].cpu().numpy()
                    layer_state.filled[units, ranks] = True
            seen += len(indices)
            bar.update(len(indices))
    finally:
        bar.close()
    _check_rows(seen, run)
    return state


# --------------------------------------------------------------------------------------------- outputs


@contextmanager
def _output(out_dir: Path) -> Iterator[Path]:
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


def _publish(staged: Path, target: Path) -> None:
    """Move a finished directory into place, replacing an older one."""
    if target.exists():
        shutil.rmtree(target)
    staged.rename(target)


def _image_path(dataset: BrodenDataset):
    images = dataset.index["image"]
    return lambda i: str(images.iloc[i])


def _write_layer(
    target: Path, staging: Path, meta: dict, counts: TallyCounts, thresholds: np.ndarray, top: TopImages,
    maps: np.ndarray, names: Sequence[str], primary: np.ndarray, image_paths,
) -> Path:
    """Write one layer's result files (docs/outputs.md) into ``staging``, then move them to ``target``."""
    categories = meta["categories"]
    tally = tally_table(counts, names, primary, categories)
    write_csv(tally, staging / "tally.csv")
    write_csv(thresholds_table(thresholds), staging / "thresholds.csv")
    write_csv(iou_table(counts, names, primary, categories), staging / "ious.csv")
    write_csv(top_images_table(top, image_paths), staging / "top_images.csv")
    write_npy(maps, staging / "top_maps.npy")
    write_json(summarize(tally, meta["iou_threshold"], categories), staging / "summary.json")
    write_json(meta, staging / "meta.json")
    _publish(staging, target)
    return target


def _label_names(dataset: BrodenDataset) -> list[str]:
    names = dataset.labels["name"].reindex(range(len(dataset.primary)))
    return ["" if pd.isna(n) else str(n) for n in names]


def dissect(
    dataset: BrodenDataset | str | Path,
    source: Source,
    layers: Sequence[str],
    out_dir: str | Path,
    settings: DissectSettings | None = None,
) -> dict[str, Path]:
    """Dissect ``layers`` of a model (spec string, :class:`LoadedModel` or ``nn.Module``) or of activation
    caches (a list of directories), writing ``<out_dir>/<layer>/`` per layer. Returns those directories."""
    dataset = dataset if isinstance(dataset, BrodenDataset) else BrodenDataset(dataset)
    settings = settings or DissectSettings()
    run = _prepare(dataset, source, layers, settings, None)
    out_dir = Path(out_dir)
    with _output(out_dir) as scratch:
        cache_root = scratch / "cache" if run.model is not None else None
        first = _topk_pass(run, cache_root)
        thresholds = {layer: s.topk.threshold(settings.level) for layer, s in first.items()}
        second = _tally_pass(run, thresholds, {l: s.images for l, s in first.items()},
                             {l: s.map_size for l, s in first.items()}, [cache_root] if cache_root else None)
        if cache_root is not None:
            shutil.rmtree(cache_root)
        names, paths = _label_names(dataset), _image_path(dataset)
        written = {}
        for layer in run.layers:
            s = second[layer]
            meta = run.layer_meta(layer, s.maps.shape[0], first[layer].map_size)
            written[layer] = _write_layer(out_dir / layer, scratch / layer, meta, s.tally.counts(), thresholds[layer],
                                          s.top, s.maps, names, dataset.primary, paths)
    return written


# --------------------------------------------------------------------------------------------- sharding


def run_topk_stage(dataset: BrodenDataset, source: Source, layers: Sequence[str], out_dir: str | Path,
                   settings: DissectSettings, shard: Shard) -> Path:
    """Stage 1 of a sharded dissection: this shard's top-k values and top images of every layer."""
    run = _prepare(dataset, source, layers, settings, shard)
    out_dir = Path(out_dir)
    with _output(out_dir) as scratch:
        state = _topk_pass(run, None)
        for layer, s in state.items():
            staging = scratch / layer
            arrays = {f"topk_{k}": v for k, v in s.topk.state().items()}
            write_npz({**arrays, "top_values": s.images.values, "top_indices": s.images.indices}, staging / "topk.npz")
            write_json(run.layer_meta(layer, s.topk.units, s.map_size), staging / "meta.json")
            _publish(staging, out_dir / layer)
        write_json(_part_info(run, "topk", shard, [s.images for s in state.values()]), out_dir / PART_FILE)
    return out_dir


def _part_info(run: _Run, stage: str, shard: Shard, tops: Sequence[TopImages]) -> dict:
    """``part.json`` of a stage: which rows it covers, and the paths of the top images it knows of."""
    paths = _image_path(run.dataset)
    known = np.unique(np.concatenate([top.indices.reshape(-1) for top in tops]))
    return {"stage": stage, "shard": str(shard), "rows": [run.rows.start, run.rows.stop], "images": run.images,
            "layers": run.layers, "image_paths": {str(i): paths(int(i)) for i in known}}


def run_tally_stage(dataset: BrodenDataset, source: Source, layers: Sequence[str], out_dir: str | Path,
                    settings: DissectSettings, shard: Shard, thresholds_dir: str | Path) -> Path:
    """Stage 2 of a sharded dissection: this shard's counts, with thresholds from a merged top-k stage.

    The thresholds are known, so a model needs only one forward pass here (no temporary cache).
    """
    run = _prepare(dataset, source, layers, settings, shard)
    thresholds_dir = Path(thresholds_dir)
    info_path = thresholds_dir / THRESHOLDS_FILE
    if not info_path.is_file():
        raise DissectError(f"{info_path} not found: --thresholds must be the output of `unitscope merge` on topk parts")
    thresholds, tops, sizes, metas = {}, {}, {}, {}
    for layer in run.layers:
        meta_path = thresholds_dir / layer / "meta.json"
        if not meta_path.is_file():
            raise DissectError(f"{thresholds_dir} has no thresholds for layer {layer!r}")
        meta = json.loads(meta_path.read_text())
        metas[layer] = run.layer_meta(layer, meta["units"], tuple(meta["map_size"]))
        _check_same(meta, metas[layer], f"the thresholds in {meta_path}", "this tally stage",
                    ignore=("presence", "iou_threshold"))
        thresholds[layer] = read_thresholds(thresholds_dir / layer / "thresholds.csv")
        tops[layer] = read_top_images(thresholds_dir / layer / "top_images.csv", meta["units"], settings.top_k)
        sizes[layer] = tuple(meta["map_size"])
    out_dir = Path(out_dir)
    with _output(out_dir) as scratch:
        state = _tally_pass(run, thresholds, tops, sizes, None)
        for layer, s in state.items():
            staging = scratch / layer
            arrays = {**s.tally.counts().arrays(), "thresholds": thresholds[layer], "top_values": s.top.values,
                      "top_indices": s.top.indices, "top_maps": s.maps, "top_filled": s.filled}
            write_npz(arrays, staging / "tally.npz")
            write_json(metas[layer], staging / "meta.json")
            _publish(staging, out_dir / layer)
        part = _part_info(run, "tally", shard, [s.top for s in state.values()])
        part.update(label_names=_label_names(dataset), primary=np.asarray(dataset.primary).tolist())
        write_json(part, out_dir / PART_FILE)
    return out_dir


def _check_same(meta: dict, expected: dict, what: str, other: str, ignore: Sequence[str] = ()) -> None:
    """Raise unless two layer metas agree on everything that affects the numbers."""
    skip = {"model", "tags", "unitscope_version", *ignore}
    for key in expected:
        if key not in skip and meta.get(key) != expected[key]:
            raise DissectError(f"{what} were computed with {key}={meta.get(key)!r}, but {other} has {expected[key]!r}")


def _read_parts(parts: Sequence[str | Path]) -> list[tuple[Path, dict]]:
    if not parts:
        raise DissectError("give at least one PART directory to merge")
    loaded = []
    for part in map(Path, parts):
        path = part / PART_FILE
        if not path.is_file():
            raise DissectError(f"{path} not found: {part} is not the output of `unitscope dissect --shard ... --stage`")
        loaded.append((part, json.loads(path.read_text())))
    first = loaded[0][1]
    for part, info in loaded:
        for key in ("stage", "images", "layers"):
            if info[key] != first[key]:
                raise DissectError(f"{part} has {key}={info[key]!r} but {loaded[0][0]} has {first[key]!r}")
    loaded.sort(key=lambda item: item[1]["rows"][0])
    covered = 0
    for part, info in loaded:
        start, stop = info["rows"]
        if start != covered:
            what = "overlap" if start < covered else "leave out images"
            raise DissectError(
                f"the parts {what} at image {min(start, covered)} ({part}); give every shard exactly once"
            )
        covered = stop
    if covered != first["images"]:
        raise DissectError(f"the parts cover images 0..{covered - 1} of {first['images']}; a shard is missing")
    return loaded


def merge(parts: Sequence[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Merge shard parts: top-k parts → thresholds and top images; tally parts → final results."""
    loaded = _read_parts(parts)
    stage, layers = loaded[0][1]["stage"], loaded[0][1]["layers"]
    image_paths: dict[str, str] = {}
    for _, info in loaded:
        image_paths.update(info["image_paths"])
    out_dir = Path(out_dir)
    written = {}
    with _output(out_dir) as scratch:
        for layer in layers:
            metas = [json.loads((p / layer / "meta.json").read_text()) for p, _ in loaded]
            for (part, _), meta in zip(loaded[1:], metas[1:]):
                _check_same(meta, metas[0], f"{part}/{layer}", f"{loaded[0][0]}")
            meta = metas[0]
            files = [np.load(p / layer / f"{stage}.npz") for p, _ in loaded]
            if stage == "topk":
                topk = TopK.from_state({k[5:]: v for k, v in files[0].items() if k.startswith("topk_")})
                top = TopImages(files[0]["top_values"], files[0]["top_indices"], meta["top_k"])
                for f in files[1:]:
                    topk.merge(TopK.from_state({k[5:]: v for k, v in f.items() if k.startswith("topk_")}))
                    top.merge(TopImages(f["top_values"], f["top_indices"], meta["top_k"]))
                staging = scratch / layer
                write_csv(thresholds_table(topk.threshold(meta["quantile_level"])), staging / "thresholds.csv")
                write_csv(top_images_table(top, lambda i: image_paths[str(i)]), staging / "top_images.csv")
                write_json(meta, staging / "meta.json")
                written[layer] = out_dir / layer
                _publish(staging, written[layer])
            elif stage == "tally":
                counts = TallyCounts.from_arrays(files[0])
                maps, filled = files[0]["top_maps"].copy(), files[0]["top_filled"].copy()
                for f in files[1:]:
                    counts = counts + TallyCounts.from_arrays(f)
                    maps[f["top_filled"]] = f["top_maps"][f["top_filled"]]
                    filled |= f["top_filled"]
                if not filled.all():
                    raise DissectError(
                        f"layer {layer}: some top-image maps are in no part; give every shard's tally part"
                    )
                top = TopImages(files[0]["top_values"], files[0]["top_indices"], meta["top_k"])
                info = loaded[0][1]
                written[layer] = _write_layer(
                    out_dir / layer, scratch / layer, meta, counts, files[0]["thresholds"], top, maps,
                    info["label_names"], np.asarray(info["primary"]), lambda i: image_paths[str(i)],
                )
            else:
                raise DissectError(f"unknown stage {stage!r} in {loaded[0][0] / PART_FILE}")
        if stage == "topk":
            write_json({"stage": "thresholds", "images": loaded[0][1]["images"], "layers": layers},
                       out_dir / THRESHOLDS_FILE)
    return written
