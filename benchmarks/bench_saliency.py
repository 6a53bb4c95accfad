"""Seconds per (image, method) of the saliency maps of one model: batched as `unitscope sanity-check` computes them
at every stage, against a naive loop that explains one image with one method per call.

    python benchmarks/bench_saliency.py [--model efficientnet-lite0@imagenet] [--images 4] [--rounds 3] [--threads 1]

Each round times both ways in turn (the machine is shared: a busy moment slows both alike); the table gives the
median wall-clock seconds per (image, method) over the rounds and the naive / batched ratio. Both give the same maps
up to float32 rounding (checked before timing; the largest difference is printed, relative to the map's largest
value). Batched convolutions round differently, and in SmoothGrad's noisy copies that can flip a ReLU6 gate: its maps
differ by up to a few tenths of a percent of their largest value in float32, and not at all in float64.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from unitscope.models import load_model
from unitscope.saliency.images import BUILTIN, load_images
from unitscope.saliency.methods import Explainer
from unitscope.saliency.run import Subject, explain_all
from unitscope.settings import SALIENCY_METHODS, SaliencySettings

#: The default run's methods (SmoothGrad over IG left out: 2,500 passes per map).
METHODS = tuple(m for m in SALIENCY_METHODS if m != "smoothgrad-ig")


def batched(subject: Subject, inputs: torch.Tensor, baseline: torch.Tensor, targets: torch.Tensor) -> dict:
    explainer = Explainer(subject.model.module, baseline, subject.layer, SaliencySettings(methods=METHODS))
    return explain_all(explainer, inputs, targets).maps


def naive(subject: Subject, inputs: torch.Tensor, baseline: torch.Tensor, targets: torch.Tensor) -> dict:
    maps: dict[str, list[torch.Tensor]] = {m: [] for m in METHODS}
    for i in range(len(inputs)):
        for method in METHODS:
            settings = SaliencySettings(methods=(method,), batch_size=1)
            explainer = Explainer(subject.model.module, baseline, subject.layer, settings)
            maps[method].append(explainer.explain(inputs[i : i + 1], targets[i : i + 1], first_index=i).maps[method])
    return {m: torch.cat(parts) for m, parts in maps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0@imagenet")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    subject = Subject(load_model(args.model))
    inputs, baseline = subject.inputs(load_images([f"builtin:{n}" for n in list(BUILTIN)[: args.images]], args.size))
    explainer = Explainer(subject.model.module, baseline, subject.layer, SaliencySettings(methods=METHODS))
    targets = explainer.predict(inputs)
    reference, check = batched(subject, inputs, baseline, targets), naive(subject, inputs, baseline, targets)
    worst = max(float((reference[m] - check[m]).abs().max() / reference[m].abs().max()) for m in METHODS)
    assert worst < 1e-2, f"batched and per-image maps differ by {worst:.2g} of their largest value"
    times: dict[str, list[float]] = {"batched": [], "naive": []}
    for _ in range(args.rounds):
        for name, run in (("batched", batched), ("naive", naive)):
            start = time.perf_counter()
            run(subject, inputs, baseline, targets)
            times[name].append((time.perf_counter() - start) / (len(inputs) * len(METHODS)))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.model}, {len(inputs)} images of {args.size} px, {len(METHODS)} methods, {args.threads} thread(s), "
          f"median of {args.rounds} rounds")
    print("| way | seconds per (image, method) |\n|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value:.3f} |")
    print(f"naive / batched: {median['naive'] / median['batched']:.2f}; largest difference between the two ways' maps: "
          f"{worst:.1e} of the map's largest value")


if __name__ == "__main__":
    main()
