"""Unit ablation on a hand-built classifier whose every class has one unit as its only path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from unitscope.ablation.effects import class_accuracy, class_logits, masked_outputs
from unitscope.ablation.run import CLASSES_COLUMNS, UNITS_COLUMNS, ablate_layer
from unitscope.broden.reader import BrodenDataset
from unitscope.broden.writer import BrodenWriter
from unitscope.cli import main
from unitscope.models import LoadedModel

from test_report import unit_links

SCENES = ["beach-s", "kitchen-s", "forest-s"]
COLOURS = [(220, 40, 40), (40, 220, 40), (40, 40, 220)]


class ChannelNet(nn.Module):
    """Unit k is the mean of colour channel k; class k's logit is 10 × unit k − 5: each class's only path (an extra
    class, with no image in the dataset, has the constant logit −10)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.units = nn.Identity()
        self.fc = nn.Linear(3, classes)
        with torch.no_grad():
            self.fc.weight.copy_(10 * torch.eye(classes, 3))
            self.fc.bias.copy_(torch.tensor([-5.0] * 3 + [-10.0] * (classes - 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.units(x.mean(dim=(2, 3))))


def _model(extra: bool = False) -> LoadedModel:
    return LoadedModel(module=ChannelNet(4 if extra else 3), spec="python:ChannelNet", name="ChannelNet",
                       default_normalize="none", classes=SCENES + ["harbor-s"] * extra)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes") / "ds"
    rng = np.random.default_rng(0)
    labels = {1: "red-c", **{i + 2: name for i, name in enumerate(SCENES)}}
    with BrodenWriter(root, labels, image_size=16, label_size=8) as writer:
        for i in range(60):
            k = i % 3
            image = np.clip(np.array(COLOURS[k]) + rng.integers(-20, 21, size=3), 0, 255)
            image = np.broadcast_to(image.astype(np.uint8), (16, 16, 3)).copy()
            writer.add_image("s", f"img{i:02d}", image, {"color": [np.ones((8, 8), np.int64)]}, {"scene": [k + 2]})
    return BrodenDataset(root)


def _val(dataset: BrodenDataset) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [i for i in range(len(dataset)) if dataset.index["split"][i] == "val"]
    images = torch.stack([torch.from_numpy(dataset.image(i)).permute(2, 0, 1) for i in rows])
    targets = torch.tensor([SCENES.index(dataset.labels["name"][dataset.segmentation(i).image_labels[0]])
                            for i in rows])
    return images, targets


def test_ablating_a_class_only_path_drops_it_to_chance_and_spares_the_others(dataset, tmp_path) -> None:
    written = ablate_layer(_model(), "units", dataset.root, tmp_path / "out", device="cpu", batch_size=7)
    units = pd.read_csv(written / "units.csv", keep_default_na=False)
    assert units.columns.tolist() == UNITS_COLUMNS and len(units) == 9
    images, targets = _val(dataset)
    assert torch.bincount(targets, minlength=3).min() >= 3  # every class has held-out images
    means = images.double().mean(dim=(2, 3)) / 255  # the units, by hand
    for k, scene in enumerate(SCENES):
        own = targets == k
        row = units[(units["unit"] == k + 1) & (units["class"] == scene)].iloc[0]
        assert row["accuracy"] == 1.0 and row["ablated_accuracy"] <= 1 / 3  # chance or below
        assert row["logit"] == pytest.approx(float((10 * means[own, k] - 5).mean()), abs=1e-5)
        assert row["ablated_logit"] == pytest.approx(-5.0, abs=1e-6)  # only the bias is left
        others = units[(units["unit"] == k + 1) & (units["class"] != scene)]
        assert (others["ablated_accuracy"] == 1.0).all()  # the other classes do not use this unit
    classes = pd.read_csv(written / "classes.csv", keep_default_na=False)
    assert classes.columns.tolist() == CLASSES_COLUMNS
    for k, scene in enumerate(SCENES):
        top = classes[(classes["class"] == scene) & (classes["n"] == 1)].iloc[0]
        assert top["units"] == str(k + 1) and top["removed_accuracy"] == 0.0 and top["kept_accuracy"] == 1.0
        assert top["removed_others_accuracy"] == 1.0 and top["kept_others_accuracy"] == 0.0
    assert sorted(set(classes["n"])) == [1, 2, 3]  # 1, 2, then every size from 4 up is all 3 units
    meta = json.loads((written / "meta.json").read_text())
    assert meta["kind"] == "ablation" and meta["classes"] == SCENES and meta["accuracy"] == 1.0


def test_masked_outputs_batch_several_masks_per_pass_exactly(dataset) -> None:
    """Masks sharing a forward pass give what one pass per mask gives; the per-class means are by hand."""
    images, targets = _val(dataset)
    model = ChannelNet()
    keep = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    together = masked_outputs(model, "units", images, keep, "none", torch.device("cpu"), batch_size=64)
    for a, mask in enumerate(keep):
        alone = masked_outputs(model, "units", images, mask[None], "none", torch.device("cpu"), batch_size=5)
        torch.testing.assert_close(together[a], alone[0], rtol=0, atol=1e-6)
    expected = model.fc(images.double().float().mean(dim=(2, 3)) / 255 * keep[2].float())
    torch.testing.assert_close(together[2], expected.detach(), rtol=0, atol=1e-5)
    accuracy, logits = class_accuracy(together, targets, 3), class_logits(together, targets, 3)
    assert accuracy[0].tolist() == [1.0, 1.0, 1.0] and accuracy[3].tolist() == [1.0, 0.0, 0.0]  # ties: class 0
    assert logits[3].tolist() == [-5.0, -5.0, -5.0]


def test_bad_input_is_one_line_and_leaves_nothing(dataset, tmp_path) -> None:
    unnamed = LoadedModel(module=ChannelNet(), spec="python:ChannelNet", name="ChannelNet", default_normalize="none")
    with pytest.raises(ValueError, match="its weights name no classes"):
        ablate_layer(unnamed, "units", dataset.root, tmp_path / "out", device="cpu")
    other = LoadedModel(module=ChannelNet(), spec="python:ChannelNet", name="ChannelNet", default_normalize="none",
                        classes=["street-s", "beach-s", "harbor-s"])
    with pytest.raises(ValueError, match="is not one of the classes"):
        ablate_layer(other, "units", dataset.root, tmp_path / "out", device="cpu")
    with pytest.raises(ValueError, match="no index.csv"):
        ablate_layer(_model(), "units", tmp_path, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(main, ["ablate", "--model", "probecnn", "--layer", "conv4", "--dataset",
                                       str(dataset.root), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "name no classes" in result.output and not (tmp_path / "out").exists()


def test_report_shows_the_effects_with_the_dissection_labels(dataset, tmp_path) -> None:
    from unitscope.dissect import DissectSettings, dissect

    model = _model(extra=True)  # harbor-s: a class without images
    dissect(dataset, model, ["units"], tmp_path / "dissect", DissectSettings(normalize="none", top_k=2))
    written = ablate_layer(model, "units", dataset.root, tmp_path / "ablation", tmp_path / "dissect" / "units",
                           device="cpu")
    result = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "dissect"), "--results", str(written),
                                       "--dataset", str(dataset.root), "--out", str(tmp_path / "site"),
                                       "--workers", "1"])
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    unit_page = next(site.rglob("unit-0002.html")).read_text()
    assert "Removing this unit lowers kitchen-s by" in unit_page
    assert unit_links(site / "ablation" / "ChannelNet.html")  # the most important units link to their pages
    model_page = (site / "ablation" / "ChannelNet.html").read_text()
    assert all(scene in model_page for scene in SCENES) and "only top n kept" in model_page
    assert "No held-out image of this class" in model_page
    assert "Removing the 3 units that matter most" in (next(site.rglob("unit-0002.html")).parent / "index.html").read_text()


def test_a_rotated_dissection_is_refused(dataset, tmp_path) -> None:
    from unitscope.dissect import DissectSettings, Rotation, dissect

    model = _model()
    dissect(dataset, model, ["units"], tmp_path / "rotated",
            DissectSettings(normalize="none", top_k=2, rotation=Rotation(alpha=1.0, seed=1)))
    with pytest.raises(ValueError, match="computed in a rotated basis; ablation works on the model's own units"):
        ablate_layer(model, "units", dataset.root, tmp_path / "out", tmp_path / "rotated" / "units", device="cpu")
    assert not (tmp_path / "out").exists()
