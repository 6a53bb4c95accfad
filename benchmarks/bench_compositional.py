"""Seconds per unit of the compositional-explanation search: the engine (masks counted once by label set, every
candidate of a beam step scored with two sparse products) against the straightforward search that evaluates each
candidate formula on dense boolean masks of the whole dataset (tests/compositional_reference.py), on the same units.

    python benchmarks/bench_compositional.py --dataset data/probe --dissection results/dissect/probecnn/conv4
        --model file:results/models/probecnn/checkpoint-256.pt --arch probecnn [--units 4] [--max-length 3]

Run it in a finished default run. Both searches must give the same formulas and integer counts (checked). The
table gives the seconds of counting the masks (once per layer), of the engine's search per unit over every unit
of the layer, of the dense search per unit over the first ``--units`` units (it is slow), and their ratio; then
the whole `unitscope compositional` command, interpreter start included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from compositional_reference import beam_search, concept_masks, presence  # noqa: E402

from unitscope.broden.reader import BrodenDataset  # noqa: E402
from unitscope.compositional.run import count_layer  # noqa: E402
from unitscope.compositional.search import FormulaSearch  # noqa: E402
from unitscope.dissect.result import Dissected  # noqa: E402
from unitscope.dissect.sources import activation_batches, prepare  # noqa: E402
from unitscope.models import load_model  # noqa: E402
from unitscope.settings import DissectSettings  # noqa: E402
from unitscope.tally import Bilinear  # noqa: E402


def dense_unit_masks(dataset, model, dissected: Dissected, units: int) -> np.ndarray:
    """(units, N, sh, sw) bool: the first ``units`` units' masks, upsampled by the engine's bilinear resampling."""
    meta = dissected.meta
    run = prepare(dataset, model, [meta["layer"]], DissectSettings(device="cpu", max_images=meta["dataset"]["images"],
                                                                   normalize=meta["normalize"]), None)
    thresholds = torch.as_tensor(dissected.thresholds()[:units])
    masks = []
    with closing(activation_batches(run)) as batches:
        for _, raw in batches:
            acts = raw[meta["layer"]][:, :units].float()
            grid = Bilinear(tuple(acts.shape[2:]), tuple(dataset.label_size))
            masks.append((grid.dense(acts.flatten(0, 1)).view(*acts.shape[:2], *dataset.label_size)
                          > thresholds[None, :, None, None]).numpy())
    return np.concatenate(masks).transpose(1, 0, 2, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="data/probe")
    parser.add_argument("--dissection", default="results/dissect/probecnn/conv4")
    parser.add_argument("--model", default="file:results/models/probecnn/checkpoint-256.pt")
    parser.add_argument("--arch", default="probecnn")
    parser.add_argument("--units", type=int, default=4, help="units searched by the dense reference")
    parser.add_argument("--max-length", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dissected = Dissected.read(args.dissection)
    dataset = BrodenDataset(args.dataset, dissected.meta["categories"])
    model = load_model(args.model, args.arch)

    started = time.perf_counter()
    counts = count_layer(dataset, model, dissected, device="cpu")
    counted = time.perf_counter()
    search = FormulaSearch(counts, "dissection", 5)
    engine = [search.explain(unit, args.max_length) for unit in range(counts.units)]
    searched = time.perf_counter()

    masks = dense_unit_masks(dataset, model, dissected, args.units)
    concepts, image_level = concept_masks(dataset, dissected.meta["dataset"]["images"])
    present = presence(dataset.primary, len(dataset.categories), concepts, image_level, masks, dissected.meta["presence"])
    prepared = time.perf_counter()
    dense = [beam_search(masks[u], concepts, present[u], dataset.primary, "dissection", args.max_length)
             for u in range(args.units)]
    done = time.perf_counter()
    for u, (ours, theirs) in enumerate(zip(engine, dense)):
        for a, b in zip(ours, theirs, strict=True):
            assert (a.formula.labels, a.formula.operators, a.intersect, a.union) == (b[0][0], b[0][1], b[2], b[3]), u

    command = [str(Path(sys.executable).parent / "unitscope"), "compositional", "--dataset", args.dataset, "--dissection",
               args.dissection, "--model", args.model, "--max-length", str(args.max_length), "--device", "cpu",
               "--out", "/tmp/bench-compositional"] + (["--arch", args.arch] if args.arch else [])
    shutil.rmtree("/tmp/bench-compositional", ignore_errors=True)
    whole = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    whole = time.perf_counter() - whole

    per_engine = (searched - counted) / counts.units
    per_dense = (done - prepared) / args.units
    print(f"{dissected.meta['model']} {dissected.meta['layer']}: {counts.units} units, {len(dataset.primary) - 1} labels, "
          f"{counts.pixels.shape[0]} label sets, formulas up to length {args.max_length}, beam 5")
    print("| step | seconds |\n|---|---:|")
    print(f"| counting the masks by label set (once per layer) | {counted - started:.1f} |")
    print(f"| engine search, per unit (all {counts.units} units) | {per_engine:.4f} |")
    print(f"| dense masks and presence for the reference ({args.units} units) | {prepared - searched:.1f} |")
    print(f"| dense per-formula search, per unit ({args.units} units) | {per_dense:.2f} |")
    print(f"| ratio dense / engine per unit | {per_dense / per_engine:.0f}× |")
    print(f"| whole `unitscope compositional` command | {whole:.1f} |")


if __name__ == "__main__":
    main()
