"""CPU time of one ProbeCNN SGD step (forward, loss, backward) per training condition and memory layout.

    python benchmarks/bench_train_step.py [--batch-size 32] [--rounds 5] [--threads 1]

Each round times every (condition, layout) pair once, in turn, so that a busy machine slows all pairs alike;
the table gives the median CPU seconds per step over the rounds and the contiguous / channels-last ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from unitscope.models.probecnn import Architecture, ProbeCNN

CONDITIONS = {
    "baseline": Architecture(),
    "no batch norm": Architecture(batchnorm=False),
    "dropout 0.5": Architecture(dropout=0.5),
    "width ×2": Architecture(width=2),
    "width ×4": Architecture(width=4),
}
LAYOUTS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}


def step(model: ProbeCNN, images: torch.Tensor, targets: torch.Tensor) -> float:
    start = time.process_time()
    F.cross_entropy(model(images), targets).backward()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch_size, 3, 224, 224)
    targets = torch.randint(0, 8, (args.batch_size,))
    pairs = {}
    for name, architecture in CONDITIONS.items():
        for layout_name, layout in LAYOUTS.items():
            model = ProbeCNN(num_classes=8, architecture=architecture).to(memory_format=layout).train()
            pairs[name, layout_name] = (model, images.contiguous(memory_format=layout))
            step(*pairs[name, layout_name], targets)  # warm-up
    times: dict[tuple[str, str], list[float]] = {key: [] for key in pairs}
    for _ in range(args.rounds):
        for key, (model, inputs) in pairs.items():
            times[key].append(step(model, inputs, targets))
    print(f"| condition | contiguous CPU s/step | channels-last CPU s/step | ratio |  (batch {args.batch_size}, "
          f"{args.threads} thread(s), median of {args.rounds})")
    print("|---|---|---|---|")
    for name in CONDITIONS:
        plain, last = (statistics.median(times[name, layout]) for layout in LAYOUTS)
        print(f"| {name} | {plain:.3f} | {last:.3f} | {plain / last:.2f}× |")


if __name__ == "__main__":
    main()
