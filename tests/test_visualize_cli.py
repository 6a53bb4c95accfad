"""``unitscope visualize`` as a user runs it: on a dissection's detectors, its result files and report pages."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from unitscope.broden.writer import BrodenWriter
from unitscope.cli import main
from unitscope.models import load_model
from unitscope.report.collect import slugify
from unitscope.report.site import build_site
from unitscope.visualize.run import UNITS_COLUMNS

FAST = ["--steps", "4", "--pixel-steps", "4", "--size", "16", "--input-size", "64"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def dissected(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny Broden dataset and ProbeCNN's conv4 dissected on it."""
    tmp = tmp_path_factory.mktemp("visualize")
    dataset = tmp / "broden"
    rng = np.random.default_rng(0)
    with BrodenWriter(dataset, {1: "thing", 2: "stuff"}, image_size=64, label_size=32) as writer:
        for i in range(12):
            mask = np.zeros((32, 32), dtype=np.int64)
            mask[: 8 + i, : 10 + i] = 1
            mask[20:, 20:] = 2
            writer.add_image("obj", f"o{i}", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
                             pixel_layers={"object": [mask]})
    result = invoke("dissect", "--dataset", str(dataset), "--model", "probecnn", "--layer", "conv4",
                    "--out", str(tmp / "dissect"), "--batch-size", "4")
    assert result.exit_code == 0, result.output
    return dataset, tmp / "dissect" / "conv4"


