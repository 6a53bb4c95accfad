"""Drawing the probe set's objects, each with its Broden parts and materials.

Every function draws one object on a :class:`~unitscope.probe.canvas.Canvas` in unit coordinates, standing
on ``base`` (the y of its lowest point) with its size given as a height or width, and picks its own
colours and proportions from ``rng``.
"""

from __future__ import annotations

import numpy as np

from unitscope.probe.canvas import Canvas, Labels, ellipse, rect
from unitscope.probe.textures import RGB, Paint, random_paint

Rng = np.random.Generator

SKIN: tuple[RGB, ...] = ((240, 200, 170), (210, 160, 120), (160, 110, 75), (100, 65, 45))
HAIR: tuple[RGB, ...] = ((30, 20, 15), (90, 60, 30), (200, 170, 90), (60, 60, 60))
CLOTHES: tuple[RGB, ...] = (
    (200, 40, 40),
    (40, 70, 170),
    (40, 130, 60),
    (230, 200, 50),
    (240, 240, 240),
    (40, 40, 40),
    (150, 60, 160),
    (240, 130, 40),
    (120, 80, 50),
    (230, 140, 170),
)
CAR_COLORS: tuple[RGB, ...] = (
    (190, 20, 20),
    (20, 50, 150),
    (230, 230, 230),
    (30, 30, 30),
    (150, 150, 155),
    (230, 190, 30),
    (30, 110, 50),
    (240, 120, 20),
)


def _choice(rng: Rng, options: tuple[RGB, ...]) -> RGB:
    return options[int(rng.integers(len(options)))]


def _shade(color: RGB, factor: float) -> RGB:
    return tuple(min(max(int(c * factor), 0), 255) for c in color)


def _paint(rng: Rng, canvas: Canvas, color: RGB, pattern: str, contrast: float = 0.6) -> Paint:
    return random_paint(rng, _shade(color, contrast), _shade(color, 1.15), pattern, canvas.canvas)


def person(canvas: Canvas, rng: Rng, x: float, base: float, height: float) -> None:
    """A standing person: legs, torso, arms, head with hair."""
    h, skin = height, _choice(rng, SKIN)
    shirt = _paint(rng, canvas, _choice(rng, CLOTHES), "fabric", 0.75)
    trousers = _paint(rng, canvas, _choice(rng, CLOTHES), "fabric", 0.75)
    skin_paint = Paint(_shade(skin, 0.8), skin)
    w = h * rng.uniform(0.24, 0.3)
    hip, shoulder = base - 0.47 * h, base - 0.8 * h
    for side in (-1, 1):
        stride = side * rng.uniform(0.0, 0.06) * h
        leg = [
            (x + side * 0.02 * h, hip),
            (x + side * w * 0.45, hip),
            (x + side * w * 0.4 + stride, base),
            (x + side * 0.05 * h + stride, base),
        ]
        canvas.polygon(leg, trousers, Labels("person", "leg", material="fabric"))
    torso = [
        (x - w / 2, shoulder),
        (x + w / 2, shoulder),
        (x + w * 0.48, hip + 0.02 * h),
        (x - w * 0.48, hip + 0.02 * h),
    ]
    canvas.polygon(torso, shirt, Labels("person", "torso", material="fabric"))
    for side in (-1, 1):
        swing = side * rng.uniform(0.0, 0.08) * h
        arm = [
            (x + side * w / 2, shoulder),
            (x + side * (w / 2 + 0.08 * h), shoulder + 0.02 * h),
            (x + side * (w / 2 + 0.07 * h) + swing, hip + 0.02 * h),
            (x + side * (w / 2 - 0.01 * h) + swing, hip),
        ]
        canvas.polygon(arm, shirt, Labels("person", "arm", material="fabric"))
        hand = ellipse(x + side * (w / 2 + 0.03 * h) + swing, hip + 0.04 * h, 0.035 * h, 0.04 * h, 10)
        canvas.polygon(hand, skin_paint, Labels("person", "arm", material="skin"))
    neck = base - 0.83 * h
    head = ellipse(x, neck - 0.08 * h, 0.075 * h, 0.095 * h, 20)
    canvas.polygon(head, skin_paint, Labels("person", "head", material="skin"))
    hair = ellipse(x, neck - 0.1 * h, 0.08 * h, 0.085 * h, 16, np.pi, 2 * np.pi)
    canvas.polygon(hair, _choice(rng, HAIR), Labels("person", "head", "hair"))


