"""Composing whole scenes: one function per scene class, each a recognisable layout with random content.

Objects are drawn far to near (by the y of their base), and their size grows with distance below the
horizon, so position, scale and occlusion order all vary from image to image.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from unitscope.probe import objects as draw
from unitscope.probe.canvas import Canvas, Labels, rect

Rng = np.random.Generator
#: An object to draw later: (base y, drawing call without arguments). Drawn by ascending base y = far to near.
Placed = tuple[float, Callable[[], None]]


def _depth(base: float, horizon: float) -> float:
    """Perspective scale factor in (0, 1]: 0 at the horizon, 1 at the bottom edge."""
    return max((base - horizon) / (1 - horizon), 0.05)


def _scatter(placed: list[Placed], paint: Callable[..., None], canvas: Canvas, rng: Rng, count: tuple[int, int],
             bases: tuple[float, float], xs: tuple[float, float], scale: tuple[float, float], horizon: float,
             **options: object) -> None:
    """Place ``rng.integers(*count)`` objects: base y uniform in ``bases``, x uniform in ``xs``, size
    ``scale[0] + scale[1] · depth`` below ``horizon`` (random numbers drawn in that order)."""
    for _ in range(int(rng.integers(*count))):
        base = rng.uniform(*bases)
        size = scale[0] + scale[1] * _depth(base, horizon)
        placed.append((base, partial(paint, canvas, rng, rng.uniform(*xs), base, size, **options)))


def _draw_in_order(placed: list[Placed]) -> None:
    for _, paint_object in sorted(placed, key=lambda item: item[0]):
        paint_object()


def street(canvas: Canvas, rng: Rng) -> None:
    """Buildings along a sidewalk and a road, with cars, pedestrians, street lamps and trees."""
    facade = rng.uniform(0.45, 0.6)
    curb = facade + rng.uniform(0.07, 0.12)
    draw.sky(canvas, rng, facade, int(rng.integers(0, 3)))
    x = rng.uniform(-0.15, 0.0)
    while x < 1:
        width = rng.uniform(0.18, 0.4)
        draw.building(canvas, rng, x, x + width - 0.01, rng.uniform(0.03, facade - 0.2), facade)
        x += width
    draw.ground(canvas, rng, "sidewalk", facade, curb)
    draw.ground(canvas, rng, "road", curb)
    lane = (curb + 1) / 2 + rng.uniform(-0.05, 0.05)
    dash = rng.uniform(0, 0.2)
    for x in np.arange(-0.2 + dash, 1, 0.22):
        canvas.polygon(rect(x, lane, x + 0.12, lane + 0.012), (235, 235, 225), Labels("road"))
    if rng.random() < 0.35:
        x0 = rng.uniform(0.05, 0.6)
        for k in range(7):
            canvas.polygon(
                [
                    (x0 + k * 0.05, curb + 0.01),
                    (x0 + k * 0.05 + 0.025, curb + 0.01),
                    (x0 + k * 0.065 + 0.03, 0.99),
                    (x0 + k * 0.065, 0.99),
                ],
                (240, 240, 235),
                Labels("road", "crosswalk"),
            )
    placed: list[Placed] = []
    for _ in range(int(rng.integers(1, 4))):
        base = rng.uniform(curb + 0.12, 1.02)
        placed.append(
            (base, partial(draw.car_side, canvas, rng, rng.uniform(0.1, 0.9), base, 0.32 + 0.2 * (base - curb)))
        )
    for _ in range(int(rng.integers(0, 5))):
        base = rng.uniform(facade + 0.01, curb)
        placed.append((base, partial(draw.person, canvas, rng, rng.uniform(0, 1), base, rng.uniform(0.17, 0.25))))
    for _ in range(int(rng.integers(0, 3))):
        base = rng.uniform(facade + 0.02, curb)
        placed.append((base, partial(draw.streetlight, canvas, rng, rng.uniform(0, 1), base, rng.uniform(0.35, 0.45))))
    if rng.random() < 0.4:
        base = rng.uniform(facade + 0.02, curb)
        placed.append((base, partial(draw.tree, canvas, rng, rng.uniform(0, 1), base, rng.uniform(0.3, 0.45))))
    _draw_in_order(placed)


def highway(canvas: Canvas, rng: Rng) -> None:
    """A road running to the horizon between grass verges, cars seen from behind, lamps along it."""
    horizon = rng.uniform(0.38, 0.5)
    vanish = rng.uniform(0.35, 0.65)
    draw.sky(canvas, rng, horizon, int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        draw.mountain_range(canvas, rng, horizon, rng.uniform(0.1, 0.2), (120, 125, 140), snow=False)
    draw.ground(canvas, rng, "grass", horizon)
    left, right = rng.uniform(-0.5, -0.1), rng.uniform(1.1, 1.5)
    canvas.polygon(
        [(vanish - 0.01, horizon), (vanish + 0.01, horizon), (right, 1.0), (left, 1.0)],
        draw.ground_paint(canvas, rng, "road"),
        Labels("road"),
    )
    lanes = int(rng.integers(2, 4))
    for k in range(1, lanes):
        bottom = left + (right - left) * k / lanes
        for t in np.arange(0.1, 1, 0.14):
            t0, t1 = t**2, (t + 0.07) ** 2
            x0, x1 = vanish + (bottom - vanish) * t0, vanish + (bottom - vanish) * t1
            y0, y1 = horizon + (1 - horizon) * t0, horizon + (1 - horizon) * t1
            w0, w1 = 0.004 + 0.012 * t0, 0.004 + 0.012 * t1
            canvas.polygon(
                [(x0 - w0, y0), (x0 + w0, y0), (x1 + w1, y1), (x1 - w1, y1)], (240, 240, 230), Labels("road")
            )
    placed: list[Placed] = []
    for _ in range(int(rng.integers(1, 5))):
        t = rng.uniform(0.15, 0.9)
        base = horizon + (1 - horizon) * t
        lane = (int(rng.integers(lanes)) + 0.5) / lanes
        x = vanish + (left + (right - left) * lane - vanish) * t
        placed.append((base, partial(draw.car_rear, canvas, rng, x, base, 0.5 * t * (right - left) / lanes)))
    for side in (left, right):
        for t in (0.3, 0.55, 0.85):
            if rng.random() < 0.5:
                base = horizon + (1 - horizon) * t
                x = vanish + (side - vanish) * t - np.sign(side - vanish) * 0.02
                placed.append((base, partial(draw.streetlight, canvas, rng, x, base, 0.7 * t)))
    _draw_in_order(placed)


def beach(canvas: Canvas, rng: Rng) -> None:
    """Sea meeting a sandy shore, with waves, people, umbrellas and the odd boat."""
    horizon = rng.uniform(0.3, 0.5)
    shore = horizon + rng.uniform(0.15, 0.3)
    draw.sky(canvas, rng, horizon, int(rng.integers(0, 4)))
    draw.ground(canvas, rng, "sea", horizon, shore + 0.03)
    for _ in range(int(rng.integers(2, 6))):
        y = rng.uniform(horizon + 0.03, shore)
        x = rng.uniform(-0.1, 0.8)
        w = rng.uniform(0.15, 0.4)
        canvas.polygon(
            [(x, y), (x + w * 0.5, y - 0.012), (x + w, y), (x + w * 0.5, y + 0.006)],
            (235, 245, 250),
            Labels("sea", "wave"),
        )
    edge = [(x, shore + 0.025 * np.sin(7 * x + rng.uniform(0, 6))) for x in np.linspace(0, 1, 12)]
    canvas.polygon([*edge, (1, 1), (0, 1)], draw.ground_paint(canvas, rng, "sand"), Labels("sand"))
    if rng.random() < 0.4:
        draw.boat(
            canvas, rng, rng.uniform(0.1, 0.9), rng.uniform(horizon + 0.02, horizon + 0.08), rng.uniform(0.06, 0.12)
        )
    placed: list[Placed] = []
    _scatter(placed, draw.person, canvas, rng, (1, 5), (shore + 0.05, 1.0), (0, 1), (0.15, 0.25), shore)
    _scatter(placed, draw.umbrella, canvas, rng, (0, 3), (shore + 0.08, 1.0), (0, 1), (0.2, 0.25), shore)
    _draw_in_order(placed)


def harbor(canvas: Canvas, rng: Rng) -> None:
    """Open water with moored boats, a pier, and buildings on the far shore."""
    horizon = rng.uniform(0.3, 0.45)
    draw.sky(canvas, rng, horizon, int(rng.integers(0, 3)))
    x = rng.uniform(-0.1, 0.0)
    while x < 1:
        width = rng.uniform(0.08, 0.18)
        draw.building(canvas, rng, x, x + width - 0.005, horizon - rng.uniform(0.05, 0.16), horizon + 0.01)
        x += width + rng.uniform(0, 0.08)
    draw.ground(canvas, rng, "water", horizon)
    placed: list[Placed] = []
    if rng.random() < 0.6:
        deck = rng.uniform(horizon + 0.25, 0.8)
        x0 = rng.uniform(-0.1, 0.4)
        x1 = x0 + rng.uniform(0.4, 0.9)
        placed.append((deck, partial(draw.pier, canvas, rng, x0, x1, deck, 0.02 + 0.02 * _depth(deck, horizon))))
    _scatter(placed, draw.boat, canvas, rng, (2, 6), (horizon + 0.06, 0.98), (0, 1), (0.08, 0.35), horizon)
    _draw_in_order(placed)


def forest(canvas: Canvas, rng: Rng) -> None:
    """Many overlapping broadleaf trees over grass, with bushes."""
    horizon = rng.uniform(0.45, 0.65)
    draw.sky(canvas, rng, horizon, int(rng.integers(0, 2)))
    draw.ground(canvas, rng, "grass", horizon)
    placed: list[Placed] = []
    _scatter(placed, draw.tree, canvas, rng, (6, 12), (horizon + 0.02, 1.1), (-0.1, 1.1), (0.4, 0.7), horizon)
    _scatter(placed, draw.bush, canvas, rng, (0, 4), (horizon + 0.05, 1.0), (0, 1), (0.1, 0.2), horizon)
    _draw_in_order(placed)


def mountain(canvas: Canvas, rng: Rng) -> None:
    """Mountain ranges, often snow-capped, above grassland with a few conifers."""
    horizon = rng.uniform(0.55, 0.72)
    draw.sky(canvas, rng, horizon, int(rng.integers(0, 3)))
    draw.mountain_range(canvas, rng, horizon, rng.uniform(0.3, 0.5), (120, 125, 145), snow=rng.random() < 0.7)
    if rng.random() < 0.6:
        draw.mountain_range(canvas, rng, horizon + 0.02, rng.uniform(0.15, 0.28), (110, 95, 80), snow=False)
    draw.ground(canvas, rng, "grass", horizon)
    placed: list[Placed] = []
    _scatter(placed, draw.tree, canvas, rng, (0, 5), (horizon + 0.03, 1.0), (0, 1), (0.1, 0.35), horizon, conifer=True)
    _draw_in_order(placed)


def village(canvas: Canvas, rng: Rng) -> None:
    """Houses with roofs, doors and windows among trees, fences and a few people."""
    horizon = rng.uniform(0.4, 0.55)
    draw.sky(canvas, rng, horizon, int(rng.integers(0, 3)))
    if rng.random() < 0.4:
        draw.mountain_range(canvas, rng, horizon, rng.uniform(0.08, 0.15), (100, 130, 100), snow=False)
    draw.ground(canvas, rng, "grass", horizon)
    placed: list[Placed] = []
    _scatter(placed, draw.house, canvas, rng, (2, 5), (horizon + 0.1, 0.95), (0.05, 0.95), (0.18, 0.35), horizon)
    _scatter(placed, draw.tree, canvas, rng, (1, 4), (horizon + 0.05, 1.0), (0, 1), (0.25, 0.4), horizon)
    if rng.random() < 0.5:
        base = rng.uniform(0.8, 1.0)
        x0 = rng.uniform(-0.1, 0.5)
        placed.append((base, partial(draw.fence, canvas, rng, x0, x0 + rng.uniform(0.3, 0.7), base, 0.08)))
    _scatter(placed, draw.person, canvas, rng, (0, 3), (horizon + 0.15, 1.0), (0, 1), (0.08, 0.25), horizon)
    _draw_in_order(placed)


def park(canvas: Canvas, rng: Rng) -> None:
    """A lawn crossed by a path, with trees, benches, people, bushes and a lamp."""
    horizon = rng.uniform(0.35, 0.5)
    draw.sky(canvas, rng, horizon, int(rng.integers(0, 3)))
    draw.ground(canvas, rng, "grass", horizon)
    path_top = rng.uniform(horizon + 0.15, 0.75)
    path_bottom = path_top + rng.uniform(0.07, 0.15)
    draw.ground(canvas, rng, "path", path_top, path_bottom)
    placed: list[Placed] = []
    _scatter(placed, draw.tree, canvas, rng, (2, 6), (horizon + 0.02, path_top), (-0.05, 1.05), (0.3, 0.5), horizon)
    _scatter(placed, draw.bench, canvas, rng, (1, 3), (path_top, path_bottom), (0.1, 0.9), (0.15, 0.2), horizon)
    _scatter(placed, draw.person, canvas, rng, (1, 4), (path_top, 1.0), (0, 1), (0.1, 0.3), horizon)
    _scatter(placed, draw.bush, canvas, rng, (0, 3), (horizon + 0.05, 1.0), (0, 1), (0.08, 0.2), horizon)
    if rng.random() < 0.4:
        base = rng.uniform(path_top, path_bottom)
        placed.append(
            (
                base,
                partial(draw.streetlight, canvas, rng, rng.uniform(0, 1), base, 0.3 + 0.3 * _depth(base, horizon)),
            )
        )
    _draw_in_order(placed)


#: The drawing function of every scene class, in :data:`~unitscope.probe.vocabulary.SCENE_CLASSES` order.
SCENES: dict[str, Callable[[Canvas, Rng], None]] = {
    "street-s": street,
    "highway-s": highway,
    "beach-s": beach,
    "harbor-s": harbor,
    "forest-broadleaf-s": forest,
    "mountain-s": mountain,
    "village-s": village,
    "park-s": park,
}
