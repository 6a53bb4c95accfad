"""The procedural probe set: Broden format, recorded counts, determinism, colour and scene labels."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from realdata import real_data
from unitscope.broden.format import CATEGORIES, split_of
from unitscope.broden.reader import BrodenDataset
from unitscope.cli import main
from unitscope.probe.colornames import PROTOTYPES
from unitscope.probe.generate import CYCLE, generate
from unitscope.probe.vocabulary import NUMBER, SCENE_CLASSES, SCENE_SOURCE, TEXTURE_SOURCE, VOCABULARY

SEED = 7


@pytest.fixture(scope="module")
def probe_224(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("p224") / "probe", 40, size=224, seed=SEED, workers=1)


@pytest.fixture(scope="module")
def probe_64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("p64") / "probe", 40, size=64, seed=SEED, workers=2)


@pytest.fixture(params=["probe_224", "probe_64"])
def probe(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _recount(dataset: BrodenDataset) -> tuple[Counter, Counter]:
    """(pixels, images) per label number, counted from what the reader returns."""
    pixels: Counter = Counter()
    images: Counter = Counter()
    sh, sw = dataset.label_size
    for i in range(len(dataset)):
        segmentation = dataset.segmentation(i)
        numbers, counts = np.unique(segmentation.layers[segmentation.layers > 0], return_counts=True)
        found = dict(zip(numbers.tolist(), counts.tolist(), strict=True))
        for number in segmentation.image_labels.tolist():
            found[number] = found.get(number, 0) + sh * sw
        pixels.update(found)
        images.update(found.keys())
    return pixels, images


def test_reader_counts_equal_probe_json(probe: Path) -> None:
    meta = json.loads((probe / "probe.json").read_text())
    dataset = BrodenDataset(probe)
    pixels, images = _recount(dataset)
    names = dataset.labels["name"]
    recounted = {names[n]: {"images": images[n], "pixels": pixels[n]} for n in pixels}
    assert recounted == meta["label_counts"]
    assert meta["images"] == len(dataset) == 40
    assert (meta["size"], meta["label_size"]) == (dataset.image_size[0], dataset.label_size[0])
    assert meta["scene_classes"] == list(SCENE_CLASSES)


def test_label_tables_agree_with_the_layers(probe: Path) -> None:
    meta = json.loads((probe / "probe.json").read_text())
    label_csv = pd.read_csv(probe / "label.csv").set_index("name")
    category_csv = pd.read_csv(probe / "category.csv").set_index("name")
    area = meta["label_size"] ** 2
    per_label_images: Counter = Counter()
    for category in CATEGORIES:
        pixels, images = _recount(BrodenDataset(probe, categories=[category]))
        table = pd.read_csv(probe / f"c_{category}.csv")
        assert dict(zip(table["number"], table["frequency"], strict=True)) == dict(images)
        for number, coverage in zip(table["number"], table["coverage"], strict=True):
            assert coverage == pytest.approx(pixels[number] / area, abs=1e-5)
        assert list(table["code"]) == list(range(1, len(table) + 1))
        row = category_csv.loc[category]
        assert (row["count"], row["frequency"]) == (len(table), sum(images.values()))
        assert (row["first"], row["last"]) == (min(images), max(images))
        per_label_images.update(images)
    for name, counts in meta["label_counts"].items():
        assert label_csv.loc[name, "frequency"] == per_label_images[NUMBER[name]] >= counts["images"]


def test_concepts_cover_all_six_categories(probe_224: Path) -> None:
    meta = json.loads((probe_224 / "probe.json").read_text())
    present = set(meta["label_counts"])
    per_category = {category: present & set(names) for category, names in VOCABULARY}
    assert all(per_category.values()), per_category
    assert len(present) >= 40
    assert len(per_category["color"]) == 11


def test_names_are_real_broden_labels_of_their_category() -> None:
    real = pd.read_csv(real_data("broden-meta/label.csv")).set_index("name")["category"]
    for category, names in VOCABULARY:
        for name in names:
            assert f"{category}(" in real[name], (category, name)


def test_layer_structure_follows_broden(probe_224: Path) -> None:
    index = pd.read_csv(probe_224 / "index.csv", keep_default_na=False)
    assert list(index.columns) == ["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES]
    assert (index["split"] == index["image"].map(split_of)).all()
    textures = index[index["image"].str.startswith(TEXTURE_SOURCE + "/")]
    scenes = index[index["image"].str.startswith(SCENE_SOURCE + "/")]
    assert len(textures) + len(scenes) == len(index) and len(textures) > 0
    for _, row in textures.iterrows():
        assert row["color"] and row["texture"].isdigit()
        assert not any(row[c] for c in ("object", "part", "material", "scene"))
    for _, row in scenes.iterrows():
        assert row["color"] and row["object"] and row["scene"].isdigit() and not row["texture"]
        parts = row["part"].split(";") if row["part"] else []
        assert [Path(p).stem.rsplit("_", 1)[-1] for p in parts] in ([], ["1"], ["1", "2"])
    assert set(index["image"]) == {
        str(p.relative_to(probe_224 / "images")) for p in (probe_224 / "images").rglob("*.jpg")
    }


def test_every_image_level_label_once_per_cycle(probe_224: Path) -> None:
    """40 images are two cycles: each of the 8 scenes and 12 textures on exactly two images, in a new order
    each cycle; the other categories are counted from the label maps, independently of the schedule."""
    index = pd.read_csv(probe_224 / "index.csv", keep_default_na=False)
    assert CYCLE == 20 and len(index) == 2 * CYCLE
    names = {number: name for name, number in NUMBER.items()}
    shown = [names[int(row["scene"] or row["texture"])] for _, row in index.iterrows()]
    image_labels = [name for category, labels in VOCABULARY if category in ("scene", "texture") for name in labels]
    for cycle in (shown[:CYCLE], shown[CYCLE:]):
        assert sorted(cycle) == sorted(image_labels)
    assert shown[:CYCLE] != shown[CYCLE:]
    counts = json.loads((probe_224 / "probe.json").read_text())["label_counts"]
    assert all(counts[name]["images"] == 2 for name in image_labels)


def test_same_seed_same_bytes_whatever_the_workers(probe_64: Path, tmp_path: Path) -> None:
    reference = _tree_digest(probe_64)
    assert _tree_digest(generate(tmp_path / "again", 40, size=64, seed=SEED, workers=1)) == reference
    other = _tree_digest(generate(tmp_path / "other", 40, size=64, seed=SEED + 1, workers=1))
    jpegs = [name for name in reference if name.endswith(".jpg")]
    assert sum(other.get(name) != reference[name] for name in jpegs) == len(jpegs)


_SRGB_TO_LAB = ImageCms.buildTransform(
    ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB", 6500), "RGB", "LAB"
)


def _nearest_prototype_reference(rgb: np.ndarray) -> np.ndarray:
    """Nearest colour prototype by brute force, with littlecms (not our code) converting sRGB to CIELAB."""

    def lab(pixels: np.ndarray) -> np.ndarray:
        encoded = np.asarray(ImageCms.applyTransform(Image.fromarray(pixels), _SRGB_TO_LAB))
        # Pillow's LAB mode: L scaled to 0..255, a and b as signed bytes
        return np.stack(
            [encoded[..., 0] * (100 / 255), encoded[..., 1].view(np.int8), encoded[..., 2].view(np.int8)], axis=-1
        )

    prototypes = lab(np.array([[rgb_ for _, rgb_ in PROTOTYPES]], dtype=np.uint8))[0]
    pixels = lab(rgb)
    best = np.full(rgb.shape[:2], np.inf)
    nearest = np.zeros(rgb.shape[:2], dtype=np.int64)
    for (name, _), prototype in zip(PROTOTYPES, prototypes, strict=True):
        distance = ((pixels - prototype) ** 2).sum(axis=-1)
        nearest[distance < best] = NUMBER[name]
        best = np.minimum(best, distance)
    return nearest


def test_color_layer_is_the_nearest_prototype_of_the_jpeg(probe_224: Path) -> None:
    dataset = BrodenDataset(probe_224, categories=["color"])
    agree = total = 0
    for i in range(len(dataset)):
        image = dataset.image(i).astype(np.float64)
        small = image.reshape(112, 2, 112, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
        colors = dataset.segmentation(i).layers[0]
        agree += (colors == _nearest_prototype_reference(small)).sum()
        total += colors.size
    assert agree / total >= 0.9


def test_scene_labels_match_the_contents(probe_224: Path, probe_64: Path) -> None:
    required = {
        "street-s": {"road"},
        "highway-s": {"road"},
        "beach-s": {"sea", "water"},
        "harbor-s": {"sea", "water"},
        "forest-broadleaf-s": {"tree"},
        "mountain-s": {"mountain"},
        "village-s": {"house"},
        "park-s": {"grass"},
    }
    seen = set()
    for root in (probe_224, probe_64):
        dataset = BrodenDataset(root, categories=["object", "scene", "texture"])
        names = dataset.labels["name"]
        for i in range(len(dataset)):
            segmentation = dataset.segmentation(i)
            image_labels = [names[n] for n in segmentation.image_labels.tolist()]
            if dataset.image_path(i).parent.name == TEXTURE_SOURCE:
                assert len(image_labels) == 1 and image_labels[0] not in SCENE_CLASSES
                continue
            assert len(image_labels) == 1 and image_labels[0] in SCENE_CLASSES
            scene = image_labels[0]
            objects = {names[n] for n in np.unique(segmentation.layers) if n}
            assert objects & required[scene], (dataset.image_path(i), scene, objects)
            seen.add(scene)
    assert len(seen) >= 6


def test_cli_writes_a_dataset_and_refuses_to_overwrite(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        main, ["probe-dataset", "--out", str(out), "--images", "3", "--size", "32", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "probe.json").read_text())["images"] == 3
    again = runner.invoke(main, ["probe-dataset", "--out", str(out), "--images", "3"])
    assert again.exit_code == 2
    assert "already exists" in again.output and "Traceback" not in again.output
    small = runner.invoke(main, ["probe-dataset", "--out", str(tmp_path / "tiny"), "--size", "8"])
    assert small.exit_code == 2 and not (tmp_path / "tiny").exists()


def test_a_failure_leaves_no_partial_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from unitscope.probe import generate as generate_module

    real_draw = generate_module.draw_image

    def failing_draw(index: int, seed: int, size: int):
        if index == 3:
            raise RuntimeError("drawing failed")
        return real_draw(index, seed, size)

    monkeypatch.setattr(generate_module, "draw_image", failing_draw)
    with pytest.raises(RuntimeError, match="drawing failed"):
        generate(tmp_path / "broken", 6, size=32, seed=0, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_writer_add_file_refuses_broden_tables_and_paths(tmp_path: Path) -> None:
    from unitscope.broden.writer import BrodenWriter

    writer = BrodenWriter(tmp_path / "d", {1: "sky"}, image_size=32, label_size=16)
    for bad in ("index.csv", "c_object.csv", "../escape.json", "sub/probe.json"):
        with pytest.raises(ValueError, match="plain file name"):
            writer.add_file(bad, "{}")
    writer.add_file("probe.json", "{}")
    writer.add_image("src", "a", np.zeros((32, 32, 3), np.uint8), {"object": [np.ones((16, 16), int)]})
    root = writer.close()
    assert (root / "probe.json").read_text() == "{}"


def test_canvas_fills_exactly_the_pixels_pillow_rasterises() -> None:
    """Rectangles take a box-fill shortcut; every shape must still cover what ImageDraw.polygon covers."""
    from PIL import ImageDraw

    from unitscope.probe.canvas import _fill, _rasters

    rng = np.random.default_rng(0)
    for k in range(400):
        size = int(rng.choice([16, 61, 112]))
        x0, x1, y0, y1 = rng.uniform(-8, size + 8, 4)
        if k % 4 == 1:  # on and between pixel centres
            x0, x1, y0, y1 = np.round(np.array([x0, x1, y0, y1]) * 2) / 2
        if k % 4 == 2:  # degenerate: zero width
            x1 = x0
        polygons = [
            [(x0, y0), (x1, y0), (x1, y1), (x0, y1)],
            [(x0, y0), (x0, y1), (x1, y1), (x1, y0)],
            [(x0, y0), (x1, y0), (x1, y1)],
        ]
        for polygon in polygons:
            polygon = [(float(x), float(y)) for x, y in polygon]
            for mode, color in (("RGB", (200, 30, 7)), ("I", 5)):
                expected, got = Image.new(mode, (size, size)), Image.new(mode, (size, size))
                ImageDraw.Draw(expected).polygon(polygon, fill=color)
                _fill(got.im, _rasters([polygon], size), color)
                np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=f"{mode} {polygon}")