def tree(canvas: Canvas, rng: Rng, x: float, base: float, height: float, conifer: bool = False) -> None:
    """A tree: a wooden trunk and a round (or conical) crown of foliage."""
    h = height
    bark = _paint(rng, canvas, (110, 75, 45), "wood", 0.55)
    leaves = _paint(rng, canvas, (int(rng.integers(40, 90)), int(rng.integers(110, 170)), 40), "foliage", 0.35)
    trunk_w = h * rng.uniform(0.05, 0.09)
    canvas.polygon(
        rect(x - trunk_w / 2, base - 0.55 * h, x + trunk_w / 2, base), bark, Labels("tree", "trunk", material="wood")
    )
    crown = Labels("tree", material="foliage")
    if conifer:
        tiers = []
        for k in range(3):
            top, bottom = base - h + k * 0.22 * h, base - 0.45 * h + k * 0.08 * h - 0.2 * h * (2 - k) / 2
            half = (0.18 + 0.07 * k) * h
            tiers.append([(x, top), (x + half, bottom), (x - half, bottom)])
        canvas.polygons(tiers, leaves, crown)
        return
    radius = h * rng.uniform(0.25, 0.33)
    blobs = []
    for _ in range(int(rng.integers(3, 6))):
        dx, dy = rng.uniform(-0.35, 0.35) * radius, rng.uniform(-0.3, 0.3) * radius
        blobs.append(
            ellipse(x + dx, base - h + radius + dy, radius * rng.uniform(0.7, 1.0), radius * rng.uniform(0.65, 0.9))
        )
    canvas.polygons(blobs, leaves, crown)


def bush(canvas: Canvas, rng: Rng, x: float, base: float, width: float) -> None:
    """A low bush of foliage."""
    leaves = _paint(rng, canvas, (50, int(rng.integers(100, 150)), 45), "foliage", 0.35)
    blobs = []
    for k in range(4):
        r = width * rng.uniform(0.2, 0.3)
        blobs.append(ellipse(x + (k - 1.5) * width * 0.22, base - r * 0.9, r, r * 0.9, 16))
    canvas.polygons(blobs, leaves, Labels("bush", material="foliage"))


def _wheel(canvas: Canvas, cx: float, cy: float, r: float) -> None:
    canvas.polygon(ellipse(cx, cy, r, r, 20), (25, 25, 25), Labels("car", "wheel", material="rubber"))
    canvas.polygon(ellipse(cx, cy, r * 0.55, r * 0.55, 16), (175, 175, 180), Labels("car", "wheel", "rim", "metal"))


