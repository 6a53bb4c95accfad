"""Detector summaries: a hand-computed table, both unique-detector conventions, and the released tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from realdata import real_data
from unitscope.cli import main
from unitscope.summary import TallyFormatError, display_name, read_tally, summarize, tally_categories


# unit: (top category, top label, score), then per category (label, iou); categories deliberately not
# in category.csv order. Unit 3's object IoU is exactly the threshold (not a detector by the strict test).
UNITS = {
    1: ("object", "dog", 0.10, {"scene": ("kitchen-s", 0.05), "object": ("dog", 0.10), "color": ("red-c", 0.01)}),
    2: ("object", "dog", 0.08, {"scene": ("street-s", 0.03), "object": ("dog", 0.08), "color": ("red-c", 0.02)}),
    3: ("color", "blue-c", 0.041, {"scene": ("kitchen-s", 0.02), "object": ("cat", 0.04), "color": ("blue-c", 0.041)}),
    4: ("scene", "kitchen-s", 0.06, {"scene": ("kitchen-s", 0.06), "object": ("car", 0.02), "color": ("", 0.0)}),
    5: ("scene", "", 0.0, {"scene": ("", 0.0), "object": ("", 0.0), "color": ("", 0.0)}),
    6: ("scene", "bedroom-s", 0.07, {"scene": ("bedroom-s", 0.07), "object": ("cat", 0.045), "color": ("red-c", 0.03)}),
}
CATEGORIES = ["scene", "object", "color"]


def hand_table() -> pd.DataFrame:
    rows = []
    for unit, (category, label, score, per_category) in UNITS.items():
        row = {"unit": unit, "category": category, "label": label, "score": score}
        for k in CATEGORIES:
            name, iou = per_category[k]
            row |= {f"{k}-label": name, f"{k}-truth": 100, f"{k}-activation": 50.0, f"{k}-intersect": 7, f"{k}-iou": iou}
        rows.append(row)
    return pd.DataFrame(rows).sort_values("score", ascending=False)


@pytest.fixture
def tally_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tally.csv"
    hand_table().to_csv(path, index=False)
    return path


def test_read_tally_types_and_categories(tally_csv):
    tally = read_tally(tally_csv)
    assert tally_categories(tally) == CATEGORIES
    assert tally["unit"].dtype == "int64"
    assert tally.loc[tally["unit"] == 5, "label"].item() == ""  # empty, not NaN
    assert tally.loc[tally["unit"] == 4, "color-label"].item() == ""
    assert tally["object-truth"].sum() == 600


def test_summary_by_hand(tally_csv):
    summary = summarize(read_tally(tally_csv))
    assert summary == {
        "units": 6,
        "iou_threshold": 0.04,
        "detectors": 5,  # units 1, 2, 3, 4, 6
        "detectors_per_category": {"scene": 3, "object": 3, "color": 1},  # object: 1, 2, 6 (unit 3 is = 0.04)
        "unique_top_label": {
            "all": 4,  # dog, blue-c, kitchen-s, bedroom-s
            "per_category": {"scene": 2, "object": 1, "color": 1},
        },
        "unique_per_category": {
            "all": 5,
            "per_category": {"scene": 2, "object": 2, "color": 1},  # {kitchen, bedroom}, {dog, cat}, {blue}
        },
        "top_label_detectors_per_category": {"scene": 2, "object": 2, "color": 1},
    }
    json.dumps(summary)  # plain Python types only


def test_threshold_is_strict(tally_csv):
    tally = read_tally(tally_csv)
    at_unit3 = summarize(tally, iou_threshold=0.041)
    assert at_unit3["detectors"] == 4 and at_unit3["detectors_per_category"]["color"] == 0
    higher = summarize(tally, iou_threshold=0.05)
    assert higher["detectors"] == 4  # 0.10, 0.08, 0.06, 0.07
    assert higher["detectors_per_category"] == {"scene": 2, "object": 2, "color": 0}
    assert higher["unique_per_category"]["per_category"] == {"scene": 2, "object": 1, "color": 0}
    assert summarize(tally, iou_threshold=0.0)["detectors"] == 5  # unit 5 (score 0) never counts


def test_category_subset_rechooses_top_labels(tally_csv):
    only_object = summarize(read_tally(tally_csv), categories=["object"])
    assert only_object["detectors"] == 3
    assert only_object["unique_top_label"] == {"all": 2, "per_category": {"object": 2}}
    assert only_object["top_label_detectors_per_category"] == {"object": 3}
    reordered = summarize(read_tally(tally_csv), categories=["color", "object", "scene"])
    assert list(reordered["detectors_per_category"]) == ["color", "object", "scene"]
    assert reordered["unique_top_label"]["all"] == 4
    with pytest.raises(ValueError, match="'part' is not in the tally"):
        summarize(read_tally(tally_csv), categories=["part"])


def test_read_tally_errors_name_file_and_column(tmp_path, tally_csv):
    bad = tmp_path / "bad.csv"
    hand_table().drop(columns=["object-intersect"]).to_csv(bad, index=False)
    with pytest.raises(TallyFormatError, match=r"bad\.csv: missing column 'object-intersect'"):
        read_tally(bad)
    hand_table().assign(**{"scene-iou": "high"}).to_csv(bad, index=False)
    with pytest.raises(TallyFormatError, match=r"bad\.csv: column 'scene-iou' row 2 is 'high'"):
        read_tally(bad)
    hand_table().assign(category="texture").to_csv(bad, index=False)
    with pytest.raises(TallyFormatError, match="'texture'"):
        read_tally(bad)
    hand_table()[["unit", "category", "label", "score"]].to_csv(bad, index=False)
    with pytest.raises(TallyFormatError, match="no '<category>-iou' column"):
        read_tally(bad)
    with pytest.raises(TallyFormatError, match="no such tally file"):
        read_tally(tmp_path / "absent.csv")


def test_display_name():
    assert display_name("train_station-outdoor-s") == "train station-outdoor"
    assert display_name("black-c") == "black"
    assert display_name("shop window") == "shop window"
    assert display_name("t-shirt") == "t-shirt"


def test_cli_table_and_json(tally_csv):
    runner = CliRunner()
    table = runner.invoke(main, ["summarize", str(tally_csv)])
    assert table.exit_code == 0, table.output
    rows = {line.split()[0]: line.split()[1:] for line in table.output.splitlines() if line.split()}
    assert rows["object"] == ["3", "2", "1", "2"]
    assert rows["all"] == ["5", "5", "4", "5"]
    as_json = runner.invoke(main, ["summarize", str(tally_csv), "--json", "--iou-threshold", "0.05"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == summarize(read_tally(tally_csv), 0.05)


def test_cli_reports_bad_input_in_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    hand_table().drop(columns=["unit"]).to_csv(bad, index=False)
    result = CliRunner().invoke(main, ["summarize", str(bad)])
    assert result.exit_code == 1
    assert "missing column 'unit'" in result.output and "Traceback" not in result.output
    assert CliRunner().invoke(main, ["summarize", str(bad), "--iou-threshold", "1.5"]).exit_code == 2


# Published numbers: SOURCE.md and spec §4.1 (per-category convention) / §4.2 (top-label convention),
# categories in the order object, part, scene, material, texture, color.
PUBLISHED = {
    "caffe_reference_imagenet.csv": (97, 50, 61, [49, 26, 5, 4, 45, 6], [21, 8, 4, 1, 23, 4], [17, 8, 1, 1, 21, 2]),
    "caffe_reference_places205.csv": (107, 60, 79, [78, 14, 17, 4, 31, 2], [36, 8, 12, 1, 20, 2], [30, 6, 3, 1, 19, 1]),
    "caffe_reference_places365.csv": (118, 72, 91, [81, 17, 21, 3, 47, 2], [40, 9, 13, 2, 25, 2], [32, 6, 6, 2, 25, 1]),
    "ResNet-152-model_imagenet.csv": (
        1325, 197, 242, [858, 268, 494, 49, 407, 3], [75, 23, 89, 8, 45, 2], [63, 16, 68, 5, 43, 2]
    ),
    "ResNet-152-model_places365.csv": (
        1452, 278, 347, [774, 308, 1045, 19, 300, 2], [84, 26, 188, 5, 42, 2], [61, 14, 159, 4, 39, 1]
    ),
}
PAPER_ORDER = ["object", "part", "scene", "material", "texture", "color"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_released_tables_reproduce_published_numbers(name):
    detectors, top_unique, per_category_unique, k_detectors, k_unique, top_k_unique = PUBLISHED[name]
    tally = read_tally(real_data(f"netdissect-released-results/{name}"))
    assert tally_categories(tally) == ["object", "color", "material", "scene", "texture", "part"]  # not file order
    summary = summarize(tally, categories=PAPER_ORDER)
    assert summary["detectors"] == detectors
    assert summary["unique_top_label"]["all"] == top_unique
    assert summary["unique_per_category"]["all"] == per_category_unique
    assert summary["detectors_per_category"] == dict(zip(PAPER_ORDER, k_detectors))
    assert summary["unique_per_category"]["per_category"] == dict(zip(PAPER_ORDER, k_unique))
    assert summary["unique_top_label"]["per_category"] == dict(zip(PAPER_ORDER, top_k_unique))
    assert sum(summary["top_label_detectors_per_category"].values()) == detectors
    in_file_order = summarize(tally)
    assert in_file_order == summary and list(in_file_order["detectors_per_category"]) == tally_categories(tally)


def test_reads_netdissect_lite_tables():
    lite = read_tally(real_data("netdissect-reference-results/clipdissect_resnet18_places365_layer4.csv"))
    assert tally_categories(lite) == ["color", "object", "part", "material", "scene", "texture"]
    assert len(lite) == 512 and lite["unit"].min() == 1 and lite["unit"].max() == 512
    object_only = read_tally(real_data("netdissect-reference-results/netdissecteval_resnet18_places365_layer4_object_tally.csv"))
    assert tally_categories(object_only) == ["object"]
    assert object_only["score"].max() == pytest.approx(0.02705, abs=1e-5)
    assert summarize(object_only)["detectors"] == 0
