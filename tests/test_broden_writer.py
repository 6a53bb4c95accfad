"""BrodenWriter: metadata tables computed from what was written, checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unitscope.broden.writer import BrodenWriter

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
