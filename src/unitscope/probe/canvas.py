"""A canvas that paints an image and its Broden label layers with one geometry.

Shapes are polygons in unit coordinates ((0, 0) top left, (1, 1) bottom right). The image is painted at
twice its final size and box-downsampled (anti-aliasing) as three layers: the light and the dark colour of
each region's :class:`Paint` and the grey level of its pattern. The tint that blends them is applied once,
after downsampling, so a patterned shape costs one grey-level paste, not a colour render of its own. The
labels are rasterised with the same polygons directly at label-map resolution, i.e. the nearest-neighbour sampling real Broden uses. A later
shape overwrites every label layer of an earlier one (painter's algorithm), so occlusion stays consistent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from unitscope.probe.textures import RGB, Paint
from unitscope.probe.vocabulary import NUMBER

Point = tuple[float, float]
#: A shape as Pillow rasterises it: a box of pixels (x0, y0, x1, y1) for a rectangle, else the polygon.
Raster = tuple[int, int, int, int] | list[Point]
#: The pixel-label layers a shape writes, in order.
LAYERS: tuple[str, ...] = ("object", "part_1", "part_2", "material")


@dataclass(frozen=True)
class Labels:
    """Label names a shape carries in each pixel layer (``None`` = unlabelled there)."""

    object: str | None = None
    part: str | None = None
    subpart: str | None = None
    material: str | None = None

    def numbers(self) -> tuple[int, ...]:
        """Global label numbers per layer of :data:`LAYERS` (0 = unlabelled)."""
        return tuple(NUMBER[name] if name else 0 for name in (self.object, self.part, self.subpart, self.material))


class Canvas:
    """Paints polygons into an RGB image of ``size`` pixels and label layers of ``label_size`` pixels."""

    def __init__(self, size: int, label_size: int) -> None:
        self.size = size
        self.label_size = label_size
        self.canvas = 2 * size
        self._light = Image.new("RGB", (self.canvas, self.canvas))
        self._dark = Image.new("RGB", (self.canvas, self.canvas))
        self._gray = Image.new("L", (self.canvas, self.canvas), 255)
        self._regions = Image.new("I", (label_size, label_size))
        self._cores = tuple(layer.im for layer in (self._light, self._dark, self._gray, self._regions))
        self._region_ids: dict[Labels, int] = {Labels(): 0}

    def polygon(self, points: Sequence[Point], paint: Paint | RGB, labels: Labels | None) -> None:
        """Fill a polygon with ``paint``; write ``labels`` to every label layer unless ``labels`` is None."""
        self.polygons([points], paint, labels)

    def polygons(self, shapes: Sequence[Sequence[Point]], paint: Paint | RGB, labels: Labels | None) -> None:
        """Fill several polygons with one continuous ``paint`` and the same ``labels`` (one paste for all)."""
        if not shapes:
            return
        scale = self.canvas
        pixels = [[(x * scale - 0.5, y * scale - 0.5) for x, y in points] for points in shapes]
        rasters = _rasters(pixels, scale)
        light, dark, gray, regions = self._cores
        if isinstance(paint, Paint) and paint.pattern != "flat":
            _fill(light, rasters, paint.light)
            _fill(dark, rasters, paint.dark)
            self._paste(pixels, rasters, paint)
        else:  # grey 255 shows the light colour alone, so the dark layer can keep what it had
            _fill(light, rasters, paint.light if isinstance(paint, Paint) else paint)
            _fill(gray, rasters, 255)
        if labels is not None:
            region = self._region_ids.setdefault(labels, len(self._region_ids))
            scale = self.label_size
            _fill(
                regions,
                _rasters([[(x * scale - 0.5, y * scale - 0.5) for x, y in points] for points in shapes], scale),
                region,
            )

    def _paste(self, polygons: list[list[Point]], rasters: list[Raster], paint: Paint) -> None:
        """Paste ``paint``'s grey-level pattern into the polygons (``rasters``: their :func:`_rasters`)."""
        xs = [x for polygon in polygons for x, _ in polygon]
        ys = [y for polygon in polygons for _, y in polygon]
        x0, y0 = max(math.floor(min(xs)), 0), max(math.floor(min(ys)), 0)
        x1, y1 = min(math.ceil(max(xs)) + 1, self.canvas), min(math.ceil(max(ys)) + 1, self.canvas)
        if x1 <= x0 or y1 <= y0:
            return
        box, gray = (x0, y0, x1, y1), self._cores[2]
        pattern = paint.gray(box, self.canvas)
        if all(isinstance(raster, tuple) for raster in rasters):  # rectangles need no mask
            for rx0, ry0, rx1, ry1 in rasters:
                gray.paste(pattern.crop((rx0 - x0, ry0 - y0, rx1 - x0, ry1 - y0)), (rx0, ry0, rx1, ry1))
            return
        mask = Image.core.fill("1", (x1 - x0, y1 - y0), 0)
        shifted = [
            (r[0] - x0, r[1] - y0, r[2] - x0, r[3] - y0) if isinstance(r, tuple) else [(x - x0, y - y0) for x, y in r]
            for r in rasters
        ]
        _fill(mask, shifted, 255)
        gray.paste(pattern, box, mask)

    def finish(self, brightness: float = 1.0, tint: Sequence[float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 (size, size, 3) image under the given lighting, and the int32 (4, s, s) label layers."""
        gains = brightness * np.asarray(tint, dtype=np.float64)[:, None]
        lighting = np.minimum(np.round(np.arange(256) * gains), 255).astype(int).ravel().tolist()
        light, dark, gray = (layer.reduce(2) for layer in (self._light, self._dark, self._gray))
        dark.paste(light, None, gray)  # Image.composite(light, dark, gray), without copying dark first
        image = np.asarray(dark.point(lighting))
        table = np.zeros((len(LAYERS), len(self._region_ids)), dtype=np.int32)
        for labels, region in self._region_ids.items():
            table[:, region] = labels.numbers()
        return image, np.take(table, np.asarray(self._regions), axis=1)


def _rasters(polygons: list[list[Point]], size: int) -> list[Raster]:
    """How Pillow would rasterise pixel-coordinate ``polygons`` on a ``size``² image: an axis-parallel rectangle
    as the box of pixels it fills (clipped; dropped if empty), any other polygon as itself.

    Pillow truncates the vertices to integers and fills a rectangle including its right and bottom edge, so a
    box fill (three times faster) gives exactly the polygon's pixels.
    """
    rasters: list[Raster] = []
    for polygon in polygons:
        if len(polygon) != 4:
            rasters.append(polygon)
            continue
        (ax, ay), (bx, by), (cx, cy), (dx, dy) = polygon
        if not (ay == by and bx == cx and cy == dy and dx == ax) and not (
            ax == bx and by == cy and cx == dx and dy == ay
        ):
            rasters.append(polygon)
            continue
        x0, x1 = sorted((int(ax), int(cx)))
        y0, y1 = sorted((int(ay), int(cy)))
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, size), min(y1 + 1, size)
        if x0 < x1 and y0 < y1:
            rasters.append((x0, y0, x1, y1))
    return rasters


def _fill(layer: Image.core.ImagingCore, rasters: list[Raster], color: RGB | int) -> None:
    """Fill :func:`_rasters` on a Pillow core image (``ImageDraw``'s per-call Python would cost as much again)."""
    draw = ink = None
    for raster in rasters:
        if isinstance(raster, tuple):
            layer.paste(color, raster)
            continue
        if draw is None:
            draw = Image.core.draw(layer, 0)
            ink = draw.draw_ink(color)
        draw.draw_polygon(raster, ink, 1)


def rect(x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def ellipse(
    cx: float, cy: float, rx: float, ry: float, n: int = 24, start: float = 0.0, stop: float = 2 * np.pi
) -> list[Point]:
    """Points on an ellipse (or an arc from ``start`` to ``stop`` radians, closed by its chord)."""
    return [(cx + rx * cos, cy + ry * sin) for cos, sin in _unit_arc(n, start, stop)]


@cache
def _unit_arc(n: int, start: float, stop: float) -> tuple[tuple[float, float], ...]:
    """(cos, sin) of the ``n`` angles of :func:`ellipse`."""
    closed = stop - start >= 2 * np.pi - 1e-9
    step = (stop - start) / (n if closed else n - 1)
    return tuple((math.cos(start + k * step), math.sin(start + k * step)) for k in range(n))
