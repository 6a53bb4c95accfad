"""The whole sanity-check experiment of one model of the default run, as the workflow runs it: one
`unitscope sanity-check` command (interpreter start, model load, every stage), batched against one image per pass.

    python benchmarks/bench_sanity.py [--model efficientnet-lite0] [--rounds 1] [--batch-sizes 16 1] [--tmp DIR]

The command's options are the default config's (`config/config.yaml`, key `saliency.models.<model>`: its images,
image limit, methods and tests), on the threads torch picks (all cores). Each round runs every batch size in turn
(the machine is shared: a busy moment slows all alike); the table gives the median wall-clock seconds of the whole
command and per (image, method, stage). The similarity tables of the batch sizes are compared (equal up to float32
rounding of batched convolutions).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from unitscope.saliency.similarity import CONTROLS

REPO = Path(__file__).resolve().parents[1]


def command(model: str, batch_size: int, out: Path) -> list[str]:
    """`unitscope sanity-check` with the default config's options for ``model``."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    saliency = config["saliency"]
    entry = saliency["models"][model]
    sanity = entry.get("sanity") or {}
    options = ["--model", f"{model}@imagenet" if model == "efficientnet-lite0" else model]
    for image in entry["images"]:
        options += ["--image", image if image.startswith("builtin:") else str(REPO / image)]
    limit = sanity.get("max_images") or entry.get("max_images")
    options += ["--max-images", str(limit)] if limit else []
    for method in sanity.get("methods") or saliency["methods"]:
        options += ["--method", method]
    for test in sanity.get("tests", []):
        options += ["--test", test]
    return [str(Path(sys.executable).parent / "unitscope"), "sanity-check", *options, "--batch-size", str(batch_size),
            "--out", str(out)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0",
                        help="a model of the default config's saliency.models that loads without training")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 1])
    parser.add_argument("--tmp", type=Path, default=None, help="scratch parent directory")
    args = parser.parse_args()
    times: dict[int, list[float]] = {size: [] for size in args.batch_sizes}
    with tempfile.TemporaryDirectory(dir=args.tmp) as scratch:
        for round_ in range(args.rounds):
            for size in args.batch_sizes:
                out = Path(scratch) / f"round{round_}-batch{size}"
                start = time.perf_counter()
                done = subprocess.run(command(args.model, size, out), capture_output=True, text=True)
                times[size].append(time.perf_counter() - start)
                if done.returncode != 0:
                    sys.exit(f"sanity-check failed:\n{done.stderr[-4000:]}")
        tables = {size: pd.read_csv(Path(scratch) / f"round0-batch{size}" / "similarity.csv")
                  for size in args.batch_sizes}
    first, *others = args.batch_sizes
    worst = max((float((tables[first]["value"] - tables[size]["value"]).abs().max()) for size in others), default=0.0)
    rows = tables[first]
    rows = rows[(rows["metric"] == "spearman-abs") & ~rows["method"].isin(CONTROLS)]
    maps = len(rows)  # one per (image, method, randomised stage)
    print(f"{args.model}: {rows['image'].nunique()} images, {rows['method'].nunique()} methods, "
          f"{rows['stage'].nunique()} stages, {maps} compared maps; median of {args.rounds} round(s)")
    print("| batch size | whole command, s | s per (image, method, stage) |\n|---|---|---|")
    for size, values in times.items():
        median = statistics.median(values)
        print(f"| {size} | {median:.0f} | {median / maps:.3f} |")
    print(f"largest difference between the batch sizes' similarity values: {worst:.1e}")


if __name__ == "__main__":
    main()
