"""BrodenDataset: round trip through BrodenWriter, the primary-category rule, the real metadata, bad input."""

from __future__ import annotations

import csv
import hashlib
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from realdata import real_data
from unitscope.broden.format import CATEGORIES, encode_labels
from unitscope.broden.loaders import image_loader, segmentation_loader
from unitscope.broden.reader import BrodenDataset, BrodenFormatError
from unitscope.broden.writer import BrodenWriter


IMAGE_SIZE, LABEL_SIZE = 24, 12
#: Label numbers used per category; 4 is an object and a part, 5 an object and a material.
GROUPS = {
    "color": [1, 2, 3],
    "object": [4, 5, 6, 7],
    "part": [8, 9, 10, 4],
    "material": [11, 12, 5],
    "scene": [13, 14],
    "texture": [15, 16, 17],
}
NAMES = {number: f"label{number}" for number in range(1, 18)}
EMPTY_RECORD = 3  # the record written without any data: the reader must drop it


def _gradient_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth image JPEG keeps within a few grey levels; R grows along x, G along y (catches transposes)."""
    ramp = np.arange(size) * 64 // size
    x, y = ramp[None, :], ramp[:, None]
    base = rng.integers(0, 256 - 128, 3)
    return np.stack(np.broadcast_arrays(base[0] + x, base[1] + y, base[2] + (x + y) // 2), axis=-1).astype(np.uint8)


def _label_layer(rng: np.random.Generator, numbers: list[int], size: int = LABEL_SIZE) -> np.ndarray:
    return rng.choice([0, *numbers], size=(size, size)).astype(np.int32)


def _write_dataset(root: Path, images: int = 7, seed: int = 0) -> list[dict]:
    """Write a small dataset; return per image what was written (layers and image labels in category order)."""
    rng = np.random.default_rng(seed)
    records = []
    with BrodenWriter(root, NAMES, image_size=IMAGE_SIZE, label_size=LABEL_SIZE) as writer:
        for k in range(images):
            pixel: dict[str, list[np.ndarray]] = {}
            image_level: dict[str, list[int]] = {}
            if k != EMPTY_RECORD:
                pixel["color"] = [rng.choice(GROUPS["color"], size=(LABEL_SIZE, LABEL_SIZE)).astype(np.int32)]
                pixel["object"] = [_label_layer(rng, GROUPS["object"])]
                if k % 4:
                    pixel["part"] = [_label_layer(rng, GROUPS["part"]) for _ in range(k % 4)]
                if k % 2:
                    pixel["material"] = [_label_layer(rng, GROUPS["material"])]
                if k % 3 == 0:
                    image_level["scene"] = [int(rng.choice(GROUPS["scene"]))]
                if k % 2 == 0:
                    image_level["texture"] = [int(n) for n in rng.choice(GROUPS["texture"], 1 + k % 3, replace=False)]
            image = _gradient_image(rng, IMAGE_SIZE)
            path = writer.add_image("synth", f"img{k}", image, pixel, image_level)
            records.append(
                {
                    "path": path,
                    "image": image,
                    "pixel": pixel,
                    "image_level": image_level,
                    "layers": [layer for c in CATEGORIES for layer in pixel.get(c, [])],
                    "image_labels": [n for c in CATEGORIES for n in image_level.get(c, [])],
                }
            )
    return records


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("broden") / "ds"
    return root, _write_dataset(root)


def _kept(records: list[dict]) -> list[dict]:
    return [r for k, r in enumerate(records) if k != EMPTY_RECORD]


def _expected_primary(records: list[dict], categories: list[str]) -> dict[int, str]:
    """Brute force: per-category coverage summed image by image; the largest wins, later category on ties."""
    coverage: dict[str, Counter] = {c: Counter() for c in categories}
    for record in records:
        for category, layers in record["pixel"].items():
            if category in coverage:
                stacked = np.stack(layers)
                for number in np.unique(stacked[stacked > 0]):
                    coverage[category][int(number)] += (stacked == number).sum() / LABEL_SIZE**2
        for category, numbers in record["image_level"].items():
            if category in coverage:
                for number in numbers:
                    coverage[category][number] += 1.0
    primary = {}
    for number in NAMES:
        best = ""
        for category in categories:
            if number in coverage[category] and (not best or coverage[category][number] >= coverage[best][number]):
                best = category
        primary[number] = best
    return primary


def test_round_trip_returns_what_was_written(written) -> None:
    root, records = written
    kept = _kept(records)
    dataset = BrodenDataset(root)
    assert dataset.categories == list(CATEGORIES)
    assert len(dataset) == len(kept) == len(records) - 1
    assert dataset.image_size == (IMAGE_SIZE, IMAGE_SIZE) and dataset.label_size == (LABEL_SIZE, LABEL_SIZE)
    assert dataset.index["image"].tolist() == [r["path"] for r in kept]
    for i, record in enumerate(kept):
        assert dataset.image_path(i) == root / "images" / record["path"]
        image = dataset.image(i)
        assert image.dtype == np.uint8 and image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
        np.testing.assert_allclose(image.astype(int), record["image"].astype(int), atol=8)
        segmentation = dataset.segmentation(i)
        assert segmentation.layers.dtype == np.int32 and segmentation.image_labels.dtype == np.int32
        np.testing.assert_array_equal(segmentation.layers, np.stack(record["layers"]))
        assert segmentation.image_labels.tolist() == record["image_labels"]
    with pytest.raises(IndexError):
        dataset.segmentation(len(dataset))


def test_label_table_and_primary_categories(written) -> None:
    root, records = written
    dataset = BrodenDataset(root)
    with open(root / "label.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert dataset.labels.index.tolist() == list(range(len(rows) + 1))
    assert dataset.labels.loc[0, "name"] == "-" and dataset.labels.loc[0, "primary"] == ""
    assert dataset.labels["name"].tolist()[1:] == [r["name"] for r in rows]
    assert dataset.labels["frequency"].tolist()[1:] == [int(r["frequency"]) for r in rows]
    np.testing.assert_allclose(dataset.labels["coverage"].to_numpy()[1:], [float(r["coverage"]) for r in rows])
    expected = _expected_primary(records, list(CATEGORIES))
    assert dataset.labels["primary"].to_dict() == {0: "", **expected}
    assert dataset.primary.dtype == np.int64
    assert dataset.primary.tolist() == [-1] + [CATEGORIES.index(expected[n]) for n in NAMES]
    assert dataset.index_sha256() == hashlib.sha256((root / "index.csv").read_bytes()).hexdigest()


def test_category_subset_drops_images_and_layers(written) -> None:
    root, records = written
    dataset = BrodenDataset(root, ["texture", "scene"])  # any order in, category.csv order out
    assert dataset.categories == ["scene", "texture"]
    kept = [r for r in records if r["image_level"]]
    assert 0 < len(kept) < len(_kept(records))
    assert dataset.index["image"].tolist() == [r["path"] for r in kept]
    for i, record in enumerate(kept):
        segmentation = dataset.segmentation(i)
        assert segmentation.layers.shape == (0, LABEL_SIZE, LABEL_SIZE)
        assert segmentation.image_labels.tolist() == record["image_labels"]
    without_material = BrodenDataset(root, ["color", "object", "part", "scene", "texture"])
    expected = _expected_primary(records, without_material.categories)
    assert without_material.labels["primary"].to_dict() == {0: "", **expected}
    assert expected[5] == "object" and expected[11] == ""  # 5 falls back from material to object


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loaders_match_item_access_in_order(written, num_workers) -> None:
    root, _ = written
    dataset = BrodenDataset(root)
    order = [4, 0, 5, 2, 1, 3]
    seen = []
    for indices, images in image_loader(dataset, order, batch_size=4, num_workers=num_workers):
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, IMAGE_SIZE, IMAGE_SIZE)
        for i, image in zip(indices.tolist(), images):
            assert torch.equal(image, torch.from_numpy(dataset.image(i)).permute(2, 0, 1))
        seen += indices.tolist()
    assert seen == order
    seen, padded_layers, padded_labels = [], False, False
    for batch in segmentation_loader(dataset, order, batch_size=4, num_workers=num_workers):
        items = [dataset.segmentation(i) for i in batch.indices.tolist()]
        depth = max(s.layers.shape[0] for s in items)
        count = max(s.image_labels.shape[0] for s in items)
        assert batch.combination_ids.dtype == torch.int32 and batch.combination_labels.dtype == torch.int32
        assert batch.combination_ids.shape == (len(items), LABEL_SIZE, LABEL_SIZE)
        assert batch.combination_labels.shape[2] == depth and batch.image_labels.shape == (len(items), count)
        for b, item in enumerate(items):
            d, k = item.layers.shape[0], item.image_labels.shape[0]
            ids, labels = batch.combination_ids[b].long(), batch.combination_labels[b]
            per_pixel = labels[ids].permute(2, 0, 1).numpy()  # (D, sh, sw): the layers, zero-padded
            np.testing.assert_array_equal(per_pixel[:d], item.layers)
            assert not per_pixel[d:].any()
            pixels = batch.combination_pixels[b]
            assert torch.equal(pixels, torch.bincount(ids.flatten(), minlength=len(pixels)))
            assert not labels[pixels == 0].any()  # padding combinations: no pixel, label 0
            np.testing.assert_array_equal(batch.image_labels[b, :k].numpy(), item.image_labels)
            assert not batch.image_labels[b, k:].any()
            padded_layers |= d < depth
            padded_labels |= k < count
        seen += batch.indices.tolist()
    assert seen == order and padded_layers and padded_labels


def test_grayscale_and_cmyk_jpegs_become_rgb(written, tmp_path) -> None:
    root, records = written
    root = shutil.copytree(root, tmp_path / "ds")
    gray = Image.fromarray(records[0]["image"]).convert("L")
    gray.save(root / "images" / records[0]["path"], quality=95)
    Image.fromarray(records[1]["image"]).convert("CMYK").save(root / "images" / records[1]["path"], quality=95)
    dataset = BrodenDataset(root)
    image = dataset.image(0)
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert (image == image[..., :1]).all()
    np.testing.assert_allclose(image[..., 0].astype(int), np.asarray(gray).astype(int), atol=8)
    np.testing.assert_allclose(dataset.image(1).astype(int), records[1]["image"].astype(int), atol=8)


def _hand_made(root: Path, coverage: dict[int, dict[str, float]]) -> Path:
    """A metadata-only Broden directory whose c_<cat>.csv files hold the given per-category coverage."""
    root.mkdir()
    numbers = sorted(coverage)
    pd.DataFrame({"name": list(CATEGORIES), "first": 1, "last": 1, "count": 1, "frequency": 1}).to_csv(
        root / "category.csv", index=False
    )
    pd.DataFrame(
        {
            "number": numbers,
            "name": [f"l{n}" for n in numbers],
            "category": "",
            "frequency": 1,
            "coverage": 1.0,
            "syns": "",
        }
    ).to_csv(root / "label.csv", index=False)
    for category in CATEGORIES:
        members = [(n, c[category]) for n, c in coverage.items() if category in c]
        pd.DataFrame(
            {
                "code": range(1, len(members) + 1),
                "number": [n for n, _ in members],
                "name": [f"l{n}" for n, _ in members],
                "frequency": 1,
                "coverage": [v for _, v in members],
            }
        ).to_csv(root / f"c_{category}.csv", index=False)
    row = {"image": "x/a.jpg", "split": "train", "ih": 8, "iw": 8, "sh": 4, "sw": 4, **{c: "" for c in CATEGORIES}}
    row["scene"] = "1"
    pd.DataFrame([row]).to_csv(root / "index.csv", index=False)
    return root


def test_primary_rule_on_hand_made_coverage_ties(tmp_path) -> None:
    root = _hand_made(
        tmp_path / "ds",
        {
            1: {"object": 0.5, "material": 0.5},  # tie: material comes later
            2: {"object": 2.0, "part": 2.0, "scene": 1.0},  # tie: part
            3: {"color": 0.0, "texture": 0.0},  # all-zero tie: texture
            4: {"object": 0.0},  # listed with zero coverage: still object
            5: {},  # in no category
            6: {"object": 1.0, "part": 2.0, "material": 3.0},
        },
    )
    full = BrodenDataset(root)
    assert full.labels["primary"].tolist() == ["", "material", "part", "texture", "object", "", "material"]
    assert full.primary.tolist() == [-1, 3, 2, 5, 1, -1, 3]
    assert full.category_coverage.loc[6].tolist() == pytest.approx([np.nan, 1.0, 2.0, 3.0, np.nan, np.nan], nan_ok=True)
    lite = BrodenDataset(root, ["object", "part", "scene", "texture", "color"])
    assert lite.categories == ["color", "object", "part", "scene", "texture"]
    assert lite.labels["primary"].tolist() == ["", "object", "part", "texture", "object", "", "part"]
    assert lite.primary.tolist() == [-1, 1, 2, 4, 1, -1, 2]
    two = BrodenDataset(root, ["scene", "object"])
    assert two.labels["primary"].tolist() == ["", "object", "object", "", "object", "", "object"]


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


REAL_IMAGES = (  # real index rows: 3 part layers + scene 456; scene 83; scene "0" (unlabelled); 1 part, no scene
    "ade20k/ADE_val_00001256.jpg",
    "ade20k/ADE_train_00003891.jpg",
    "ade20k/ADE_train_00015917.jpg",
    "ade20k/ADE_train_00012348.jpg",
)


@pytest.fixture(scope="module")
def real_format(tmp_path_factory) -> tuple[Path, list[dict[str, str]], Counter]:
    """The real metadata plus real ADE20K index rows whose images and masks are synthesized."""
    meta = real_data("broden-meta")
    root = tmp_path_factory.mktemp("real") / "broden1_224"
    (root / "images").mkdir(parents=True)
    for name in ["label.csv", "category.csv", *(f"c_{c}.csv" for c in CATEGORIES)]:
        shutil.copy(meta / name, root / name)
    with open(meta / "index_ade20k_slice.csv", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        rows = [row for row in reader if row["image"] in REAL_IMAGES]
    assert len(rows) == len(REAL_IMAGES)
    with open(root / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    rng = np.random.default_rng(1)
    members = {c: [int(r["number"]) for r in _read_rows(meta / f"c_{c}.csv")] for c in CATEGORIES}
    truth: Counter = Counter()
    for row in rows:
        (root / "images" / row["image"]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_gradient_image(rng, int(row["ih"]))).save(root / "images" / row["image"])
        for category in ("color", "object", "part", "material"):
            for name in filter(None, row[category].split(";")):
                layer = _label_layer(rng, rng.choice(members[category], 6).tolist(), int(row["sh"]))
                Image.fromarray(encode_labels(layer)).save(root / "images" / name)
                truth.update({int(n): int(c) for n, c in zip(*np.unique(layer[layer > 0], return_counts=True))})
        for category in ("scene", "texture"):
            for number in filter(None, row[category].split(";")):
                if int(number):
                    truth[int(number)] += int(row["sh"]) * int(row["sw"])
    return root, rows, truth


def test_real_metadata_conforms(real_format) -> None:
    root, rows, _ = real_format
    dataset = BrodenDataset(root)
    assert dataset.categories == ["color", "object", "part", "material", "scene", "texture"]
    assert len(dataset.labels) == 1197 + 1
    counts = dataset.category_coverage.notna().sum().to_dict()
    assert counts == {"color": 11, "object": 584, "part": 234, "material": 32, "scene": 468, "texture": 47}
    assert counts == {c: len(_read_rows(root / f"c_{c}.csv")) for c in CATEGORIES}
    number = {row["name"]: int(row["number"]) for row in _read_rows(root / "label.csv")}
    primary = dataset.labels["primary"]
    known = {"wall": "object", "street-s": "scene", "dotted": "texture", "head": "part", "painted": "material"}
    for name, category in known.items():
        assert primary[number[name]] == category, name
    wood = {c: float(r["coverage"]) for c in CATEGORIES for r in _read_rows(root / f"c_{c}.csv") if r["name"] == "wood"}
    assert len(wood) >= 2  # wood is a material and an object
    best = max(wood.values())
    assert primary[number["wood"]] == [c for c in CATEGORIES if wood.get(c) == best][-1]
    lite = BrodenDataset(root, ["color", "object", "part", "scene", "texture"])
    rest = {c: v for c, v in wood.items() if c != "material"}
    assert lite.labels["primary"][number["wood"]] == max(rest, key=rest.get)
    assert lite.labels["primary"][number["painted"]] == ""
    assert len(dataset) == len(rows)  # every row has a colour layer: none dropped


def test_real_rows_image_labels_and_truth_counts(real_format) -> None:
    root, rows, truth = real_format
    dataset = BrodenDataset(root)
    item = {row["image"]: i for i, row in enumerate(rows)}  # no row is dropped: item i is rows[i]
    real_scene = int(rows[item["ade20k/ADE_train_00003891.jpg"]]["scene"])
    assert dataset.segmentation(item["ade20k/ADE_train_00003891.jpg"]).image_labels.tolist() == [real_scene]
    assert dataset.labels.loc[real_scene, "primary"] == "scene"
    assert dataset.segmentation(item["ade20k/ADE_train_00015917.jpg"]).image_labels.size == 0
    three_parts = item["ade20k/ADE_val_00001256.jpg"]
    assert dataset.segmentation(three_parts).layers.shape == (5, 112, 112)  # colour, object, 3 part layers
    assert dataset.image(three_parts).shape == (224, 224, 3)
    counted: Counter = Counter()
    pixels = dataset.label_size[0] * dataset.label_size[1]
    for batch in segmentation_loader(dataset, range(len(dataset)), batch_size=3):
        labels = batch.combination_labels
        weights = batch.combination_pixels[:, :, None].expand_as(labels)
        for number, count in zip(labels.flatten().tolist(), weights.flatten().tolist()):
            if number > 0 and count > 0:
                counted[number] += count
        image_labels = batch.image_labels.flatten()
        for number in image_labels[image_labels > 0].tolist():
            counted[number] += pixels
    assert counted == truth


# ---------------------------------------------------------------- bad input


def _edit_csv(path: Path, edit) -> None:
    edit(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)


def _set(row: int, column: str, value: str):
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[row, column] = value
        return table

    return edit


OPEN_ERRORS = {
    "no index.csv": (lambda root: (root / "index.csv").unlink(), None, ["index.csv", "missing"]),
    "no category.csv": (lambda root: (root / "category.csv").unlink(), None, ["category.csv", "missing"]),
    "no label.csv": (lambda root: (root / "label.csv").unlink(), None, ["label.csv", "missing"]),
    "no c_part.csv": (lambda root: (root / "c_part.csv").unlink(), None, ["c_part.csv", "missing"]),
    "index column": (
        lambda root: _edit_csv(root / "index.csv", lambda t: t.drop(columns="sh")),
        None,
        ["index.csv", "sh"],
    ),
    "label column": (
        lambda root: _edit_csv(root / "label.csv", lambda t: t.drop(columns="coverage")),
        None,
        ["label.csv", "coverage"],
    ),
    "c_ column": (
        lambda root: _edit_csv(root / "c_object.csv", lambda t: t.drop(columns="number")),
        None,
        ["c_object.csv", "number"],
    ),
    "category column": (
        lambda root: _edit_csv(root / "category.csv", lambda t: t.drop(columns="name")),
        None,
        ["category.csv", "name"],
    ),
    "cell label": (
        lambda root: _edit_csv(root / "index.csv", _set(1, "scene", "13;999")),
        None,
        ["index.csv line 3", "999"],
    ),
    "c_ label": (
        lambda root: _edit_csv(root / "c_scene.csv", _set(0, "number", "999")),
        None,
        ["c_scene.csv line 2", "999"],
    ),
    "label number": (
        lambda root: _edit_csv(root / "label.csv", _set(4, "number", "five")),
        None,
        ["label.csv line 6", "five"],
    ),
    "image size": (
        lambda root: _edit_csv(root / "index.csv", _set(4, "ih", "30")),
        None,
        ["index.csv line 6", "image size"],
    ),
    "label size": (
        lambda root: _edit_csv(root / "index.csv", _set(2, "sw", "6")),
        None,
        ["index.csv line 4", "label size"],
    ),
    "empty selection": (
        lambda root: _edit_csv(root / "index.csv", _set(slice(None), "texture", "")),
        ["texture"],
        ["index.csv", "texture"],
    ),
}


@pytest.mark.parametrize("case", OPEN_ERRORS)
def test_bad_metadata_is_reported_at_open(written, tmp_path, case) -> None:
    mutate, categories, fragments = OPEN_ERRORS[case]
    root = shutil.copytree(written[0], tmp_path / "ds")
    mutate(root)
    with pytest.raises(BrodenFormatError) as error:
        BrodenDataset(root, categories)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_missing_root_and_unknown_category(written, tmp_path) -> None:
    with pytest.raises(BrodenFormatError, match="nowhere"):
        BrodenDataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="colour.*category.csv.*color, object, part, material, scene, texture"):
        BrodenDataset(written[0], ["colour", "object"])


def _save_rgb_labels(labels: np.ndarray):
    return lambda path: Image.fromarray(encode_labels(labels)).save(path)


ITEM = 2  # item 2 is record 2 (line 4 of index.csv): colour, object, two part layers, texture
FILE_ERRORS = {
    "png missing": ("img2_part_2.png", lambda path: path.unlink(), "segmentation", "missing"),
    "png corrupt": ("img2_object.png", lambda path: path.write_bytes(b"not a png"), "segmentation", "corrupt"),
    "png truncated": (
        "img2_part_1.png",
        lambda path: path.write_bytes(path.read_bytes()[:60]),
        "segmentation",
        "corrupt",
    ),
    "png size": ("img2_color.png", _save_rgb_labels(np.ones((5, 5), int)), "segmentation", "5×5"),
    "png label": ("img2_part_1.png", _save_rgb_labels(np.full((LABEL_SIZE, LABEL_SIZE), 200)), "segmentation", "200"),
    "png mode": (
        "img2_part_1.png",
        lambda path: Image.new("L", (LABEL_SIZE, LABEL_SIZE), 3).save(path),
        "segmentation",
        "mode L",
    ),
    "jpeg missing": ("img2.jpg", lambda path: path.unlink(), "image", "missing"),
    "jpeg corrupt": ("img2.jpg", lambda path: path.write_bytes(b"\xff\xd8 not a jpeg"), "image", "corrupt"),
    "jpeg size": ("img2.jpg", lambda path: Image.new("RGB", (IMAGE_SIZE, 20)).save(path), "image", "20×24"),
}


@pytest.mark.parametrize("case", FILE_ERRORS)
def test_bad_files_are_reported_when_read(written, tmp_path, case) -> None:
    name, mutate, method, problem = FILE_ERRORS[case]
    root = shutil.copytree(written[0], tmp_path / "ds")
    mutate(root / "images" / "synth" / name)
    dataset = BrodenDataset(root)  # nothing is read at open time
    getattr(dataset, method)(ITEM - 1)
    with pytest.raises(BrodenFormatError) as error:
        getattr(dataset, method)(ITEM)
    for fragment in (name, problem, "index.csv line 4", "synth/img2.jpg"):
        assert fragment in str(error.value)


def test_worker_errors_keep_their_type_and_message(written, tmp_path) -> None:
    root = shutil.copytree(written[0], tmp_path / "ds")
    (root / "images" / "synth" / "img2_part_2.png").unlink()
    loader = segmentation_loader(BrodenDataset(root), [0, 1, 2], batch_size=1, num_workers=2)
    with pytest.raises(BrodenFormatError, match="img2_part_2.png"):
        list(loader)
