"""BrodenWriter: metadata tables computed from what was written, checked by hand."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from unitscope.broden.format import decode_labels, encode_labels
from unitscope.broden.writer import BrodenWriter, ImageEncoder, label_png

LABELS = {1: "red-c", 2: "wood", 3: "car", 4: "street-s"}


def _image() -> np.ndarray:
    return np.zeros((8, 8, 3), dtype=np.uint8)


def test_metadata_tables_match_hand_counts(tmp_path) -> None:
    root = tmp_path / "ds"
    car = np.zeros((4, 4), dtype=np.int32)
    car[:2, :] = 3  # 8 of 16 pixels
    wood_object = np.zeros((4, 4), dtype=np.int32)
    wood_object[0, 0] = 2  # 1 of 16: "wood" seen as an object
    wood_material = np.full((4, 4), 2, dtype=np.int32)  # all 16: wood as a material
    with BrodenWriter(root, LABELS, image_size=8, label_size=4) as writer:
        first = writer.add_image("src", "a", _image(), {"object": [car]}, {"scene": [4]})
        writer.add_image("src", "b", _image(), {"object": [wood_object], "material": [wood_material]})
        writer.add_image("src", "c", _image(), {"material": [wood_material]})
    assert first == "src/a.jpg"
    labels = pd.read_csv(root / "label.csv", keep_default_na=False).set_index("number")
    assert labels.loc[2, "category"] == "material(2);object(1)"
    assert labels.loc[2, "frequency"] == 3
    assert labels.loc[2, "coverage"] == pytest.approx(2 + 1 / 16)
    assert labels.loc[3, "coverage"] == pytest.approx(0.5)
    assert labels.loc[4, "category"] == "scene(1)"
    assert labels.loc[1, "category"] == "" and labels.loc[1, "frequency"] == 0
    objects = pd.read_csv(root / "c_object.csv")
    assert objects["number"].tolist() == [3, 2]  # both in one image: higher coverage first
    assert objects["code"].tolist() == [1, 2]
    categories = pd.read_csv(root / "category.csv").set_index("name")
    assert categories.loc["object"].tolist() == [2, 3, 2, 2]
    assert categories.loc["material"].tolist() == [2, 2, 1, 2]
    index = pd.read_csv(root / "index.csv", keep_default_na=False)
    assert index.columns.tolist()[:6] == ["image", "split", "ih", "iw", "sh", "sw"]
    assert index.loc[0, "scene"] == "4" and index.loc[0, "object"] == "src/a_object.png"
    assert (root / "images" / "src" / "b_material.png").exists()


def test_failure_leaves_nothing_behind(tmp_path) -> None:
    root = tmp_path / "ds"
    with pytest.raises(ValueError, match="not in the label table"):
        with BrodenWriter(root, LABELS, image_size=8, label_size=4) as writer:
            writer.add_image("src", "a", _image(), {}, {"scene": [99]})
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []


def test_refuses_existing_directory_and_empty_dataset(tmp_path) -> None:
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        BrodenWriter(tmp_path / "exists", LABELS, image_size=8, label_size=4)
    with pytest.raises(ValueError, match="empty"):
        BrodenWriter(tmp_path / "empty", LABELS, image_size=8, label_size=4).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]


def test_label_png_is_a_png_that_pillow_reads_back_exactly() -> None:
    rng = np.random.default_rng(0)
    for shape in ((4, 4), (7, 13), (112, 112)):
        labels = rng.integers(0, 65536, shape).astype(np.int32)
        labels[: shape[0] // 2] = 3  # runs, as label maps have
        data = label_png(labels)
        with Image.open(io.BytesIO(data)) as png:
            png.verify()  # chunk CRCs and structure
        with Image.open(io.BytesIO(data)) as png:
            assert (png.format, png.mode, png.size) == ("PNG", "RGB", shape[::-1])
            np.testing.assert_array_equal(decode_labels(np.asarray(png)), labels)
            np.testing.assert_array_equal(np.asarray(png), encode_labels(labels))


def test_encoded_images_from_another_process_write_the_same_dataset(tmp_path) -> None:
    rng = np.random.default_rng(1)
    images = [
        (
            f"img{k}",
            rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
            {"object": [rng.integers(0, 4, (4, 4))], "part": [rng.integers(0, 4, (4, 4)) for _ in range(k + 1)]},
            {"scene": [4]} if k % 2 else {},
        )
        for k in range(3)
    ]
    with BrodenWriter(tmp_path / "direct", LABELS, image_size=8, label_size=4) as writer:
        for stem, image, layers, image_labels in images:
            writer.add_image("src", stem, image, layers, image_labels)
    with BrodenWriter(tmp_path / "encoded", LABELS, image_size=8, label_size=4) as writer:
        for stem, image, layers, image_labels in images:
            encoded = writer.encoder.encode("src", stem, image, layers, image_labels)
            writer.add_encoded(pickle.loads(pickle.dumps(encoded)))  # as a worker process sends it
    direct, encoded = (
        {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        for root in (tmp_path / "direct", tmp_path / "encoded")
    )
    assert direct == encoded
    assert sorted(name for name in direct if name.startswith("images/src/img2")) == [
        "images/src/img2.jpg",
        "images/src/img2_object.png",
        "images/src/img2_part_1.png",
        "images/src/img2_part_2.png",
        "images/src/img2_part_3.png",
    ]


def test_encoded_image_counts_pixels_per_label() -> None:
    objects = np.zeros((4, 4), dtype=np.int32)
    objects[0, :3] = 3  # 3 car pixels
    part_1, part_2 = np.full((4, 4), 2), np.zeros((4, 4), dtype=np.int32)
    part_2[1, 1] = 2  # wood in both part layers: 16 + 1 pixels
    encoded = ImageEncoder(8, 4).encode(
        "src", "a", _image(), {"object": [objects], "part": [part_1, part_2]}, {"scene": [4]}
    )
    assert encoded.pixel_counts == {"object": ([3], [3]), "part": ([2], [17])}
    assert encoded.label_pixels() == {3: 3, 2: 17, 4: 16}
