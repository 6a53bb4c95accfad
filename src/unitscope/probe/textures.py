"""Procedural textures: the surface patterns that make materials look like materials, and DTD-like images.

Material patterns are grey-level images generated once per process from fixed seeds (so output never
depends on which worker drew an image); a :class:`Paint` tints one per region. Texture images
(:func:`texture_image`) are whole-image samples of one DTD texture name each.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from unitscope.probe.vocabulary import TEXTURES

RGB = tuple[int, int, int]

#: Material patterns :class:`Paint` can use (``"flat"`` is a plain colour, ``"gradient"`` runs top to bottom).
PATTERNS: tuple[str, ...] = (
    "flat",
    "gradient",
    "brick",
    "wood",
    "glass",
    "metal",
    "fabric",
    "noise",
    "rock",
    "foliage",
    "tile",
    "grass",
    "water",
)


def _smooth_noise(rng: np.random.Generator, size: int, cells: tuple[int, int]) -> np.ndarray:
    """Noise in [0, 1] of shape (size, size), smooth at the scale of ``cells`` (rows, columns) per image."""
    coarse = Image.fromarray(rng.random(cells).astype(np.float32))
    return np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC)).clip(0, 1)


def _fractal(rng: np.random.Generator, size: int, base: int, octaves: int = 4) -> np.ndarray:
    total = sum(_smooth_noise(rng, size, (base * 2**o, base * 2**o)) / 2**o for o in range(octaves))
    total -= total.min()
    return total / max(total.max(), 1e-6)


def _to_gray(values: np.ndarray) -> np.ndarray:
    return (np.clip(values, 0, 1) * 255).astype(np.uint8)


@cache
def pattern(name: str, canvas: int) -> np.ndarray:
    """The uint8 grey-level pattern ``name`` for a canvas of ``canvas`` pixels: a square 1.5× the canvas."""
    size = canvas * 3 // 2
    rng = np.random.default_rng([PATTERNS.index(name), canvas])
    unit = canvas / 448  # pattern scales are tuned for a 448-pixel canvas
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    grain = _smooth_noise(rng, size, (size // 24, size // 24))
    if name == "flat":
        values = np.full((size, size), 1.0)
    elif name == "brick":
        h = 14 * unit
        row = np.floor(y / h)
        shifted = x + (row % 2) * h
        col = np.floor(shifted / (2.2 * h))
        shade = rng.random((int(row.max()) + 1, int(col.max()) + 2))[row.astype(int), col.astype(int)]
        mortar = ((y % h) < 2.2 * unit) | ((shifted % (2.2 * h)) < 2.2 * unit)
        values = np.where(mortar, 0.95, 0.25 + 0.35 * shade + 0.15 * grain)
    elif name == "wood":
        warp = _smooth_noise(rng, size, (6, 3))
        values = 0.55 + 0.3 * np.sin((y + 40 * unit * warp) / (2.5 * unit)) * (0.6 + 0.4 * grain)
    elif name == "glass":
        streaks = ((x + 0.6 * y) % (170 * unit)) < 18 * unit
        values = 0.25 + 0.35 * ((x + y) / (2 * size)) + 0.5 * streaks + 0.05 * grain
    elif name == "metal":
        brushed = rng.random((size, 1)) * 0.15
        values = 0.45 + 0.25 * np.sin(y / (40 * unit)) + brushed + 0.1 * grain
    elif name == "fabric":
        values = 0.55 + 0.2 * np.sin(x * 1.6 / unit) * np.sin(y * 1.6 / unit) + 0.3 * (grain - 0.5)
    elif name == "noise":
        values = 0.5 + 0.5 * (rng.random((size, size)) - 0.5) + 0.3 * (grain - 0.5)
    elif name == "rock":
        fractal = _fractal(rng, size, 6)
        cracks = np.abs(_smooth_noise(rng, size, (16, 16)) - 0.5) < 0.02
        values = 0.2 + 0.8 * fractal - 0.2 * cracks
    elif name == "foliage":
        blobs = _smooth_noise(rng, size, (size // 7, size // 7))
        values = 0.15 + 0.85 * (blobs > 0.5) * blobs + 0.2 * grain
    elif name == "tile":
        h = 16 * unit
        row = np.floor(y / h)
        shifted = x + (row % 2) * h * 0.7
        within = (y % h) / h
        edge = (shifted % (1.4 * h)) < 1.5 * unit
        values = np.where(edge, 0.1, 0.3 + 0.6 * within + 0.1 * grain)
    elif name == "grass":
        blades = _smooth_noise(rng, size, (size // 40, size // 2))
        values = 0.2 + 0.8 * blades
    elif name == "water":
        ripples = _smooth_noise(rng, size, (size // 3, size // 40))
        values = 0.3 + 0.5 * ripples + 0.2 * (ripples > 0.8)
    elif name == "gradient":
        values = y / (size - 1)
    else:
        raise ValueError(f"unknown pattern {name!r}; expected one of {PATTERNS}")
    return _to_gray(values)


@dataclass(frozen=True)
class Paint:
    """How to fill a region: ``pattern`` tinted from ``dark`` (pattern 0) to ``light`` (pattern 255).

    ``offset`` shifts the pattern, so shapes sharing one paint share one continuous surface.
    """

    dark: RGB
    light: RGB
    pattern: str = "flat"
    offset: tuple[int, int] = (0, 0)

    def gray(self, box: tuple[int, int, int, int], canvas: int) -> Image.core.ImagingCore:
        """The grey-level pattern over canvas pixels ``box`` = (x0, y0, x1, y1), as a Pillow core image (mode ``L``)."""
        x0, y0, x1, y1 = box
        if self.pattern == "gradient":
            ramp = (np.arange(y1 - y0) * (255 / max(y1 - y0 - 1, 1))).astype(np.uint8)
            return Image.fromarray(np.repeat(ramp[:, None], x1 - x0, axis=1)).im
        ox, oy = self.offset
        return _pattern_image(self.pattern, canvas).im.crop((x0 + ox, y0 + oy, x1 + ox, y1 + oy))


@cache
def _pattern_image(name: str, canvas: int) -> Image.Image:
    return Image.fromarray(pattern(name, canvas))


def random_paint(rng: np.random.Generator, dark: RGB, light: RGB, pattern_name: str, canvas: int) -> Paint:
    """A :class:`Paint` at a random pattern offset, with colours jittered by up to ±12 per channel."""
    *uniform, ox, oy = rng.random(5).tolist()  # one call for five numbers: Generator.integers costs ~15 µs
    jitter = [int(u * 25) - 12 for u in uniform]
    dark = tuple(min(max(c + j, 0), 255) for c, j in zip(dark, jitter, strict=True))
    light = tuple(min(max(c + j, 0), 255) for c, j in zip(light, jitter, strict=True))
    offset = (int(ox * (canvas // 2)), int(oy * (canvas // 2)))
    return Paint(dark, light, pattern_name, offset)


def _random_color(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def texture_image(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 (size, size, 3) image showing the DTD texture ``name`` at a random scale, angle and palette.

    The pattern is a binary mask evaluated at twice the resolution; its 2×2 coverage blends two colours.
    """
    y, x = _grid(2 * size)
    angle = rng.uniform(0, np.pi)
    u = x * np.float32(np.cos(angle)) + y * np.float32(np.sin(angle))
    v = y * np.float32(np.cos(angle)) - x * np.float32(np.sin(angle))
    period = np.float32(rng.uniform(0.12, 0.3))
    mask = _texture_mask(name, x, y, u, v, period, rng)
    coverage = mask[0::2, 0::2].astype(np.uint8) + mask[1::2, 0::2] + mask[0::2, 1::2] + mask[1::2, 1::2]
    alpha = coverage * np.float32(0.25)
    background, foreground = _random_color(rng), _random_color(rng)
    while np.abs(background - foreground).sum() < 150:
        foreground = _random_color(rng)
    shading = 1 + 0.25 * (_smooth_noise(rng, size, (4, 4)) - 0.5)
    # channels first, so that every array operation runs along whole rows of pixels
    channel = (slice(None), None, None)
    image = (background[channel] + alpha * (foreground - background)[channel]) * shading
    image += rng.standard_normal((size, size), dtype=np.float32) * 6
    return np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8).transpose(1, 2, 0))


@cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only (y, x) coordinates of a size² grid spanning [-1, 1]² (float32)."""
    c = np.linspace(-1, 1, size, dtype=np.float32)
    y, x = np.meshgrid(c, c, indexing="ij")
    y.flags.writeable = x.flags.writeable = False
    return y, x


def _texture_mask(
    name: str, x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray, period: np.float32, rng: np.random.Generator
) -> np.ndarray:
    """Where the foreground colour of texture ``name`` lies, on the [-1, 1]² grid (x, y) rotated to (u, v)."""
    if name == "striped":
        return _frac(u / period) < 0.5
    if name == "banded":
        width = rng.uniform(0.35, 0.7)
        return _frac((u + 1) / width) < rng.uniform(0.35, 0.6)
    if name == "lined":
        wobble = 0.02 * np.sin(v * np.float32(rng.uniform(3, 8)))
        return _frac((u + wobble) / (period / 2)) < 0.12
    if name == "dotted":
        # one small dot per occupied cell of a coarse grid, at a random place in the cell
        cells = int(rng.integers(10, 16))
        offsets = rng.uniform(0.25, 0.75, (2, cells + 1, cells + 1)).astype(np.float32)
        occupied = rng.random((cells + 1, cells + 1)) < 0.7
        gx, gy = (x + 1) / 2 * cells, (y + 1) / 2 * cells
        ix, iy = gx.astype(np.int32), gy.astype(np.int32)
        dx, dy = gx - ix - offsets[0, iy, ix], gy - iy - offsets[1, iy, ix]
        return occupied[iy, ix] & (dx * dx + dy * dy < np.float32(rng.uniform(0.01, 0.03)))
    if name == "polka-dotted":
        gu, gv = _frac(u / period) - 0.5, _frac(v / period + 0.5 * np.floor(u / period)) - 0.5
        return gu**2 + gv**2 < rng.uniform(0.05, 0.1)
    if name == "chequered":
        return _frac((np.floor(u / period) + np.floor(v / period)) / 2) < 0.25
    if name == "grid":
        width = rng.uniform(0.06, 0.15)
        return (_frac(u / period) < width) | (_frac(v / period) < width)
    if name == "crosshatched":
        d1, d2 = (u + v) / (1.5 * period), (u - v) / (1.5 * period)
        return (_frac(d1) < 0.1) | (_frac(d2) < 0.1)
    if name == "zigzagged":
        tri = np.abs(2 * _frac(v / (2 * period)) - 1) * period * 0.8
        return _frac((u + tri) / period) < 0.45
    if name == "honeycombed":
        # three plane waves 120° apart peak on a triangular lattice; their low set is a honeycomb of walls
        k = np.float32(4 * np.pi / (np.sqrt(3) * period))
        waves = sum(
            np.cos(k * (u * np.float32(np.cos(a)) + v * np.float32(np.sin(a))))
            for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)
        )
        return waves < rng.uniform(-0.5, 0.0)
    if name == "spiralled":
        cx, cy = rng.uniform(-0.4, 0.4, 2).astype(np.float32)
        r, theta = np.hypot(x - cx, y - cy), np.arctan2(y - cy, x - cx)
        return _frac(r / period - theta / np.float32(2 * np.pi)) < 0.5
    if name == "bubbly":
        count = int(rng.integers(15, 40))
        centres = rng.uniform(-1.1, 1.1, (count, 2))
        radii = rng.uniform(0.05, 0.2, count)
        return _disks(x, y, centres, radii) & ~_disks(x, y, centres, radii * 0.8)
    raise ValueError(f"unknown texture {name!r}; expected one of {TEXTURES}")


def _frac(t: np.ndarray) -> np.ndarray:
    """Fractional part (t mod 1), cheaper than ``%`` on float arrays."""
    return t - np.floor(t)


def _grid_index(t: float, n: int) -> int:
    """Index of coordinate ``t`` on an ``n``-point grid spanning [-1, 1], clipped to [0, n]."""
    return int(np.clip(round((t + 1) / 2 * (n - 1)), 0, n))


def _disks(x: np.ndarray, y: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Union of disks on the [-1, 1]² grid (x, y), each evaluated only inside its bounding box."""
    n = x.shape[0]
    mask = np.zeros(x.shape, dtype=bool)
    for (cx, cy), r in zip(centres, radii, strict=True):
        r0, r1 = _grid_index(cy - r, n), _grid_index(cy + r, n) + 1
        c0, c1 = _grid_index(cx - r, n), _grid_index(cx + r, n) + 1
        mask[r0:r1, c0:c1] |= (x[r0:r1, c0:c1] - cx) ** 2 + (y[r0:r1, c0:c1] - cy) ** 2 < r * r
    return mask
