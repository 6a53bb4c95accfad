"""Generate the procedural probe set: a complete Broden-format directory plus ``probe.json``.

Image ``i`` is drawn from its own generator ``numpy.random.default_rng([seed, i])`` and written in index
order, so a seed gives byte-identical files whatever the number of worker processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from unitscope.broden.writer import BrodenWriter
from unitscope.probe.canvas import Canvas
from unitscope.probe.colornames import color_layer
from unitscope.probe.scenes import SCENES
from unitscope.probe.textures import texture_image
from unitscope.probe.vocabulary import NAMES, NUMBER, SCENE_CLASSES, SCENE_SOURCE, TEXTURE_SOURCE, TEXTURES

GENERATOR = "unitscope.probe"
#: Bumped whenever the same seed would draw different images.
GENERATOR_VERSION = 2
#: Fraction of the images that are DTD-like texture samples (colour + texture labels only).
TEXTURE_FRACTION = 0.15
MIN_SIZE = 32


@dataclass
class ProbeImage:
    """One drawn image with its labels, ready for :meth:`BrodenWriter.add_image`."""

    source: str
    stem: str
    image: np.ndarray
    pixel_layers: dict[str, list[np.ndarray]]
    image_labels: dict[str, list[int]]

    def label_pixels(self) -> np.ndarray:
        """Ground-truth pixels per label number (index 0 unused): every layer, image-level labels count sh·sw."""
        counts = np.zeros(len(NAMES) + 1, dtype=np.int64)
        for layers in self.pixel_layers.values():
            for layer in layers:
                counts += np.bincount(layer.ravel(), minlength=counts.size)
        area = self.pixel_layers["color"][0].size
        for numbers in self.image_labels.values():
            counts[numbers] += area
        counts[0] = 0
        return counts


def draw_image(index: int, seed: int, size: int) -> ProbeImage:
    """Draw image ``index`` of the probe set with seed ``seed`` at ``size`` pixels."""
    rng = np.random.default_rng([seed, index])
    label_size = size // 2
    stem = f"{index:06d}"
    if rng.random() < TEXTURE_FRACTION:
        name = TEXTURES[int(rng.integers(len(TEXTURES)))]
        image = texture_image(name, size, rng)
        return ProbeImage(
            TEXTURE_SOURCE, stem, image, {"color": [color_layer(image, label_size)]}, {"texture": [NUMBER[name]]}
        )
    scene = SCENE_CLASSES[int(rng.integers(len(SCENE_CLASSES)))]
    canvas = Canvas(size, label_size)
    SCENES[scene](canvas, rng)
    image, (objects, part_1, part_2, materials) = canvas.finish(rng.uniform(0.75, 1.15), rng.uniform(0.92, 1.08, 3))
    pixel_layers = {"color": [color_layer(image, label_size)], "object": [objects]}
    parts = [layer for layer in (part_1, part_2) if layer.any()]
    if parts:
        pixel_layers["part"] = parts
    if materials.any():
        pixel_layers["material"] = [materials]
    return ProbeImage(SCENE_SOURCE, stem, image, pixel_layers, {"scene": [NUMBER[scene]]})


def _draw(args: tuple[int, int, int]) -> tuple[ProbeImage, np.ndarray]:
    """Draw one image and count its label pixels (in the worker, to keep the writing process free)."""
    probe = draw_image(*args)
    return probe, probe.label_pixels()


def generate(out: str | Path, images: int, size: int = 224, seed: int = 0, workers: int | None = None) -> Path:
    """Write ``images`` probe images of ``size`` pixels to the new Broden directory ``out``; return it.

    ``workers`` processes draw in parallel (default: all CPUs; 1 draws in this process).
    """
    out = Path(out)
    if images < 1:
        raise ValueError(f"--images must be at least 1, got {images}")
    if size < MIN_SIZE:
        raise ValueError(f"--size must be at least {MIN_SIZE} pixels, got {size}")
    if out.exists():
        raise FileExistsError(f"{out} already exists; remove it or choose another --out")
    workers = workers or os.cpu_count() or 1
    jobs = [(i, seed, size) for i in range(images)]
    pixels = np.zeros(len(NAMES) + 1, dtype=np.int64)
    present = np.zeros(len(NAMES) + 1, dtype=np.int64)
    with BrodenWriter(out, NAMES, image_size=size, label_size=size // 2) as writer:
        with _drawn_images(jobs, workers) as results:
            for probe, counts in tqdm(results, total=images, desc="probe images", unit="img", disable=None):
                writer.add_image(probe.source, probe.stem, probe.image, probe.pixel_layers, probe.image_labels)
                pixels += counts
                present += counts > 0
        meta = {
            "generator": GENERATOR,
            "version": GENERATOR_VERSION,
            "seed": seed,
            "images": images,
            "size": size,
            "label_size": size // 2,
            "scene_classes": list(SCENE_CLASSES),
            "label_counts": {
                NAMES[n]: {"images": int(present[n]), "pixels": int(pixels[n])} for n in sorted(NAMES) if present[n]
            },
        }
        writer.add_file("probe.json", json.dumps(meta, indent=1) + "\n")
    return out


@contextmanager
def _drawn_images(jobs: list[tuple[int, int, int]], workers: int) -> Iterator[Iterator[tuple[ProbeImage, np.ndarray]]]:
    """Drawn images and their label pixel counts in job order, from a process pool (or this process)."""
    if workers <= 1 or len(jobs) <= 1:
        yield map(_draw, jobs)
        return
    with Pool(min(workers, len(jobs))) as pool:
        yield pool.imap(_draw, jobs, chunksize=4)
