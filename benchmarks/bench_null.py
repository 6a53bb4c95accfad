"""Benchmark of the permutation null (results in benchmarks/README.md, section "Permutation null").

Measures, side by side and alternating in one run on the CPU:
  (a) whole ``unitscope dissect`` commands (interpreter start included) of EfficientNet-Lite0's
      ``_blocks.10._swish:1`` and ``_swish:1`` on the probe set with ``--null-permutations`` 0, 8 and 32;
  (b) the tally of one layer over cached activations: the real labels alone, the real labels and R
      permutations sharing one mask computation (``update_tallies``), and R + 1 separate tallies.

    .venv/bin/python benchmarks/bench_null.py --images 300 --workdir /tmp/unitscope-bench
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from unitscope.activations import extract_batches
from unitscope.broden.loaders import image_loader, segmentation_loader
from unitscope.broden.reader import BrodenDataset
from unitscope.dissect.null import PermutedLabels, image_kinds, permutations
from unitscope.models import load_model
from unitscope.probe.generate import generate
from unitscope.tally import Tally, update_tallies
from unitscope.thresholds import TopK, required_k

SPEC, LAYERS = "efficientnet-lite0@imagenet", ("_blocks.10._swish:1", "_swish:1")


def whole_command(dataset: Path, permutations_: int, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    command = [str(Path(sys.executable).parent / "unitscope"), "dissect", "--dataset", str(dataset), "--model", SPEC,
               "--out", str(out), "--device", "cpu", "--null-permutations", str(permutations_)]
    for layer in LAYERS:
        command += ["--layer", layer]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def prepared(dataset: BrodenDataset, layer: str, count: int):
    """The layer's activation batches, thresholds, label batches and ``count`` permuted label batches."""
    model = load_model(SPEC)
    batches = [(idx.numpy(), acts[layer]) for idx, acts in extract_batches(
        model.module, [layer], image_loader(dataset, range(len(dataset)), 32), "imagenet", torch.device("cpu"))]
    units, h, w = batches[0][1].shape[1:]
    topk = TopK(units, required_k(len(dataset) * h * w, 0.995))
    for _, acts in batches:
        topk.update(acts)
    labels = list(segmentation_loader(dataset, range(len(dataset)), 32))
    permuted = PermutedLabels(dataset, permutations(image_kinds(dataset, len(dataset)), count, 0))
    return batches, topk.threshold(0.995), labels, [permuted.batches(indices) for indices, _ in batches]


def tally_loop(dataset: BrodenDataset, inputs, shared: bool | None) -> float:
    """Seconds to tally cached activations against the real labels and the permutations (``shared``: one mask
    computation for all, else separate tallies; None: the real labels only)."""
    batches, thresholds, labels, null = inputs
    tallies = [Tally(thresholds, dataset.primary, len(dataset.categories)) for _ in range(len(null[0]) + 1)]
    start = time.perf_counter()
    for (_, acts), seg, permuted_labels in zip(batches, labels, null):
        if shared is None:
            tallies[0].update(acts, seg)
        elif shared:
            update_tallies(tallies, acts, [seg, *permuted_labels])
        else:
            for tally, batch in zip(tallies, [seg, *permuted_labels]):
                tally.update(acts, batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/unitscope-bench"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = args.workdir / f"probe{args.images}"
    if not root.exists():
        generate(root, args.images, size=224, seed=0, workers=1)
    times: dict[int, list[float]] = {0: [], 8: [], 32: []}
    for _ in range(args.rounds):
        for count in times:
            times[count].append(whole_command(root, count, args.workdir / f"null{count}"))
    print(f"(a) whole `unitscope dissect` of {', '.join(LAYERS)}, {args.images} images, best of {args.rounds}:")
    for count, values in times.items():
        print(f"    --null-permutations {count:2d}: {min(values):6.1f} s  ({min(values) / min(times[0]):.2f}x)")
    dataset = BrodenDataset(root)
    print(f"(b) tally of {LAYERS[0]} over cached activations, 8 permutations, best of {args.rounds}:")
    inputs = prepared(dataset, LAYERS[0], 8)
    for name, shared in (("real labels only", None), ("real + 8, shared masks", True), ("9 separate tallies", False)):
        best = min(tally_loop(dataset, inputs, shared) for _ in range(args.rounds))
        print(f"    {name:24s}: {best:6.2f} s")


if __name__ == "__main__":
    main()
