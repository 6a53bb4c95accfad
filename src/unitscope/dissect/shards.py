"""The sharded two-stage dissection: per-shard top-k parts, merged thresholds, per-shard tallies, merged results.

Accumulators merge exactly, so the merged files are byte-identical to an unsharded run (docs/engine.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unitscope.broden.reader import BrodenDataset
from unitscope.dissect.null import stack_counts, unstack_counts
from unitscope.dissect.passes import tally_pass, topk_pass
from unitscope.dissect.sources import Run, Source, prepare
from unitscope.dissect.tables import image_paths, label_names, output_dir, write_layer
from unitscope.io import publish_directory, write_csv, write_json, write_npz
from unitscope.results import read_thresholds, read_top_images, thresholds_table, top_images_table
from unitscope.settings import DissectError, DissectSettings, Shard
from unitscope.tally import TallyCounts
from unitscope.thresholds import TopImages, TopK

PART_FILE = "part.json"
THRESHOLDS_FILE = "thresholds.json"
NULL_FILE = "null.npz"


def run_topk_stage(dataset: BrodenDataset, source: Source, layers: Sequence[str], out_dir: str | Path,
                   settings: DissectSettings, shard: Shard) -> Path:
    """Stage 1 of a sharded dissection: this shard's top-k values and top images of every layer."""
    run = prepare(dataset, source, layers, settings, shard)
    out_dir = Path(out_dir)
    with output_dir(out_dir) as scratch:
        state = topk_pass(run, None)
        for layer, s in state.items():
            staging = scratch / layer
            arrays = {f"topk_{k}": v for k, v in s.topk.state().items()}
            write_npz({**arrays, "top_values": s.images.values, "top_indices": s.images.indices}, staging / "topk.npz")
            write_json(run.layer_meta(layer, s.topk.units, s.map_size), staging / "meta.json")
            publish_directory(staging, out_dir / layer)
        write_json(_part_info(run, "topk", shard, [s.images for s in state.values()]), out_dir / PART_FILE)
    return out_dir


def _part_info(run: Run, stage: str, shard: Shard, tops: Sequence[TopImages]) -> dict:
    """``part.json`` of a stage: which rows it covers, and the paths of the top images it knows of."""
    paths = image_paths(run.dataset)
    known = np.unique(np.concatenate([top.indices.reshape(-1) for top in tops]))
    return {"stage": stage, "shard": str(shard), "rows": [run.rows.start, run.rows.stop], "images": run.images,
            "layers": run.layers, "image_paths": {str(i): paths(int(i)) for i in known}}


def run_tally_stage(dataset: BrodenDataset, source: Source, layers: Sequence[str], out_dir: str | Path,
                    settings: DissectSettings, shard: Shard, thresholds_dir: str | Path) -> Path:
    """Stage 2 of a sharded dissection: this shard's counts, with thresholds from a merged top-k stage.

    The thresholds are known, so a model needs only one forward pass here (no temporary cache).
    """
    run = prepare(dataset, source, layers, settings, shard)
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
                    ignore=("presence", "iou_threshold", "null"))
        thresholds[layer] = read_thresholds(thresholds_dir / layer / "thresholds.csv")
        tops[layer] = read_top_images(thresholds_dir / layer / "top_images.csv", meta["units"], settings.top_k)
        sizes[layer] = tuple(meta["map_size"])
    out_dir = Path(out_dir)
    with output_dir(out_dir) as scratch:
        state = tally_pass(run, thresholds, tops, sizes, None)
        for layer, s in state.items():
            staging = scratch / layer
            arrays = {**s.tally.counts().arrays(), "thresholds": thresholds[layer], "top_values": s.top.values,
                      "top_indices": s.top.indices, "top_maps": s.maps, "top_filled": s.filled}
            write_npz(arrays, staging / "tally.npz")
            if s.null:
                write_npz(stack_counts([t.counts() for t in s.null]), staging / NULL_FILE, compressed=True)
            write_json(metas[layer], staging / "meta.json")
            publish_directory(staging, out_dir / layer)
        part = _part_info(run, "tally", shard, [s.top for s in state.values()])
        part.update(label_names=label_names(dataset), primary=np.asarray(dataset.primary).tolist())
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


def _merged_null(paths: Sequence[Path], meta: dict) -> list[TallyCounts]:
    """The null tallies of a layer summed over the shards' parts (none without a null)."""
    if not (meta.get("null") or {}).get("permutations"):
        return []
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise DissectError(f"{missing[0]} not found: the tally part was written without its permutation null")
    total = None
    for path in paths:
        with np.load(path) as arrays:
            part = unstack_counts(arrays)
        total = part if total is None else [a + b for a, b in zip(total, part, strict=True)]
    return total


def merge(parts: Sequence[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Merge shard parts: top-k parts → thresholds and top images; tally parts → final results."""
    loaded = _read_parts(parts)
    stage, layers = loaded[0][1]["stage"], loaded[0][1]["layers"]
    image_paths: dict[str, str] = {}
    for _, info in loaded:
        image_paths.update(info["image_paths"])
    out_dir = Path(out_dir)
    written = {}
    with output_dir(out_dir) as scratch:
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
                publish_directory(staging, written[layer])
            elif stage == "tally":
                counts = TallyCounts.from_arrays(files[0])
                null = _merged_null([p / layer / NULL_FILE for p, _ in loaded], meta)
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
                written[layer] = write_layer(
                    out_dir / layer, scratch / layer, meta, counts, files[0]["thresholds"], top, maps,
                    info["label_names"], np.asarray(info["primary"]), lambda i: image_paths[str(i)], null,
                )
            else:
                raise DissectError(f"unknown stage {stage!r} in {loaded[0][0] / PART_FILE}")
        if stage == "topk":
            write_json({"stage": "thresholds", "images": loaded[0][1]["images"], "layers": layers},
                       out_dir / THRESHOLDS_FILE)
    return written
