"""Generate the procedural probe set: a complete Broden-format directory plus ``probe.json``.

Image ``i`` is drawn from its own generator ``numpy.random.default_rng([seed, i])`` and written in index
order, so a seed gives byte-identical files whatever the number of worker processes. Which image-level label
(scene class or texture) image ``i`` shows follows a balanced schedule (:func:`image_label`): every run of
:data:`CYCLE` consecutive images shows each label once, so ``n`` images give every scene and texture at
least ``n // CYCLE`` images.
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

from unitscope.broden.writer import BrodenWriter, EncodedImage, ImageEncoder
from unitscope.probe.canvas import Canvas
from unitscope.probe.colornames import color_layer
from unitscope.probe.scenes import SCENES
from unitscope.probe.textures import texture_image
from unitscope.probe import DEFAULT_SIZE, MIN_SIZE
from unitscope.progress import progress
from unitscope.probe.vocabulary import NAMES, NUMBER, SCENE_CLASSES, SCENE_SOURCE, TEXTURE_SOURCE, TEXTURES

GENERATOR = "unitscope.probe"
#: Bumped whenever the same seed would write different files (3: colour layer from the exact 2×2 mean, label PNGs
#: written by unitscope with unfiltered rows; 4: the balanced schedule of scene classes and textures).
GENERATOR_VERSION = 4
#: The image-level labels, each shown once per cycle: scene images (all six categories) and DTD-like
#: texture samples (colour and texture labels only).
IMAGE_LABELS: tuple[str, ...] = SCENE_CLASSES + TEXTURES
CYCLE = len(IMAGE_LABELS)


@dataclass
class ProbeImage:
    """One drawn image with its labels, ready for :meth:`ImageEncoder.encode`."""

    source: str
    stem: str
    image: np.ndarray
    pixel_layers: dict[str, list[np.ndarray]]
    image_labels: dict[str, list[int]]


class _Generator(np.random.Generator):
    """numpy's default generator with a faster scalar ``uniform``: the same numbers from the same stream.

    ``Generator.uniform`` computes ``low + (high - low) * random()`` in C, but its argument handling costs
    ≈ 4 µs a call; the scenes make ≈ 70 such calls per image.
    """

    def uniform(
        self, low: float = 0.0, high: float = 1.0, size: int | tuple[int, ...] | None = None
    ) -> float | np.ndarray:
        if size is None:
            return low + (high - low) * self.random()
        return super().uniform(low, high, size)


def image_label(index: int, seed: int) -> str:
    """The scene class or texture image ``index`` shows: cycle ``index // CYCLE`` shows every label once,
    in an order drawn from ``default_rng([seed, cycle, CYCLE])``."""
    cycle, position = divmod(index, CYCLE)
    order = np.random.default_rng([seed, cycle, CYCLE]).permutation(CYCLE)
    return IMAGE_LABELS[int(order[position])]


def draw_image(index: int, seed: int, size: int) -> ProbeImage:
    """Draw image ``index`` of the probe set with seed ``seed`` at ``size`` pixels."""
    rng = _Generator(np.random.PCG64([seed, index]))  # the stream of np.random.default_rng([seed, index])
    label_size = size // 2
    stem = f"{index:06d}"
    name = image_label(index, seed)
    if name in TEXTURES:
        image = texture_image(name, size, rng)
        return ProbeImage(
            TEXTURE_SOURCE, stem, image, {"color": [color_layer(image, label_size)]}, {"texture": [NUMBER[name]]}
        )
    canvas = Canvas(size, label_size)
    SCENES[name](canvas, rng)
    image, (objects, part_1, part_2, materials) = canvas.finish(rng.uniform(0.75, 1.15), rng.uniform(0.92, 1.08, 3))
    pixel_layers = {"color": [color_layer(image, label_size)], "object": [objects]}
    parts = [layer for layer in (part_1, part_2) if layer.any()]
    if parts:
        pixel_layers["part"] = parts
    if materials.any():
        pixel_layers["material"] = [materials]
    return ProbeImage(SCENE_SOURCE, stem, image, pixel_layers, {"scene": [NUMBER[name]]})


def _draw(args: tuple[ImageEncoder, int, int, int]) -> EncodedImage:
    """Draw and encode one image (in the worker, so that the writing process only writes bytes)."""
    encoder, *job = args
    probe = draw_image(*job)
    return encoder.encode(probe.source, probe.stem, probe.image, probe.pixel_layers, probe.image_labels)


def generate(
    out: str | Path, images: int, size: int = DEFAULT_SIZE, seed: int = 0, workers: int | None = None
) -> Path:
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
    pixels = np.zeros(len(NAMES) + 1, dtype=np.int64)
    present = np.zeros(len(NAMES) + 1, dtype=np.int64)
    with BrodenWriter(out, NAMES, image_size=size, label_size=size // 2) as writer:
        jobs = [(writer.encoder, i, seed, size) for i in range(images)]
        with _encoded_images(jobs, workers) as results:
            for encoded in progress(results, total=images, desc="probe images", unit="img"):
                writer.add_encoded(encoded)
                for number, count in encoded.label_pixels().items():
                    pixels[number] += count
                    present[number] += 1
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
def _encoded_images(jobs: list[tuple[ImageEncoder, int, int, int]], workers: int) -> Iterator[Iterator[EncodedImage]]:
    """Drawn and encoded images in job order, from a process pool (or this process)."""
    if workers <= 1 or len(jobs) <= 1:
        yield map(_draw, jobs)
        return
    with Pool(min(workers, len(jobs))) as pool:
        yield pool.imap(_draw, jobs, chunksize=4)
