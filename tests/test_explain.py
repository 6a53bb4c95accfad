"""Predictions split over a layer's units: exact on a linear head, Grad-CAM's weights elsewhere, in the report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from test_dissect import make_dataset
from test_report import unit_links
from unitscope.cli import main
from unitscope.dissect import DissectSettings, dissect
from unitscope.dissect.result import Dissected
from unitscope.explain.decomposition import decompose, linear_head
from unitscope.explain.run import IMAGES_COLUMNS, TOP_UNITS, UNITS_COLUMNS, explain_images
from unitscope.models import LoadedModel
from unitscope.saliency.images import load_images


class PoolNet(nn.Module):
    """conv → ReLU (the explained layer ``units``) → global average → linear: CAM's structure."""

    def __init__(self, units: int = 10, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, units, 5, stride=4)
        self.units = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(units, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.units(self.conv(x))).flatten(1))


class MlpHead(PoolNet):
    """The same with a hidden layer in the head: no linear classifier right after the global average."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.hidden(self.pool(self.units(self.conv(x))).flatten(1))))


def _loaded(module: nn.Module) -> LoadedModel:
    return LoadedModel(module=module, spec=f"python:{type(module).__name__}", name=type(module).__name__,
                       default_normalize="imagenet", classes=["a", "b", "c"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    dataset = make_dataset(root / "ds", images=20)
    dissections = {}
    for model in (PoolNet(), MlpHead()):
        out = root / type(model).__name__
        dissect(dataset, model, ["units"], out, DissectSettings(quantile=0.1, top_k=2, batch_size=4, iou_threshold=0.09))
        dissections[type(model).__name__] = out / "units"
    return dataset, dissections, load_images([str(dataset.root / "images" / "src")], 32, 6)


def test_the_logit_splits_exactly_over_the_units(setup, tmp_path) -> None:
    dataset, dissections, images = setup
    model = _loaded(PoolNet())
    written = explain_images(model, dissections["PoolNet"], images, tmp_path / "out", device="cpu", batch_size=3)
    table = pd.read_csv(written / "images.csv")
    assert table.columns.tolist() == IMAGES_COLUMNS and len(table) == len(images) >= 3
    with np.load(written / "maps.npz") as maps:
        contributions, cam = maps["contributions"], maps["cam"]
    pixels = torch.from_numpy(np.stack([image.pixels for image in images])).permute(0, 3, 1, 2)
    from unitscope.models.normalize import normalizer

    module = model.module
    with torch.no_grad():
        x = normalizer("imagenet")(pixels)
        acts = torch.relu(module.conv(x)).double()  # by hand, in float64
        logits = module(x).double()
    top = logits.argmax(1)
    weight = module.fc.weight.detach().double()[top]
    expected = weight * acts.mean(dim=(2, 3))
    np.testing.assert_allclose(contributions, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cam, torch.einsum("bk,bkhw->bhw", weight, acts).numpy(), rtol=1e-4, atol=1e-5)
    # the decomposition sums to the logit: bias + Σ contributions, up to float rounding
    np.testing.assert_allclose(table["logit"], logits.gather(1, top[:, None])[:, 0].numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(table["bias"] + table["units_sum"], table["logit"], rtol=0, atol=1e-5)
    assert (table["residual"].abs() < 1e-5).all() and (table["class"] == top.numpy()).all()
    detectors = Dissected.read(dissections["PoolNet"]).detectors
    assert 0 < len(detectors) < 10
    meta = json.loads((written / "meta.json").read_text())
    assert meta["weighting"] == "cam" and meta["head"] == "fc" and meta["interpretable_units"] == len(detectors)
    carried = contributions[:, [u - 1 for u in detectors]].sum(axis=1)
    np.testing.assert_allclose(table["interpretable_sum"], carried, rtol=0, atol=1e-5)
    np.testing.assert_allclose(table["interpretable_share"], carried / contributions.sum(axis=1), rtol=1e-4)
    units = pd.read_csv(written / "units.csv", keep_default_na=False)
    assert units.columns.tolist() == UNITS_COLUMNS and len(units) == TOP_UNITS * len(images)
    first = units[units["image"] == images[0].name]
    assert first["unit"].tolist() == (np.argsort(-contributions[0], kind="stable")[:TOP_UNITS] + 1).tolist()
    assert (units["interpretable"] == units["unit"].isin(detectors)).all()


def test_grad_cam_weights_agree_with_cam_on_a_linear_head(setup) -> None:
    _, _, images = setup
    model = PoolNet()
    from unitscope.models.normalize import normalizer

    x = normalizer("imagenet")(torch.from_numpy(np.stack([image.pixels for image in images[:4]])).permute(0, 3, 1, 2))
    head = linear_head(model, "units", x[:1])
    assert head is not None and head.name == "fc"
    exact, gradient = decompose(model, "units", x, head), decompose(model, "units", x, None)
    torch.testing.assert_close(gradient.contributions, exact.contributions, rtol=1e-4, atol=1e-6)
    assert torch.isnan(gradient.bias).all() and torch.equal(gradient.target, exact.target)


def test_a_model_without_a_linear_head_falls_back_or_is_refused(setup, tmp_path) -> None:
    dataset, dissections, images = setup
    model = _loaded(MlpHead())
    assert linear_head(model.module, "units", torch.zeros(1, 3, 32, 32)) is None
    with pytest.raises(ValueError, match="--weights cam: python:MlpHead has no linear classifier right after"):
        explain_images(model, dissections["MlpHead"], images, tmp_path / "cam", "cam", device="cpu")
    assert not (tmp_path / "cam").exists()
    written = explain_images(model, dissections["MlpHead"], images, tmp_path / "auto", device="cpu")
    assert json.loads((written / "meta.json").read_text())["weighting"] == "grad-cam"
    assert pd.read_csv(written / "images.csv")["residual"].isna().all()  # no exact split to check


def test_cli_refuses_other_weights_and_renders_the_page(setup, tmp_path) -> None:
    dataset, dissections, images = setup
    runner = CliRunner()
    refused = runner.invoke(main, ["explain", "--model", "probecnn", "--dissection", str(dissections["PoolNet"]),
                                   "--image", "builtin:chelsea", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 1 and "computed with other weights" in refused.output
    assert not (tmp_path / "x").exists()
    import dataclasses

    images = [dataclasses.replace(images[0], name="000016"), *images[1:]]  # a probe scene's name reads as a number
    written = explain_images(_loaded(PoolNet()), dissections["PoolNet"], images, tmp_path / "out", device="cpu")
    result = runner.invoke(main, ["report", "--results", str(dissections["PoolNet"].parent), "--results",
                                  str(written), "--dataset", str(dataset.root), "--out", str(tmp_path / "site"),
                                  "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert unit_links(tmp_path / "site" / "explain" / "PoolNet.html")
    page = (tmp_path / "site" / "explain" / "PoolNet.html").read_text()
    assert all(image.name in page for image in images) and "= bias" in page
    assert (tmp_path / "site" / "explain" / "PoolNet" / f"{images[0].name}-cam.webp").is_file()
    first = pd.read_csv(written / "units.csv").iloc[0]
    unit_page = (tmp_path / "site" / "PoolNet" / "units" / f"unit-{first['unit']:04d}.html").read_text()
    assert "In explained predictions" in unit_page


def test_a_target_out_of_range_and_a_rotated_dissection_are_refused(setup, tmp_path) -> None:
    dataset, dissections, images = setup
    with pytest.raises(ValueError, match="--target 7 is out of range: the model has 3 classes"):
        explain_images(_loaded(PoolNet()), dissections["PoolNet"], images, tmp_path / "out", target=7, device="cpu")
    written = explain_images(_loaded(PoolNet()), dissections["PoolNet"], images, tmp_path / "one", target=1,
                             device="cpu")
    assert (pd.read_csv(written / "images.csv")["class"] == 1).all()
    rotated = tmp_path / "rotated"
    from unitscope.dissect import Rotation

    dissect(dataset, PoolNet(), ["units"], rotated, DissectSettings(quantile=0.1, top_k=2, batch_size=4,
                                                                    rotation=Rotation(alpha=1.0, seed=1)))
    with pytest.raises(ValueError, match="computed in a rotated basis"):
        explain_images(_loaded(PoolNet()), rotated / "units", images, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()