def test_visualize_takes_the_dissections_detectors_and_records_their_peaks(dissected, tmp_path) -> None:
    dataset, dissection = dissected
    out = tmp_path / "vis"
    result = invoke("visualize", "--model", "probecnn", "--dissection", str(dissection), "--max-units", "3",
                    "--method", "lucid", "--method", "pixel", "--top-images", "2", "--dataset", str(dataset), *FAST,
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    tally = pd.read_csv(dissection / "tally.csv")
    meta = json.loads((dissection / "meta.json").read_text())
    detectors = tally[tally["score"] > meta["iou_threshold"]]["unit"].tolist()  # tally order: best IoU first
    assert len(detectors) >= 3
    written = json.loads((out / "meta.json").read_text())
    assert written["kind"] == "unit-visualization" and written["units"] == detectors[:3]
    assert written["layer"] == "conv4" and written["objective_layer"] == "conv4.1"  # before conv4's ReLU
    images = np.load(out / "images.npz")
    assert images["lucid"].shape == (3, 1, 16, 16, 3) and images["pixel"].shape == (3, 1, 64, 64, 3)
    assert images["lucid"].dtype == np.uint8
    units = pd.read_csv(out / "units.csv")
    assert list(units.columns) == UNITS_COLUMNS and len(units) == 6
    top = pd.read_csv(dissection / "top_images.csv")
    first = top[top["rank"] == 1].set_index("unit")["max_activation"]
    for row in units.itertuples():
        assert row.dataset_peak == pytest.approx(first[row.unit])
        assert row.reaches_dataset == (row.peak >= row.dataset_peak)
    # the recorded peak is the unit's highest activation on the stored image (Lucid: with its grey border)
    model = load_model("probecnn").module.eval()
    row = units[(units["method"] == "pixel")].iloc[0]
    pixels = torch.from_numpy(images["pixel"][0, 0]).permute(2, 0, 1)[None].float() / 255
    from unitscope.models.normalize import float_normalizer
    with torch.no_grad():
        conv4 = model.conv4(model.pool3(model.conv3(model.pool2(model.conv2(model.pool1(model.conv1(
            float_normalizer("imagenet")(pixels))))))))
    assert float(conv4[0, int(row["unit"]) - 1].max()) == pytest.approx(row["peak"], rel=1e-2, abs=1e-3)

    # DeconvNet and guided views of each unit's first two top images, cropped where the projections reach
    views = np.load(out / "views.npz")
    assert sorted(views.files) == ["deconvnet", "guided-backprop", "image"]
    assert all(views[name].shape == (3, 2, 64, 64, 3) for name in views.files)
    table = pd.read_csv(out / "views.csv")
    expected = top[top["rank"] <= 2].set_index(["unit", "rank"])["image"]
    assert [(r.unit, r["rank"]) for _, r in table.iterrows()] == [(u, k) for u in detectors[:3] for k in (1, 2)]
    row = table.iloc[0]
    assert row["image"] == expected[(row["unit"], 1)]
    image = np.asarray(Image.open(dataset / "images" / row["image"]).convert("RGB"))
    crop = image[row["top"]:row["bottom"], row["left"]:row["right"]]
    assert crop.shape[0] == crop.shape[1] >= 16
    tile = np.asarray(Image.fromarray(crop).resize((64, 64), Image.Resampling.BILINEAR))
    assert np.array_equal(views["image"][0, 0], tile)
    assert views["deconvnet"][0, 0].std() > 0 and not np.array_equal(views["deconvnet"], views["guided-backprop"])

    site = build_site([dissection, out], dataset, tmp_path / "site", workers=1)
    model = slugify(meta["model"])  # "probecnn (untrained)": the dissection's name for the model
    assert written["model"] == meta["model"]
    unit_page = (site / model / "conv4" / f"unit-{detectors[0]:04d}.html").read_text()
    assert "Activation maximisation" in unit_page
    image = f"visualize/{model}/conv4/unit-{detectors[0]:04d}-lucid-0.webp"
    assert f'src="../../{image}"' in unit_page and (site / image).is_file()
    assert "Where it looks in its top images" in unit_page
    view = f"visualize/{model}/conv4/unit-{detectors[0]:04d}-top2-guided-backprop.webp"
    assert f'src="../../{view}"' in unit_page and (site / view).is_file()
    overview = (site / "visualize" / f"{model}.html").read_text()
    assert f"unit-{detectors[2]:04d}-pixel-0.webp" in overview and f"../{model}/conv4/unit-" in overview

    # without the layer's dissection among the results, the overview shows the units without links to pages
    other = tmp_path / "other-network"
    shutil.copytree(dissection, other)
    (other / "meta.json").write_text(json.dumps({**meta, "model": "another network"}))
    site = build_site([other, out], dataset, tmp_path / "site-without", workers=1)
    overview = site / "visualize" / f"{model}.html"
    assert f"unit-{detectors[2]:04d}-pixel-0.webp" in overview.read_text()
    links = re.findall(r'href="([^"#]+)"', overview.read_text())
    assert links and all((overview.parent / link).resolve().is_file() for link in links)
    assert not [link for link in links if "/unit-" in link]
    assert "Visualisations" in (site / "index.html").read_text()


def test_visualize_named_units_without_a_dissection(tmp_path) -> None:
    out = tmp_path / "vis"
    result = invoke("visualize", "--model", "probecnn", "--layer", "conv2", "--unit", "5", "--unit", "2",
                    "--objective", "neuron", "--post-activation", *FAST, "--out", str(out))
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["units"] == [5, 2] and meta["objective_layer"] == "conv2" and meta["dissection"] is None
    units = pd.read_csv(out / "units.csv")
    assert units["dataset_peak"].isna().all() and units["unit"].tolist() == [5, 2]


@pytest.mark.parametrize(("args", "message"), [
    (["--layer", "conv2", "--unit", "65"], "--unit 65 is out of range: layer 'conv2' has units 1 to 64"),
    (["--layer", "fc", "--unit", "1", "--objective", "neuron"], "layer 'fc' has no spatial maps"),
    (["--layer", "conv9", "--unit", "1"], "has no layer 'conv9'"),
    (["--unit", "1"], "--layer is needed without --dissection"),
    (["--layer", "conv2"], "no unit to visualise: give --unit N, or --dissection DIR"),
    (["--layer", "conv2", "--unit", "1", "--steps", "0"], "Invalid value for '--steps'"),
    (["--layer", "conv2", "--unit", "1", "--top-images", "2"], "--top-images needs --dissection"),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, args, message) -> None:
    out = tmp_path / "vis"
    result = CliRunner().invoke(main, ["visualize", "--model", "probecnn", *args, *FAST[2:], "--out", str(out)])
    assert result.exit_code != 0 and message in result.output, result.output
    assert not out.exists() and not list(tmp_path.iterdir())


def test_invert_writes_every_layer_in_depth_order(tmp_path) -> None:
    out = tmp_path / "inv"
    result = invoke("invert", "--model", "probecnn", "--layer", "conv3", "--layer", "conv1", "--image",
                    "builtin:chelsea", "--image", "builtin:rocket", "--size", "32", "--steps", "8", "--name", "mine",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "inversion" and meta["model"] == "mine" and meta["layers"] == ["conv1", "conv3"]
    assert meta["settings"]["steps"] == 8 and meta["settings"]["alpha"] == 6.0
    arrays = np.load(out / "reconstructions.npz")
    assert arrays["original"].shape == (2, 32, 32, 3) and arrays["reconstructions"].shape == (2, 2, 32, 32, 3)
    table = pd.read_csv(out / "layers.csv")
    assert table["layer"].tolist() == ["conv1", "conv1", "conv3", "conv3"]
    assert table["lambda_tv"].tolist() == [1.0, 1.0, 10.0, 10.0]  # conv1 in the first third, conv3 in the second
    assert ((table["ssim"] > -1) & (table["ssim"] <= 1)).all() and (table["relative_error"] >= 0).all()


@pytest.mark.parametrize(("args", "message"), [
    (["--layer", "conv9", "--image", "builtin:chelsea"], "has no layer 'conv9'"),
    (["--layer", "conv1", "--image", "builtin:lena"], "unknown image 'builtin:lena'"),
    (["--layer", "conv1", "--image", "builtin:chelsea", "--steps", "0"], "Invalid value for '--steps'"),
])
def test_invert_bad_input_is_one_line_and_leaves_nothing(tmp_path, args, message) -> None:
    out = tmp_path / "inv"
    result = CliRunner().invoke(main, ["invert", "--model", "probecnn", *args, "--size", "32", "--out", str(out)])
    assert result.exit_code != 0 and message in result.output, result.output
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_layer_without_detectors_gets_an_empty_result_that_says_so(dissected, tmp_path) -> None:
    dataset, dissection = dissected
    empty = tmp_path / "conv4"
    shutil.copytree(dissection, empty)
    tally = pd.read_csv(empty / "tally.csv", keep_default_na=False)
    for column in [c for c in tally.columns if c == "score" or c.endswith("-iou")]:
        tally[column] = 0.0  # no unit beats the IoU threshold
    tally.to_csv(empty / "tally.csv", index=False)
    out = tmp_path / "vis"
    result = invoke("visualize", "--model", "probecnn", "--dissection", str(empty), "--top-images", "2",
                    "--dataset", str(dataset), *FAST, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "meta.json").read_text())["units"] == []
    assert np.load(out / "images.npz")["lucid"].shape == (0, 1, 16, 16, 3) and pd.read_csv(out / "units.csv").empty
    site = build_site([empty, out], dataset, tmp_path / "site", workers=1)
    model = slugify(json.loads((empty / "meta.json").read_text())["model"])
    assert "found no detector" in (site / model / "conv4" / "index.html").read_text()


def test_a_dissection_of_other_weights_or_a_wrong_dataset_is_refused_before_any_step(dissected, tmp_path) -> None:
    dataset, dissection = dissected
    other = tmp_path / "other.pt"
    torch.save(load_model("probecnn").module.state_dict(), other)
    state = torch.load(other)
    state["fc.bias"] += 1.0
    torch.save(state, other)
    out = tmp_path / "vis"
    result = CliRunner().invoke(main, ["visualize", "--model", f"file:{other}", "--arch", "probecnn", "--dissection",
                                       str(dissection), *FAST, "--out", str(out)])
    assert result.exit_code != 0 and "was computed with other weights than --model" in result.output, result.output
    result = CliRunner().invoke(main, ["visualize", "--model", "probecnn", "--dissection", str(dissection),
                                       "--top-images", "1", "--dataset", str(tmp_path), *FAST, "--out", str(out)])
    assert result.exit_code != 0 and "no index.csv" in result.output and not out.exists(), result.output
