"""Benchmark of whole commands as users run them, interpreter start included (benchmarks/README.md, "Start-up").

Measures, interleaved in one run (the machine is shared and noisy; medians of --repeats):
  (a) ``unitscope --help``;
  (b) ``unitscope dissect`` of one layer of a small model (ProbeCNN, untrained) on a probe set of --images
      images at 224 px, on the CPU;
  (c) a bare script over the same images: import torch, decode every JPEG with Pillow, run the same model's
      forward pass in batches of 32, nothing else: the floor any dissection pays.
The ratio (b)/(c) is what a dissection costs beyond reading the images and running the model once.

    .venv/bin/python benchmarks/bench_start.py --images 600 --workdir /tmp/unitscope-start
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BARE = """
import sys
import numpy as np
import pandas as pd
import torch
from PIL import Image
from unitscope.models.probecnn import ProbeCNN
torch.manual_seed(0)
model = ProbeCNN().eval()
root = sys.argv[1]
images = pd.read_csv(f"{root}/index.csv")["image"].tolist()
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
with torch.inference_mode():
    for start in range(0, len(images), 32):
        batch = np.stack([np.asarray(Image.open(f"{root}/images/{name}").convert("RGB"))
                          for name in images[start:start + 32]])
        model((torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255 - mean) / std)
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/unitscope-start"))
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    data = args.workdir / f"probe-{args.images}"
    if not data.exists():
        subprocess.run([bin_dir / "unitscope", "probe-dataset", "--out", data, "--images", str(args.images),
                        "--workers", "1"], check=True, stdout=subprocess.DEVNULL)
    out = args.workdir / "dissect"
    commands = {
        "unitscope --help": [bin_dir / "unitscope", "--help"],
        "unitscope dissect (probecnn conv4)": [
            bin_dir / "unitscope", "dissect", "--dataset", data, "--model", "probecnn", "--layer", "conv4",
            "--device", "cpu", "--out", out],
        "bare decode + forward script": [sys.executable, "-c", BARE, data],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():  # interleaved: a noisy neighbour hits all three alike
            shutil.rmtree(out, ignore_errors=True)
            times[name].append(timed([str(part) for part in command]))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:40s} median {median:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times[name])})")
    ratio = medians["unitscope dissect (probecnn conv4)"] / medians["bare decode + forward script"]
    print(f"dissect / bare script: {ratio:.2f}x ({args.images} images, 224 px, torch threads: default)")


if __name__ == "__main__":
    main()