def car_side(canvas: Canvas, rng: Rng, x: float, base: float, length: float) -> None:
    """A car seen from the side: body, windows, door with handle, lights, bumpers, wheels with rims."""
    L, facing = length, 1 if rng.random() < 0.5 else -1
    color = _choice(rng, CAR_COLORS)
    metal = _paint(rng, canvas, color, "metal", 0.7)
    r = 0.11 * L
    sill, belt, roof = base - 0.08 * L, base - 0.27 * L, base - 0.42 * L
    body = [
        (x - 0.5 * L, sill),
        (x - 0.5 * L, belt + 0.03 * L),
        (x - 0.45 * L, belt),
        (x + 0.48 * L, belt + 0.01 * L),
        (x + 0.5 * L, belt + 0.05 * L),
        (x + 0.5 * L, sill),
    ]
    body = [(x + facing * (px - x), py) for px, py in body]
    canvas.polygon(body, metal, Labels("car", "body", material="metal"))
    cabin = [(x - 0.3 * L, belt), (x - 0.2 * L, roof), (x + 0.12 * L, roof), (x + 0.28 * L, belt)]
    canvas.polygon([(x + facing * (px - x), py) for px, py in cabin], metal, Labels("car", "body", material="metal"))
    glass = Paint(
        (60, 80, 100), (190, 215, 230), "glass", tuple(int(v) for v in rng.integers(0, canvas.canvas // 2, 2))
    )
    for x0, x1, slope0, slope1 in ((-0.26, -0.06, 0.08, 0.0), (-0.03, 0.22, 0.0, 0.12)):
        pane = [
            (x + x0 * L, belt - 0.01 * L),
            (x + (x0 + slope0) * L, roof + 0.025 * L),
            (x + (x1 - slope1) * L, roof + 0.025 * L),
            (x + x1 * L, belt - 0.01 * L),
        ]
        canvas.polygon(
            [(x + facing * (px - x), py) for px, py in pane], glass, Labels("car", "windowpane", material="glass")
        )
    door = (
        rect(x - 0.05 * L, belt + 0.005 * L, x + 0.2 * L, sill - 0.01 * L)
        if facing > 0
        else rect(x - 0.2 * L, belt + 0.005 * L, x + 0.05 * L, sill - 0.01 * L)
    )
    canvas.polygon(
        door,
        Paint(metal.dark, _shade(color, 0.95), metal.pattern, metal.offset),
        Labels("car", "door", material="metal"),
    )
    hx = x + facing * 0.14 * L
    canvas.polygon(
        rect(hx - 0.03 * L, belt + 0.03 * L, hx + 0.03 * L, belt + 0.045 * L),
        (40, 40, 40),
        Labels("car", "door", "handle", "metal"),
    )
    front, back = x + facing * 0.5 * L, x - facing * 0.5 * L
    canvas.polygon(
        rect(
            min(front, front - facing * 0.05 * L),
            belt + 0.04 * L,
            max(front, front - facing * 0.05 * L),
            belt + 0.08 * L,
        ),
        (250, 245, 200),
        Labels("car", "headlight", material="glass"),
    )
    canvas.polygon(
        rect(
            min(back, back + facing * 0.04 * L), belt + 0.04 * L, max(back, back + facing * 0.04 * L), belt + 0.08 * L
        ),
        (210, 20, 20),
        Labels("car", "taillight", material="glass"),
    )
    for end in (front, back):
        canvas.polygon(
            rect(end - 0.04 * L, sill - 0.05 * L, end + 0.04 * L, sill + 0.01 * L),
            (45, 45, 45),
            Labels("car", "bumper"),
        )
    for wx in (-0.3, 0.3):
        _wheel(canvas, x + wx * L, base - r, r)


def car_rear(canvas: Canvas, rng: Rng, x: float, base: float, width: float) -> None:
    """A car seen from behind: body, rear window, taillights, license plate, bumper, wheels."""
    W = width
    color = _choice(rng, CAR_COLORS)
    metal = _paint(rng, canvas, color, "metal", 0.7)
    for side in (-1, 1):
        canvas.polygon(
            rect(x + side * 0.42 * W - 0.07 * W, base - 0.16 * W, x + side * 0.42 * W + 0.07 * W, base),
            (20, 20, 20),
            Labels("car", "wheel", material="rubber"),
        )
    top, belt, sill = base - 0.72 * W, base - 0.42 * W, base - 0.1 * W
    body = [
        (x - 0.5 * W, sill),
        (x - 0.5 * W, belt),
        (x - 0.38 * W, top),
        (x + 0.38 * W, top),
        (x + 0.5 * W, belt),
        (x + 0.5 * W, sill),
    ]
    canvas.polygon(body, metal, Labels("car", "body", material="metal"))
    glass = Paint((50, 70, 90), (170, 195, 215), "glass", tuple(int(v) for v in rng.integers(0, canvas.canvas // 2, 2)))
    canvas.polygon(
        [
            (x - 0.42 * W, belt - 0.02 * W),
            (x - 0.33 * W, top + 0.04 * W),
            (x + 0.33 * W, top + 0.04 * W),
            (x + 0.42 * W, belt - 0.02 * W),
        ],
        glass,
        Labels("car", "windowpane", material="glass"),
    )
    for side in (-1, 1):
        canvas.polygon(
            rect(x + side * 0.46 * W - 0.06 * W, belt + 0.04 * W, x + side * 0.46 * W + 0.06 * W, belt + 0.11 * W),
            (220, 25, 25),
            Labels("car", "taillight", material="glass"),
        )
    canvas.polygon(
        rect(x - 0.13 * W, belt + 0.13 * W, x + 0.13 * W, belt + 0.21 * W),
        (240, 240, 230),
        Labels("car", "license plate"),
    )
    canvas.polygon(
        rect(x - 0.52 * W, sill - 0.03 * W, x + 0.52 * W, sill + 0.05 * W), (45, 45, 45), Labels("car", "bumper")
    )


def house(canvas: Canvas, rng: Rng, x: float, base: float, width: float) -> None:
    """A house: walls, tiled roof, chimney, wooden door with handle, windows."""
    W = width
    wall_height = W * rng.uniform(0.55, 0.8)
    top = base - wall_height
    wall_material = ("brick", "painted", "wood")[int(rng.integers(3))]
    wall = {
        "brick": _paint(rng, canvas, (170, 70, 50), "brick", 0.5),
        "painted": _paint(
            rng,
            canvas,
            _choice(rng, ((235, 225, 200), (200, 220, 235), (240, 210, 150), (230, 230, 230))),
            "noise",
            0.9,
        ),
        "wood": _paint(rng, canvas, (160, 110, 65), "wood", 0.6),
    }[wall_material]
    canvas.polygon(rect(x - W / 2, top, x + W / 2, base), wall, Labels("house", material=wall_material))
    roof_top = top - W * rng.uniform(0.3, 0.5)
    chimney_x = x + W * rng.uniform(0.15, 0.3)
    canvas.polygon(
        rect(chimney_x - 0.05 * W, roof_top + 0.05 * W, chimney_x + 0.05 * W, top - 0.05 * W),
        _paint(rng, canvas, (150, 60, 45), "brick", 0.5),
        Labels("house", "chimney", material="brick"),
    )
    roof_color = _choice(rng, ((170, 60, 40), (90, 60, 50), (80, 80, 90)))
    canvas.polygon(
        [(x - W * 0.58, top + 0.01 * W), (x, roof_top), (x + W * 0.58, top + 0.01 * W)],
        _paint(rng, canvas, roof_color, "tile", 0.5),
        Labels("house", "roof", material="tile"),
    )
    door_x = x + W * rng.uniform(-0.25, 0.25)
    door_w, door_h = 0.16 * W, min(0.6 * wall_height, 0.3 * W)
    canvas.polygon(
        rect(door_x - door_w / 2, base - door_h, door_x + door_w / 2, base),
        _paint(rng, canvas, (120, 70, 35), "wood", 0.6),
        Labels("house", "door", material="wood"),
    )
    canvas.polygon(
        ellipse(door_x + door_w * 0.3, base - door_h / 2, 0.015 * W, 0.015 * W, 8),
        (215, 190, 60),
        Labels("house", "door", "handle", "metal"),
    )
    glass = Paint(
        (50, 80, 110), (190, 220, 240), "glass", tuple(int(v) for v in rng.integers(0, canvas.canvas // 2, 2))
    )
    for wx in (-0.32, 0.32):
        cx = x + wx * W
        if abs(cx - door_x) < door_w:
            continue
        wy = top + wall_height * 0.3
        canvas.polygon(
            rect(cx - 0.1 * W, wy - 0.09 * W, cx + 0.1 * W, wy + 0.09 * W),
            (240, 240, 235),
            Labels("house", "windowpane", material="painted"),
        )
        canvas.polygon(
            rect(cx - 0.08 * W, wy - 0.07 * W, cx + 0.08 * W, wy + 0.07 * W),
            glass,
            Labels("house", "windowpane", material="glass"),
        )


def building(canvas: Canvas, rng: Rng, x0: float, x1: float, top: float, base: float) -> None:
    """A city building facade: brick, concrete or painted walls, a grid of windows, a door."""
    material = ("brick", "concrete", "painted")[int(rng.integers(3))]
    color = {
        "brick": (160, 75, 55),
        "concrete": (165, 160, 150),
        "painted": _choice(rng, ((225, 210, 170), (200, 120, 90), (150, 170, 190), (230, 230, 220))),
    }[material]
    pattern = {"brick": "brick", "concrete": "noise", "painted": "noise"}[material]
    canvas.polygon(
        rect(x0, top, x1, base),
        _paint(rng, canvas, color, pattern, 0.55 if material == "brick" else 0.85),
        Labels("building", material=material),
    )
    canvas.polygon(
        rect(x0 - 0.005, top - 0.012, x1 + 0.005, top + 0.006),
        _shade(color, 0.6),
        Labels("building", "roof", material="concrete"),
    )
    glass = Paint((40, 60, 85), (160, 190, 215), "glass", tuple(int(v) for v in rng.integers(0, canvas.canvas // 2, 2)))
    width = x1 - x0
    columns = max(1, int(width / rng.uniform(0.05, 0.08)))
    floor_h = rng.uniform(0.06, 0.09)
    door_w = min(0.05, width * 0.3)
    door_x = rng.uniform(x0 + door_w, x1 - door_w)
    windows, half = [], 0.3 * width / columns
    for y in np.arange(top + 0.03, base - 0.09 - floor_h, floor_h):
        for c in range(columns):
            cx = x0 + (c + 0.5) * width / columns
            windows.append(rect(cx - half, y, cx + half, y + floor_h * 0.6))
    canvas.polygons(windows, glass, Labels("building", "windowpane", material="glass"))
    door_material = "glass" if rng.random() < 0.5 else "wood"
    door_paint = glass if door_material == "glass" else _paint(rng, canvas, (100, 60, 35), "wood", 0.6)
    canvas.polygon(
        rect(door_x - door_w / 2, base - 0.08, door_x + door_w / 2, base),
        door_paint,
        Labels("building", "door", material=door_material),
    )


def streetlight(canvas: Canvas, rng: Rng, x: float, base: float, height: float) -> None:
    """A street lamp: metal pole with an arm and a lamp."""
    h, side = height, 1 if rng.random() < 0.5 else -1
    metal = (60, 65, 70)
    canvas.polygon(
        rect(x - 0.012 * h, base - h, x + 0.012 * h, base), metal, Labels("streetlight", "pole", material="metal")
    )
    canvas.polygon(
        rect(min(x, x + side * 0.2 * h), base - h, max(x, x + side * 0.2 * h), base - h + 0.02 * h),
        metal,
        Labels("streetlight", "pole", material="metal"),
    )
    lamp_x = x + side * 0.2 * h
    canvas.polygon(
        [
            (lamp_x - 0.06 * h, base - h + 0.06 * h),
            (lamp_x, base - h - 0.005 * h),
            (lamp_x + 0.06 * h, base - h + 0.06 * h),
        ],
        (250, 240, 190),
        Labels("streetlight", material="glass"),
    )


def boat(canvas: Canvas, rng: Rng, x: float, waterline: float, length: float) -> None:
    """A boat on water: hull, and either a mast with a sail or a cabin with windows."""
    L, facing = length, 1 if rng.random() < 0.5 else -1
    hull_material = "wood" if rng.random() < 0.4 else "painted"
    hull_paint = (
        _paint(rng, canvas, (130, 85, 50), "wood", 0.6)
        if hull_material == "wood"
        else _paint(
            rng, canvas, _choice(rng, ((240, 240, 240), (30, 60, 140), (190, 30, 30), (30, 30, 30))), "noise", 0.9
        )
    )
    deck = waterline - 0.18 * L
    hull = [
        (x - 0.5 * L, deck),
        (x + 0.5 * L, deck),
        (x + 0.36 * L, waterline + 0.02 * L),
        (x - 0.42 * L, waterline + 0.02 * L),
    ]
    canvas.polygon(
        [(x + facing * (px - x), py) for px, py in hull], hull_paint, Labels("boat", "body", material=hull_material)
    )
    if rng.random() < 0.55:
        mast_h = L * rng.uniform(0.9, 1.3)
        canvas.polygon(
            rect(x - 0.012 * L, deck - mast_h, x + 0.012 * L, deck),
            (120, 90, 60),
            Labels("boat", "pole", material="wood"),
        )
        sail = _paint(
            rng,
            canvas,
            _choice(rng, ((245, 245, 240), (245, 245, 240), (230, 90, 60), (240, 220, 120))),
            "fabric",
            0.85,
        )
        gap = 0.02 * L
        canvas.polygon(
            [
                (x + facing * gap, deck - mast_h * 0.95),
                (x + facing * gap, deck - 0.05 * L),
                (x + facing * 0.42 * L, deck - 0.05 * L),
            ],
            sail,
            Labels("boat", material="fabric"),
        )
        canvas.polygon(
            [
                (x - facing * gap, deck - mast_h * 0.8),
                (x - facing * gap, deck - 0.05 * L),
                (x - facing * 0.3 * L, deck - 0.05 * L),
            ],
            sail,
            Labels("boat", material="fabric"),
        )
        return
    cabin = rect(x - 0.25 * L, deck - 0.16 * L, x + 0.12 * L, deck)
    canvas.polygon(
        [(x + facing * (px - x), py) for px, py in cabin], (235, 235, 235), Labels("boat", material="painted")
    )
    glass = Paint((40, 60, 80), (150, 180, 200), "glass", tuple(int(v) for v in rng.integers(0, canvas.canvas // 2, 2)))
    for wx in (-0.2, -0.05):
        pane = rect(x + wx * L, deck - 0.12 * L, x + (wx + 0.1) * L, deck - 0.06 * L)
        canvas.polygon(
            [(x + facing * (px - x), py) for px, py in pane], glass, Labels("boat", "windowpane", material="glass")
        )


def umbrella(canvas: Canvas, rng: Rng, x: float, base: float, height: float) -> None:
    """A beach umbrella: pole and a fabric canopy."""
    h = height
    canvas.polygon(
        rect(x - 0.015 * h, base - h, x + 0.015 * h, base),
        (200, 200, 200),
        Labels("umbrella", "pole", material="metal"),
    )
    color = _choice(rng, CLOTHES)
    canvas.polygon(
        ellipse(x, base - 0.9 * h, 0.55 * h, 0.3 * h, 16, np.pi, 2 * np.pi),
        _paint(rng, canvas, color, "fabric", 0.8),
        Labels("umbrella", "canopy", material="fabric"),
    )


def bench(canvas: Canvas, rng: Rng, x: float, base: float, length: float) -> None:
    """A park bench: wooden seat and back on metal legs."""
    L = length
    wood = _paint(rng, canvas, (140, 90, 50), "wood", 0.6)
    for lx in (-0.4, 0.4):
        canvas.polygon(
            rect(x + lx * L - 0.02 * L, base - 0.22 * L, x + lx * L + 0.02 * L, base),
            (50, 50, 50),
            Labels("bench", "leg", material="metal"),
        )
    canvas.polygon(
        rect(x - 0.5 * L, base - 0.26 * L, x + 0.5 * L, base - 0.2 * L), wood, Labels("bench", "seat", material="wood")
    )
    canvas.polygon(
        rect(x - 0.5 * L, base - 0.5 * L, x + 0.5 * L, base - 0.33 * L), wood, Labels("bench", "back", material="wood")
    )
    for lx in (-0.4, 0.4):
        canvas.polygon(
            rect(x + lx * L - 0.015 * L, base - 0.33 * L, x + lx * L + 0.015 * L, base - 0.26 * L),
            (50, 50, 50),
            Labels("bench", "back", material="metal"),
        )


def fence(canvas: Canvas, rng: Rng, x0: float, x1: float, base: float, height: float) -> None:
    """A wooden fence: posts and two rails."""
    wood = _paint(rng, canvas, _choice(rng, ((150, 100, 60), (230, 230, 225))), "wood", 0.7)
    rails = [rect(x0, y, x1, y + 0.12 * height) for y in (base - 0.8 * height, base - 0.35 * height)]
    canvas.polygons(rails, wood, Labels("fence", material="wood"))
    w = 0.08 * height
    posts = [
        [(px - w, base), (px - w, base - height), (px, base - 1.1 * height), (px + w, base - height), (px + w, base)]
        for px in np.arange(x0 + 0.45 * height, x1, 0.9 * height)
    ]
    canvas.polygons(posts, wood, Labels("fence", "post", material="wood"))


def pier(canvas: Canvas, rng: Rng, x0: float, x1: float, deck: float, thickness: float) -> None:
    """A wooden pier: deck on posts standing in the water."""
    wood = _paint(rng, canvas, (125, 90, 60), "wood", 0.6)
    posts = [
        rect(px - 0.4 * thickness, deck, px + 0.4 * thickness, deck + 2.2 * thickness)
        for px in np.arange(x0 + thickness, x1, 4 * thickness)
    ]
    canvas.polygons(posts, _shade(wood.light, 0.6), Labels("pier", "post", material="wood"))
    canvas.polygon(rect(x0, deck - thickness, x1, deck), wood, Labels("pier", "deck", material="wood"))


def mountain_range(canvas: Canvas, rng: Rng, base: float, height: float, color: RGB, snow: bool) -> None:
    """A range of rocky peaks across the image, snow-capped if ``snow``."""
    rock = _paint(rng, canvas, color, "rock", 0.55)
    count = int(rng.integers(2, 5))
    for k in range(count):
        peak_x = (k + rng.uniform(0.1, 0.9)) / count
        peak_h = height * rng.uniform(0.6, 1.0)
        half = rng.uniform(0.25, 0.5)
        ridge = [(peak_x - half, base + 0.01), (peak_x, base - peak_h), (peak_x + half, base + 0.01)]
        canvas.polygon(ridge, rock, Labels("mountain", material="rock"))
        if snow:
            f = rng.uniform(0.2, 0.35)
            cap = [
                (peak_x, base - peak_h),
                (peak_x + half * f, base - peak_h * (1 - f)),
                (peak_x + half * f * 0.4, base - peak_h * (1 - f * 0.7)),
                (peak_x, base - peak_h * (1 - f)),
                (peak_x - half * f * 0.5, base - peak_h * (1 - f * 0.8)),
                (peak_x - half * f, base - peak_h * (1 - f)),
            ]
            canvas.polygon(cap, Paint((200, 205, 215), (250, 250, 252), "noise"), Labels("snow"))


def sky(canvas: Canvas, rng: Rng, horizon: float, clouds: int) -> None:
    """Sky with a vertical gradient down to ``horizon``, with ``clouds`` clouds."""
    top = (int(rng.integers(30, 80)), int(rng.integers(90, 140)), int(rng.integers(190, 240)))
    low = (int(rng.integers(170, 215)), int(rng.integers(200, 230)), int(rng.integers(230, 250)))
    canvas.polygon(rect(0, 0, 1, horizon + 0.01), Paint(top, low, "gradient"), Labels("sky"))
    for _ in range(clouds):
        cx, cy = rng.uniform(0, 1), rng.uniform(0.05, max(0.06, horizon * 0.6))
        w = rng.uniform(0.08, 0.2)
        puffs = [
            ellipse(cx + dx * w, cy + dy * w, r * w, r * w * 0.7, 16)
            for dx, dy, r in ((-0.5, 0.1, 0.35), (0, -0.1, 0.5), (0.5, 0.1, 0.35), (0.1, 0.15, 0.4))
        ]
        canvas.polygons(puffs, (245, 245, 248), Labels("sky", "cloud"))


def ground(canvas: Canvas, rng: Rng, name: str, top: float, bottom: float = 1.0) -> None:
    """A horizontal band of ground from ``top`` to ``bottom``: grass, sand, sea, water, road, sidewalk or path."""
    canvas.polygon(rect(0, top, 1, bottom), ground_paint(canvas, rng, name), ground_labels(name))


def ground_paint(canvas: Canvas, rng: Rng, name: str) -> Paint:
    """The surface paint of a kind of ground (see :func:`ground`)."""
    look = {
        "grass": ((int(rng.integers(60, 120)), int(rng.integers(140, 190)), 50), "grass", 0.45),
        "sand": ((225, 200, 150), "noise", 0.85),
        "sea": ((30, int(rng.integers(90, 130)), int(rng.integers(150, 190))), "water", 0.6),
        "water": ((40, int(rng.integers(80, 110)), int(rng.integers(110, 150))), "water", 0.6),
        "road": ((95, 95, 100), "noise", 0.75),
        "sidewalk": ((180, 175, 165), "noise", 0.8),
        "path": ((190, 160, 120), "noise", 0.8),
    }
    color, pattern, contrast = look[name]
    return _paint(rng, canvas, color, pattern, contrast)


def ground_labels(name: str) -> Labels:
    """Labels of a kind of ground: the object, and concrete for sidewalks."""
    return Labels(name, material="concrete" if name == "sidewalk" else None)
