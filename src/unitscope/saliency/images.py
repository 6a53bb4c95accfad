"""The images a saliency run explains: files, folders, Broden-format datasets (their held-out scene images), or
photographs that install with scikit-image and scikit-learn (``builtin:NAME``), resized and centre-cropped to
the model's input size."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".tif", ".tiff")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


#: Photographs inside the scikit-image and scikit-learn wheels (real data, offline).
BUILTIN: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle": _skimage("stereo_motorcycle"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}


@dataclass(frozen=True)
class Image:
    """An image ready for a model: ``pixels`` (size, size, 3) uint8, ``name`` unique in its run, ``source`` where
    it came from (``builtin:NAME`` or the file's name: no directory, so results do not depend on where they ran), ``sha256`` of the source's pixels before resizing."""

    name: str
    source: str
    pixels: np.ndarray
    sha256: str


def fit(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize so that the shorter side is ``size`` (bilinear, antialiased), then crop the centre square."""
    image = PILImage.fromarray(pixels)
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), PILImage.Resampling.BILINEAR)
    left, top = (width - size) // 2, (height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _read(path: Path) -> np.ndarray:
    try:
        with PILImage.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot decode the image ({error}); give a JPEG, PNG or WebP file") from None


def _files(source: str) -> list[tuple[str, str, Callable[[], np.ndarray]]]:
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name not in BUILTIN:
            raise ValueError(f"unknown image {source!r}; built-in photographs: "
                             + ", ".join(f"builtin:{n}" for n in BUILTIN))
        return [(name, source, BUILTIN[name])]
    path = Path(source)
    if (path / "index.csv").is_file():
        return [(p.stem, p.name, lambda p=p: _read(p)) for p in _held_out(path)]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return [(p.stem, p.name, lambda p=p: _read(p)) for p in files]
    if not path.is_file():
        raise FileNotFoundError(f"image {source}: no such file or folder (or builtin:NAME, one of "
                                + ", ".join(BUILTIN) + ")")
    return [(path.stem, path.name, lambda: _read(path))]


def _held_out(root: Path) -> list[Path]:
    """A Broden-format dataset's ``val`` images with a scene label (every ``val`` image if it has no scenes)."""
    index = pd.read_csv(root / "index.csv", dtype=str, keep_default_na=False)
    if "image" not in index or "split" not in index:
        raise ValueError(f"{root / 'index.csv'}: no image and split columns; is {root} a Broden-format dataset?")
    rows = index[(index["split"] == "val") & ((index["scene"] != "") if "scene" in index else True)]
    if rows.empty:
        raise ValueError(f"{root / 'index.csv'}: no val images to explain")
    return [root / "images" / image for image in rows["image"]]


def load_images(sources: Sequence[str], size: int, limit: int | None = None) -> list[Image]:
    """The images of ``sources`` (files, folders, Broden datasets, ``builtin:NAME``), in order, fitted to
    ``size``; only the first ``limit`` when given."""
    if not sources:
        raise ValueError("no images given: name files, folders, datasets or builtin:NAME photographs")
    files = [entry for source in sources for entry in _files(source)][:limit]
    images, seen = [], set()
    for name, where, load in files:
        pixels = load()
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        unique, count = name, 1
        while unique in seen:
            count += 1
            unique = f"{name}-{count}"
        seen.add(unique)
        digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
        images.append(Image(unique, where, fit(pixels[:, :, :3], size), digest))
    return images
