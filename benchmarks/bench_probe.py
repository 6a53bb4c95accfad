"""Throughput of the probe-set generator at 224 px: images/s on one core and on all cores.

Usage: python benchmarks/bench_probe.py [--images 400] [--size 224] [--repeat 3] [--tmp DIR]

Reports, per worker count, the wall-clock rate of the whole ``generate`` (drawing, JPEG/PNG encoding,
writing) and, for one core, the CPU time per image of drawing alone and of the whole run. Each run starts
from a warm process (pattern tables built), so the numbers are the steady state; each is the best of
``--repeat`` runs, which keeps other load on a shared machine out of them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from unitscope.probe.colornames import color_layer
from unitscope.probe.generate import draw_image, generate


def _timed_generate(root: Path, images: int, size: int, workers: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    generate(root, images, size=size, seed=0, workers=workers)
    return time.perf_counter() - wall, time.process_time() - cpu


def _draw_cpu(images: int, size: int) -> float:
    cpu = time.process_time()
    for i in range(images):
        draw_image(i, 0, size)
    return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is reported")
    parser.add_argument("--tmp", default=None, help="where to write the datasets (default: the system temp dir)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    for i in range(8):  # warm-up: build the cached pattern and colour tables
        color_layer(draw_image(i, 1, args.size).image, args.size // 2)
    draw_ms = min(_draw_cpu(args.images, args.size) for _ in range(args.repeat)) / args.images * 1e3
    print(f"{args.images} images at {args.size} px, {cores} cores, best of {args.repeat} runs")
    print(f"draw only, 1 core: {draw_ms:.1f} ms CPU/image ({1e3 / draw_ms:.0f} images/s)")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for workers in sorted({1, cores}):
            runs = [
                _timed_generate(Path(tmp) / f"w{workers}-{k}", args.images, args.size, workers)
                for k in range(args.repeat)
            ]
            wall, cpu = min(wall for wall, _ in runs), min(cpu for _, cpu in runs)
            line = f"generate, {workers} worker(s): {args.images / wall:.0f} images/s wall"
            if workers == 1:
                line += f", {cpu / args.images * 1e3:.1f} ms CPU/image ({args.images / cpu:.0f} images/s of CPU)"
            print(line)


if __name__ == "__main__":
    main()
