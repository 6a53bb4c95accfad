"""The probe set's label vocabulary: Broden label names, their categories and global numbers.

Every name is spelled exactly as in the real Broden ``label.csv`` so that results on the probe set read like
results on Broden. Numbers are assigned 1..L in the order of :data:`VOCABULARY` (colours first, as Broden
does); a name that occurs in several categories (none does yet) would keep one number.
"""

from __future__ import annotations

from types import MappingProxyType

#: Broden's 11 colour names (the van de Weijer colour-name set).
COLORS: tuple[str, ...] = (
    "black-c",
    "blue-c",
    "brown-c",
    "grey-c",
    "green-c",
    "orange-c",
    "pink-c",
    "purple-c",
    "red-c",
    "white-c",
    "yellow-c",
)
OBJECTS: tuple[str, ...] = (
    "sky",
    "tree",
    "building",
    "house",
    "car",
    "road",
    "sidewalk",
    "sea",
    "water",
    "mountain",
    "snow",
    "grass",
    "person",
    "boat",
    "sand",
    "streetlight",
    "fence",
    "path",
    "bench",
    "umbrella",
    "pier",
    "bush",
)
#: Parts of objects (``part_1`` layer) and parts of parts (``part_2`` layer: handle, rim, hair).
PARTS: tuple[str, ...] = (
    "cloud",
    "windowpane",
    "door",
    "roof",
    "chimney",
    "wheel",
    "headlight",
    "taillight",
    "license plate",
    "bumper",
    "crosswalk",
    "trunk",
    "head",
    "torso",
    "arm",
    "leg",
    "body",
    "pole",
    "wave",
    "canopy",
    "seat",
    "back",
    "post",
    "deck",
    "handle",
    "rim",
    "hair",
)
MATERIALS: tuple[str, ...] = (
    "wood",
    "brick",
    "glass",
    "metal",
    "fabric",
    "skin",
    "rock",
    "foliage",
    "tile",
    "concrete",
    "painted",
    "rubber",
)
#: The scene classes, in class-id order: the probe set's image classification task.
SCENE_CLASSES: tuple[str, ...] = (
    "street-s",
    "highway-s",
    "beach-s",
    "harbor-s",
    "forest-broadleaf-s",
    "mountain-s",
    "village-s",
    "park-s",
)
#: DTD texture names drawn by :mod:`unitscope.probe.textures`.
TEXTURES: tuple[str, ...] = (
    "striped",
    "banded",
    "lined",
    "dotted",
    "polka-dotted",
    "chequered",
    "grid",
    "crosshatched",
    "zigzagged",
    "honeycombed",
    "spiralled",
    "bubbly",
)

#: (category, names) in Broden's category order.
VOCABULARY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("color", COLORS),
    ("object", OBJECTS),
    ("part", PARTS),
    ("material", MATERIALS),
    ("scene", SCENE_CLASSES),
    ("texture", TEXTURES),
)

#: Image sources, named like Broden's (``images/<source>/``).
SCENE_SOURCE = "probe_scenes"
TEXTURE_SOURCE = "probe_textures"


def _number_labels() -> dict[str, int]:
    numbers: dict[str, int] = {}
    for _, names in VOCABULARY:
        for name in names:
            numbers.setdefault(name, len(numbers) + 1)
    return numbers


#: Global label number of every name (1..L).
NUMBER: MappingProxyType[str, int] = MappingProxyType(_number_labels())
#: Name of every global label number, as :class:`unitscope.broden.writer.BrodenWriter` wants it.
NAMES: MappingProxyType[int, str] = MappingProxyType({n: name for name, n in NUMBER.items()})
