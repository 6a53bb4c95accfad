"""Time `unitscope train-probecnn` on a probe set: wall-clock and CPU seconds, and the accuracy reached.

    python benchmarks/bench_train.py --dataset DIR [--iterations 128] [--threads 2]

Make the dataset first, e.g. ``unitscope probe-dataset --out /tmp/probe --images 1000``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from unitscope.settings import TRAIN_ITERATIONS
from unitscope.train import train_probecnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--iterations", type=int, default=TRAIN_ITERATIONS)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        wall, cpu = time.perf_counter(), time.process_time()
        log = train_probecnn(args.dataset, out, iterations=args.iterations)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{log['train_images']} train / {log['val_images']} val images, {args.iterations} iterations of "
        f"{log['batch_size']}, {args.threads} threads: {wall:.1f} s wall, {cpu:.1f} s CPU"
    )
    print(
        "iteration  val accuracy: "
        + ", ".join(f"{c['iteration']}: {c['val_accuracy']:.3f}" for c in log["checkpoints"])
    )


if __name__ == "__main__":
    main()
