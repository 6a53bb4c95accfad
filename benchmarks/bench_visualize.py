"""Seconds per unit of activation maximisation: a batch of units optimised together (one forward/backward pass
per step serves them all) against one unit at a time, on the same units, steps and seeds.

    python benchmarks/bench_visualize.py [--model efficientnet-lite0@imagenet] [--layer _swish:1] [--units 16]
        [--arch ARCH] [--steps 32] [--input-size 112] [--method lucid] [--rounds 3] [--threads 0] [--device cpu]

Units are the layer's first ``--units`` (0-based channels); the objective is each unit's mean pre-activation, as
`unitscope visualize` optimises it. Each round times both ways in turn (the machine is shared: a busy moment
slows both alike); the table gives the median seconds per unit over the rounds for ``--steps`` steps, and per
unit for the default 512 (Lucid) or 1000 (pixel) steps by scaling. Both ways give the same images up to float
rounding (checked first: the largest difference is printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from unitscope.models import load_model
from unitscope.settings import VISUALIZE_DEFAULTS, resolve_device
from unitscope.visualize.maximize import maximize
from unitscope.visualize.objectives import Objective
from unitscope.visualize.preactivation import pre_activation_layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0@imagenet")
    parser.add_argument("--arch", default=None, help="architecture of a file:PATH model")
    parser.add_argument("--layer", default="_swish:1")
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--method", choices=["lucid", "pixel"], default="lucid")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (as unitscope visualize --device)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = load_model(args.model, args.arch)
    model.module.to(device)
    settings = dataclasses.replace(VISUALIZE_DEFAULTS, steps=args.steps, pixel_steps=args.steps,
                                   input_size=args.input_size, methods=(args.method,))
    side = settings.input_size
    probe = torch.zeros(1, 3, side, side, device=device)
    layer = pre_activation_layer(model.module, args.layer, probe) or args.layer
    objectives = [Objective("channel", unit) for unit in range(args.units)]
    seeds = list(range(args.units))

    def batched() -> torch.Tensor:
        return maximize(model.module, layer, objectives, model.default_normalize, settings, seeds, args.method).images

    def alone() -> torch.Tensor:
        return torch.cat([maximize(model.module, layer, [objective], model.default_normalize, settings, [seed],
                                   args.method).images for objective, seed in zip(objectives, seeds)])

    worst = float((batched() - alone()).abs().max())
    times: dict[str, list[float]] = {"batched": [], "one unit at a time": []}
    for _ in range(args.rounds):
        for name, run in (("batched", batched), ("one unit at a time", alone)):
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / args.units)
    median = {name: statistics.median(values) for name, values in times.items()}
    full = VISUALIZE_DEFAULTS.steps if args.method == "lucid" else VISUALIZE_DEFAULTS.pixel_steps
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} thread(s)"
    print(f"{args.model} {args.layer} (objective at {layer}), {args.units} units, {args.method}, input {side} px, "
          f"{where}, median of {args.rounds} rounds")
    print(f"| way | s per unit, {args.steps} steps | s per unit, {full} steps (scaled) |\n|---|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value:.3f} | {value * full / args.steps:.1f} |")
    print(f"one at a time / batched: {median['one unit at a time'] / median['batched']:.2f}; largest difference "
          f"between the two ways' images: {worst:.1e}")


if __name__ == "__main__":
    main()
