"""Benchmark `unitscope report`: time to render a site of N units and the weight of its unit pages.

    .venv/bin/python benchmarks/bench_report.py --units 10000 --layers 8 --workers 2

Results are synthetic but follow docs/outputs.md exactly (k top images per unit with 7×7 maps holding a
smooth blob, labels and IoUs drawn from the dataset's label table); images come from the procedural probe
set (224×224 scenes), generated once under ``benchmarks/out/``. Prints the build time and the average
bytes of a unit page plus its strip.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from unitscope.probe.generate import generate
from unitscope.report.site import build_site, vega_bundle
from unitscope.io import write_json
from unitscope.summary import summarize

CATEGORIES = ["color", "object", "part", "material", "scene", "texture"]


def synthetic_layer(out: Path, dataset: Path, layer: str, units: int, k: int, rng: np.random.Generator) -> None:
    """One layer's result files with plausible numbers (vectorised: 10,000 units take seconds)."""
    labels = pd.read_csv(dataset / "label.csv", keep_default_na=False)
    index = pd.read_csv(dataset / "index.csv", keep_default_na=False)
    by_category = {c: labels[labels["category"].str.startswith(c)] for c in CATEGORIES}
    by_category = {c: t for c, t in by_category.items() if len(t)}
    out.mkdir(parents=True)
    unit = np.arange(1, units + 1)
    tally = pd.DataFrame({"unit": unit})
    ious = []
    for category, table in by_category.items():
        n = min(5, len(table))
        picks = np.argsort(rng.random((units, len(table))), axis=1)[:, :n]
        iou = np.sort(rng.beta(1.2, 25, size=(units, n)), axis=1)[:, ::-1]
        names = table["name"].to_numpy()[picks]
        numbers = table["number"].to_numpy()[picks]
        ious.append(pd.DataFrame({
            "unit": np.repeat(unit, n), "label": names.ravel(), "number": numbers.ravel(), "category": category,
            "iou": iou.ravel(), "intersect": 1, "activation": 1, "truth": 1,
        }))
        for field, value in (("label", names[:, 0]), ("truth", 1), ("activation", 1.0), ("intersect", 1), ("iou", iou[:, 0])):
            tally[f"{category}-{field}"] = value
    iou_cols = [f"{c}-iou" for c in by_category]
    best = np.asarray(list(by_category))[tally[iou_cols].to_numpy().argmax(axis=1)]
    tally.insert(1, "category", best)
    tally.insert(2, "label", [tally.at[i, f"{c}-label"] for i, c in enumerate(best)])
    tally.insert(3, "score", tally[iou_cols].max(axis=1))
    tally = tally.sort_values(["score", "unit"], ascending=[False, True])
    tally.to_csv(out / "tally.csv", index=False)
    pd.concat(ious).sort_values(["unit", "iou"], ascending=[True, False]).to_csv(out / "ious.csv", index=False)
    pd.DataFrame({"unit": unit, "threshold": 0.6}).to_csv(out / "thresholds.csv", index=False)
    picks = np.argsort(rng.random((units, len(index))), axis=1)[:, :k]
    pd.DataFrame({
        "unit": np.repeat(unit, k), "rank": np.tile(np.arange(1, k + 1), units), "image_index": picks.ravel(),
        "image": index["image"].to_numpy()[picks.ravel()], "max_activation": np.tile(np.linspace(3, 2, k), units),
    }).to_csv(out / "top_images.csv", index=False)
    yy, xx = np.mgrid[0:7, 0:7]
    centre = rng.uniform(0, 6, size=(units, k, 2, 1, 1))
    spread = rng.uniform(0.8, 2.0, size=(units, k, 1, 1))
    maps = np.exp(-((yy - centre[:, :, 0]) ** 2 + (xx - centre[:, :, 1]) ** 2) / (2 * spread**2))
    np.save(out / "top_maps.npy", maps.astype(np.float32))
    write_json(summarize(pd.read_csv(out / "tally.csv", keep_default_na=False), 0.04), out / "summary.json")
    meta = {
        "model": "synthnet", "model_spec": "python:bench:synthnet", "layer": layer, "units": units,
        "map_size": [7, 7], "image_size": [224, 224], "label_size": [112, 112],
        "dataset": {"path": str(dataset), "name": "probe", "images": len(index), "index_sha256": None},
        "categories": list(by_category), "quantile": 0.005, "quantile_level": 0.995, "iou_threshold": 0.04,
        "presence": "image", "normalize": "imagenet", "top_k": k, "rotation": None, "tags": {},
        "unitscope_version": "bench",
    }
    (out / "meta.json").write_text(json.dumps(meta))


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--k", type=int, default=10, help="top images per unit")
    parser.add_argument("--images", type=int, default=400, help="probe images to draw from")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/report"))
    args = parser.parse_args()

    dataset = args.out.parent / f"probe-{args.images}"
    if not dataset.exists():
        generate(dataset, args.images, size=224, seed=0)
    results = args.out / "results"
    shutil.rmtree(results, ignore_errors=True)
    rng = np.random.default_rng(0)
    per_layer = args.units // args.layers
    for i in range(args.layers):
        synthetic_layer(results / f"layer{i + 1}", dataset, f"layer{i + 1}", per_layer, args.k, rng)
    vega_bundle()  # bundling is cached on disk after the first run; keep it out of the timing
    calibration = time.process_time()
    sum(range(10**7))  # CPU seconds of a pure-Python loop: ~0.17 s on an idle modern core
    calibration = time.process_time() - calibration

    start = time.perf_counter()
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    site = build_site([results], dataset, args.out / "site", workers=args.workers)
    seconds = time.perf_counter() - start
    main_cpu = _cpu(resource.getrusage(resource.RUSAGE_SELF)) - _cpu(cpu_start)
    worker_cpu = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))  # the strip workers (joined at the end)

    pages = sorted(site.rglob("unit-*.html"))
    strips = sorted(site.rglob("strips/*.webp"))
    page_bytes = sum(p.stat().st_size for p in pages) / len(pages)
    strip_bytes = sum(p.stat().st_size for p in strips) / len(strips)
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    print(f"{len(pages)} units in {args.layers} layers, k={args.k}, {args.workers} workers: {seconds:.1f} s "
          f"({len(pages) / seconds:.0f} units/s); CPU: main process {main_cpu:.1f} s, strip workers {worker_cpu:.1f} s")
    print(f"calibration loop sum(range(10**7)): {calibration:.2f} s CPU")
    print(f"unit page {page_bytes / 1000:.1f} KB + strip {strip_bytes / 1000:.1f} KB = "
          f"{(page_bytes + strip_bytes) / 1000:.1f} KB on average; site {total / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
