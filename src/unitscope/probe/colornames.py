"""Broden's colour layer for the probe set: nearest colour-name prototype in CIELAB.

Broden labels every pixel with the arg-max of van de Weijer's 11 colour-name probabilities, looked up in a
32³ table indexed by RGB // 8. The probe set uses the nearest of a few sRGB prototypes per colour name
instead (light, focal and dark shades, so that e.g. a pale sky is ``blue-c`` and not ``grey-c``),
measured in CIELAB (D65), on the image box-downsampled to the label-map size (each label pixel the rounded
mean of its block of image pixels). For speed the decision is tabulated the same way, on a finer 64³ grid
(RGB // 4, evaluated at each cell's centre).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from unitscope.probe.vocabulary import COLORS, NUMBER

#: (colour name, sRGB prototype) pairs; several shades may share a name.
PROTOTYPES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("black-c", (0, 0, 0)),
    ("black-c", (35, 35, 40)),
    ("blue-c", (30, 60, 190)),
    ("blue-c", (110, 160, 230)),
    ("blue-c", (20, 40, 100)),
    ("brown-c", (120, 75, 40)),
    ("brown-c", (80, 50, 30)),
    ("brown-c", (175, 135, 90)),
    ("grey-c", (128, 128, 128)),
    ("grey-c", (85, 85, 85)),
    ("grey-c", (180, 180, 180)),
    ("green-c", (50, 150, 50)),
    ("green-c", (30, 80, 30)),
    ("green-c", (140, 200, 100)),
    ("orange-c", (240, 140, 30)),
    ("pink-c", (240, 150, 180)),
    ("purple-c", (120, 50, 150)),
    ("red-c", (200, 30, 30)),
    ("red-c", (130, 20, 20)),
    ("white-c", (255, 255, 255)),
    ("white-c", (225, 225, 220)),
    ("yellow-c", (240, 220, 40)),
)

_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_channel = np.arange(256) / 255.0
#: sRGB byte -> linear light.
_LINEAR = np.where(_channel <= 0.04045, _channel / 12.92, ((_channel + 0.055) / 1.055) ** 2.4)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of uint8 sRGB values of shape (..., 3)."""
    xyz = _LINEAR[np.asarray(rgb, dtype=np.uint8)] @ (_SRGB_TO_XYZ.T / _WHITE_D65)
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


_PROTOTYPE_LAB = srgb_to_lab(np.array([rgb for _, rgb in PROTOTYPES]))
_PROTOTYPE_SQUARED = (_PROTOTYPE_LAB**2).sum(axis=1)
_PROTOTYPE_NUMBER = np.array([NUMBER[name] for name, _ in PROTOTYPES], dtype=np.int32)
assert {name for name, _ in PROTOTYPES} == set(COLORS)


def nearest_color(rgb: np.ndarray) -> np.ndarray:
    """Global label number of the nearest colour-name prototype for each uint8 sRGB pixel (..., 3)."""
    lab = srgb_to_lab(rgb)
    # |lab - p|² = |lab|² - 2 lab·p + |p|², and |lab|² does not change the arg-min
    distance = _PROTOTYPE_SQUARED - 2 * lab @ _PROTOTYPE_LAB.T
    return _PROTOTYPE_NUMBER[distance.argmin(axis=-1)]


#: Bits per channel of the colour table.
TABLE_BITS = 6


@lru_cache(maxsize=1)
def _color_table() -> np.ndarray:
    shift = 8 - TABLE_BITS
    centres = (np.arange(2**TABLE_BITS) << shift) + (1 << shift) // 2
    r, g, b = np.meshgrid(centres, centres, centres, indexing="ij")
    return nearest_color(np.stack([r, g, b], axis=-1).astype(np.uint8)).astype(np.uint8).ravel()


def color_layer(image: np.ndarray, label_size: int) -> np.ndarray:
    """The colour label map (int32, label_size²) of a uint8 RGB image: box-downsample, then the colour table.

    Each label pixel averages a factor² block of the image (factor = image size // label_size; with an odd
    image size the last row and column are left out).
    """
    factor = image.shape[0] // label_size
    box = (0, 0, factor * label_size, factor * label_size)
    small = Image.fromarray(image).reduce(factor, box)
    # one word per pixel, R | G << 8 | B << 16, whose top TABLE_BITS of each channel make the table index
    rgbx = np.frombuffer(small.tobytes("raw", "RGBX"), dtype="<u4").reshape(label_size, label_size)
    bits, drop = TABLE_BITS, 8 - TABLE_BITS
    top = (1 << bits) - 1
    index = (
        ((rgbx << (2 * bits - drop)) & (top << 2 * bits))
        | ((rgbx >> (8 + drop - bits)) & (top << bits))
        | ((rgbx >> (16 + drop)) & top)
    )
    return _color_table()[index].astype(np.int32)
