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

import numpy as np
from PIL import Image, ImageDraw

from unitscope.probe.textures import RGB, Paint
from unitscope.probe.vocabulary import NUMBER

Point = tuple[float, float]
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
        self._draws = (ImageDraw.Draw(self._light), ImageDraw.Draw(self._dark), ImageDraw.Draw(self._gray))
        self._regions = Image.new("I", (label_size, label_size))
        self._draw_regions = ImageDraw.Draw(self._regions)
        self._region_ids: dict[tuple[int, ...], int] = {(0, 0, 0, 0): 0}

    def polygon(self, points: Sequence[Point], paint: Paint | RGB, labels: Labels | None) -> None:
        """Fill a polygon with ``paint``; write ``labels`` to every label layer unless ``labels`` is None."""
        self.polygons([points], paint, labels)

    def polygons(self, shapes: Sequence[Sequence[Point]], paint: Paint | RGB, labels: Labels | None) -> None:
        """Fill several polygons with one continuous ``paint`` and the same ``labels`` (one paste for all)."""
        if not shapes:
            return
        pixels = [[(x * self.canvas - 0.5, y * self.canvas - 0.5) for x, y in points] for points in shapes]
        light_draw, dark_draw, gray_draw = self._draws
        if isinstance(paint, Paint) and paint.pattern != "flat":
            for polygon in pixels:
                light_draw.polygon(polygon, fill=paint.light)
                dark_draw.polygon(polygon, fill=paint.dark)
            self._paste(pixels, paint)
        else:  # grey 255 shows the light colour alone, so the dark layer can keep what it had
            fill = paint.light if isinstance(paint, Paint) else paint
            for polygon in pixels:
                light_draw.polygon(polygon, fill=fill)
                gray_draw.polygon(polygon, fill=255)
        if labels is not None:
            region = self._region_ids.setdefault(labels.numbers(), len(self._region_ids))
            scale = self.label_size
            for points in shapes:
                self._draw_regions.polygon([(x * scale - 0.5, y * scale - 0.5) for x, y in points], fill=region)

    def _paste(self, polygons: list[list[Point]], paint: Paint) -> None:
        xs = [x for polygon in polygons for x, _ in polygon]
        ys = [y for polygon in polygons for _, y in polygon]
        x0, y0 = max(math.floor(min(xs)), 0), max(math.floor(min(ys)), 0)
        x1, y1 = min(math.ceil(max(xs)) + 1, self.canvas), min(math.ceil(max(ys)) + 1, self.canvas)
        if x1 <= x0 or y1 <= y0:
            return
        mask = Image.new("L", (x1 - x0, y1 - y0))
        draw = ImageDraw.Draw(mask)
        for polygon in polygons:
            draw.polygon([(x - x0, y - y0) for x, y in polygon], fill=255)
        self._gray.paste(paint.gray((x0, y0, x1, y1), self.canvas), (x0, y0), mask)

    def finish(self, brightness: float = 1.0, tint: Sequence[float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 (size, size, 3) image under the given lighting, and the int32 (4, s, s) label layers."""
        gains = brightness * np.asarray(tint, dtype=np.float64)[:, None]
        lighting = np.minimum(np.round(np.arange(256) * gains), 255).astype(int).ravel().tolist()
        light, dark, gray = (layer.reduce(2) for layer in (self._light, self._dark, self._gray))
        image = np.asarray(Image.composite(light, dark, gray).point(lighting))
        table = np.zeros((len(self._region_ids), len(LAYERS)), dtype=np.int32)
        for numbers, region in self._region_ids.items():
            table[region] = numbers
        layers = table[np.asarray(self._regions)].transpose(2, 0, 1)
        return image, np.ascontiguousarray(layers)


def rect(x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def ellipse(
    cx: float, cy: float, rx: float, ry: float, n: int = 24, start: float = 0.0, stop: float = 2 * np.pi
) -> list[Point]:
    """Points on an ellipse (or an arc from ``start`` to ``stop`` radians, closed by its chord)."""
    closed = stop - start >= 2 * np.pi - 1e-9
    step = (stop - start) / (n if closed else n - 1)
    return [(cx + rx * math.cos(start + k * step), cy + ry * math.sin(start + k * step)) for k in range(n)]
