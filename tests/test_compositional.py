"""Compositional explanations against the straightforward dense evaluation, on planted units, and at the edges."""

from __future__ import annotations

import json
from html import escape

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from compositional_reference import beam_search, concept_masks, presence
from test_dissect import IMAGE, LABEL, LABELS, DyadicNet, _read, _settings, make_dataset, reference_activations
from test_report import unit_links
from test_tally import bilinear_reference
from unitscope.broden.reader import BrodenDataset
from unitscope.broden.writer import BrodenWriter
from unitscope.cli import main
from unitscope.compositional.formulas import Formula
from unitscope.compositional.run import FORMULAS_COLUMNS, compositional_layer
from unitscope.dissect import dissect
from unitscope.models import LoadedModel
from unitscope.settings import CompositionalSettings


def _loaded(module: nn.Module) -> LoadedModel:
    return LoadedModel(module=module, spec=f"python:{type(module).__name__}", name=type(module).__name__,
                       default_normalize="none")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("broden") / "ds")


@pytest.fixture(scope="module")
def dissected(dataset, tmp_path_factory):
    """DyadicNet's layer ``mixed`` dissected with each presence rule."""
    out = {}
    for rule in ("image", "mask"):
        root = tmp_path_factory.mktemp(f"dissect-{rule}")
        dissect(dataset, DyadicNet(), ["mixed"], root, _settings(presence=rule))
        out[rule] = root / "mixed"
    return out


@pytest.mark.parametrize("union", ["dissection", "plain"])
@pytest.mark.parametrize("rule", ["image", "mask"])
def test_formulas_equal_the_dense_beam_search(dataset, dissected, tmp_path, rule, union) -> None:
    """Every unit's best formula of each length, its IoU and its integer counts equal a beam search that evaluates
    every candidate on dense masks of the whole dataset (exact dyadic activations: masks agree pixel for pixel)."""
    written = compositional_layer(dataset, _loaded(DyadicNet()), dissected[rule], tmp_path / "out",
                                  CompositionalSettings(union=union), device="cpu")
    formulas = _read(written, "formulas.csv")
    assert formulas.columns.tolist() == FORMULAS_COLUMNS
    acts = reference_activations(dataset, DyadicNet())["mixed"]
    thresholds = _read(dissected[rule], "thresholds.csv")["threshold"].to_numpy(np.float64).astype(np.float32)
    masks = np.stack([[bilinear_reference(acts[i, u].astype(np.float64), *dataset.label_size) > thresholds[u]
                       for i in range(len(acts))] for u in range(acts.shape[1])])
    concepts, image_level = concept_masks(dataset)
    present = presence(dataset.primary, len(dataset.categories), concepts, image_level, masks, rule)
    names = dataset.labels["name"].reindex(range(len(dataset.primary))).tolist()
    longer = 0
    for u in range(acts.shape[1]):
        expected = beam_search(masks[u], concepts, present[u], dataset.primary, union)
        rows = formulas[formulas["unit"] == u + 1].sort_values("max_length")
        for (_, row), best in zip(rows.iterrows(), expected, strict=True):
            (labels, operators), iou, hits, size = best
            assert row["formula"] == Formula(labels, operators).text(names)
            assert (row["intersect"], row["union"]) == (hits, size)
            assert row["iou"] == pytest.approx(iou, rel=1e-12)
        longer += len(expected[-1][0][0]) > 1
    assert longer >= 3  # the check covers real compositions, not only single labels
    meta = json.loads((written / "meta.json").read_text())
    assert meta["kind"] == "compositional" and meta["presence"] == rule and meta["settings"]["union"] == union


def test_one_label_formulas_have_the_dissection_iou(dataset, dissected, tmp_path) -> None:
    """With the dissection's union rule a single label scores the dissection's IoU wherever no pixel carries the
    label in two layers (a formula counts a pixel once; the dissection once per layer)."""
    written = compositional_layer(dataset, _loaded(DyadicNet()), dissected["image"], tmp_path / "out",
                                  CompositionalSettings(max_length=1, beam=20), device="cpu")
    ious = _read(dissected["image"], "ious.csv")
    doubled = set()
    for i in range(len(dataset)):
        layers = dataset.segmentation(i).layers
        for label in np.unique(layers):
            if label and ((layers == label).sum(0) > 1).any():
                doubled.add(int(label))
    assert doubled, "the fixture must contain labels found in two layers at once"
    best = ious[~ious["number"].isin(doubled)].sort_values(["unit", "iou"], ascending=[True, False]).groupby("unit")
    formulas = _read(written, "formulas.csv").set_index("unit")
    compared = 0
    for unit, group in best:
        top = group.iloc[0]
        if ious[(ious["unit"] == unit) & ious["number"].isin(doubled)]["iou"].max() >= top["iou"]:
            continue  # a doubled label is its best: not comparable
        assert formulas.loc[unit, "formula"] == top["label"] and formulas.loc[unit, "iou"] == top["iou"]
        compared += 1
    assert compared >= 2


class OrAndNotNet(nn.Module):
    """Unit 0 fires on any paint (cars with their wheels, trees), unit 1 on red paint (cars but not their blue
    wheels)."""

    def __init__(self) -> None:
        super().__init__()
        self.units = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.avg_pool2d(x, IMAGE // LABEL)  # maps at label resolution
        red, paint = (pooled[:, 0] - 0.5).clamp(min=0), (pooled.amax(dim=1) - 0.5).clamp(min=0)
        return self.units(torch.stack([paint, red], dim=1))


def test_planted_or_and_and_not_are_found(tmp_path) -> None:
    """Cars painted red with blue wheels, trees green: one unit is "car OR tree", the other "car AND NOT wheel"."""
    rng = np.random.default_rng(2)
    paint = {3: (230, 40, 40), 4: (40, 230, 40), 6: (40, 40, 230)}
    with BrodenWriter(tmp_path / "ds", LABELS, image_size=IMAGE, label_size=LABEL) as writer:
        for i in range(24):
            objects, parts = np.zeros((2, LABEL, LABEL), np.int64)
            for label, size in ((3, 6), (4, 5)):
                if rng.random() < 0.6:
                    y, x = rng.integers(0, LABEL - size, size=2)
                    objects[y:y + size, x:x + size] = label
            cars = np.argwhere(objects == 3)
            if len(cars):
                y, x = cars.max(0)
                parts[y - 1:y + 1, x - 5:x - 3] = 6  # a wheel at the car's bottom edge
                parts[objects != 3] = 0
            image = np.full((IMAGE, IMAGE, 3), 40, np.uint8)
            for label, colour in paint.items():
                where = (parts if label == 6 else objects) == label
                image[np.kron(where, np.ones((2, 2), bool))] = colour
            writer.add_image("src", f"p{i}", image, {"color": [np.ones((LABEL, LABEL), np.int64)], "object": [objects],
                                                      "part": [parts]}, {"scene": [8]})
    dataset = BrodenDataset(tmp_path / "ds")
    dissect(dataset, OrAndNotNet(), ["units"], tmp_path / "d", _settings(quantile=0.3))
    written = compositional_layer(dataset, _loaded(OrAndNotNet()), tmp_path / "d" / "units", tmp_path / "c",
                                  CompositionalSettings(max_length=2), device="cpu")
    formulas = _read(written, "formulas.csv").set_index(["unit", "max_length"])
    either = formulas.loc[(1, 2)]
    assert set(either["formula"].split(" OR ")) == {"car", "tree"} and either["iou"] > 0.95
    assert formulas.loc[(1, 1), "iou"] < 0.8  # no single label explains it
    assert formulas.loc[(2, 2), "formula"] == "car AND NOT wheel" and formulas.loc[(2, 2), "iou"] > 0.95
    assert formulas.loc[(2, 2), "iou"] > formulas.loc[(2, 1), "iou"]


def test_formula_text_and_checks() -> None:
    names = ["", "a", "b", "c"]
    assert Formula((1,)).text(names) == "a"
    assert Formula((1, 2), ("or",)).text(names) == "a OR b"
    assert Formula((1, 2, 3), ("or", "and not")).text(names) == "(a OR b) AND NOT c"
    assert Formula((1, 2, 3), ("or", "and not")).positive == (1, 2)
    with pytest.raises(ValueError, match="operators"):
        Formula((1, 2))
    with pytest.raises(ValueError, match="unknown operators"):
        Formula((1, 2), ("xor",))


def _cache(dataset, model: nn.Module, path):
    """An activation cache of ``model``'s layer ``mixed``."""
    from unitscope.activations import ActivationCacheWriter, extract_batches
    from unitscope.broden.loaders import image_loader

    with ActivationCacheWriter(path, image_start=0, image_stop=len(dataset), model="dyadic",
                               model_spec="python:DyadicNet", dataset={"index_sha256": dataset.index_sha256()}) as w:
        for indices, acts in extract_batches(model, ["mixed"], image_loader(dataset, range(len(dataset)), 4),
                                             "none", torch.device("cpu")):
            w.write(indices, acts)
    return path


def _cli(*args):
    return CliRunner().invoke(main, ["compositional", *map(str, args)])


@pytest.mark.parametrize("args, message", [
    (["--max-length", "0"], "--max-length"),
    (["--beam", "0"], "--beam"),
])
def test_cli_rejects_bad_settings(dataset, dissected, tmp_path, args, message) -> None:
    result = _cli("--dataset", dataset.root, "--model", "probecnn", "--dissection", dissected["image"],
                  "--out", tmp_path / "out", *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_library_refuses_a_formula_length_of_zero(dataset, dissected, tmp_path) -> None:
    with pytest.raises(ValueError, match="--max-length must be at least 1, got 0"):
        compositional_layer(dataset, _loaded(DyadicNet()), dissected["image"], tmp_path / "out",
                            CompositionalSettings(max_length=0), device="cpu")
    assert not (tmp_path / "out").exists()


def test_other_activations_and_datasets_are_refused(dataset, dissected, tmp_path) -> None:
    """Masks that are not the dissection's (another model here) or another dataset: one line, nothing written."""
    with pytest.raises(ValueError, match="computed with other weights than --model"):
        compositional_layer(dataset, _loaded(DyadicNet(seed=5)), dissected["image"], tmp_path / "out", device="cpu")
    other_model = [_cache(dataset, DyadicNet(seed=5), tmp_path / "cache")]  # a cache records no weights here
    with pytest.raises(ValueError, match="masks differ from those of --dissection"):
        compositional_layer(dataset, other_model, dissected["image"], tmp_path / "out", device="cpu")
    other = make_dataset(tmp_path / "other", images=10)
    with pytest.raises(ValueError, match="is not the dataset"):
        compositional_layer(other, _loaded(DyadicNet()), dissected["image"], tmp_path / "out", device="cpu")
    with pytest.raises(ValueError, match="not a dissection result directory"):
        compositional_layer(dataset, _loaded(DyadicNet()), tmp_path, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


def test_cli_from_activation_cache(dataset, dissected, tmp_path) -> None:
    """The command reads an activation cache as the dissection can, and writes the documented files."""
    cache = _cache(dataset, DyadicNet(), tmp_path / "cache")
    result = _cli("--dataset", dataset.root, "--activations", cache, "--dissection", dissected["image"],
                  "--max-length", 2, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["formulas.csv", "meta.json", "summary.json"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    formulas = pd.read_csv(tmp_path / "out" / "formulas.csv")
    assert summary["mean_iou"]["2"] == pytest.approx(formulas[formulas["max_length"] == 2]["iou"].mean())
    assert summary["mean_iou"]["2"] >= summary["mean_iou"]["1"]


def test_report_shows_formulas_on_unit_layer_and_model_pages(dataset, dissected, tmp_path) -> None:
    written = compositional_layer(dataset, _loaded(DyadicNet()), dissected["image"], tmp_path / "formulas",
                                  device="cpu")
    result = CliRunner().invoke(main, ["report", "--results", str(dissected["image"]), "--results", str(written),
                                       "--dataset", str(dataset.root), "--out", str(tmp_path / "site"),
                                       "--workers", "1"])
    assert result.exit_code == 0, result.output
    formulas = _read(written, "formulas.csv")
    model = json.loads((written / "meta.json").read_text())["model"]
    best = formulas[formulas["max_length"] == 3].set_index("unit")
    site = tmp_path / "site"
    unit_page = next(site.rglob("unit-0002.html")).read_text()
    assert "Compositional explanation" in unit_page and escape(best.loc[2, "formula"]) in unit_page
    layer_page = (next(site.rglob("unit-0002.html")).parent / "index.html").read_text()
    summary = json.loads((written / "summary.json").read_text())
    assert f"{summary['mean_iou']['3']:.3f}" in layer_page
    assert len(unit_links(site / "compositional" / f"{model}.html")) == len(best)
    model_page = (site / "compositional" / f"{model}.html").read_text()
    assert all(escape(text) in model_page for text in best["formula"])
    assert "Formulas" in (site / "index.html").read_text()


def test_co_extensive_labels_of_two_categories_score_by_their_own_category() -> None:
    """With the dissection's union, two labels covering the same pixels score differently when their categories are
    present on different images: the better one is the unit's label; with the plain union they tie (lower number)."""
    from scipy import sparse

    from unitscope.compositional.counts import CombinationCounts
    from unitscope.compositional.search import FormulaSearch
    from unitscope.tally import TallyCounts

    # label sets: {1, 2} (labels 1 and 2 always together), {3}, {}; label 1 in category 0, 2 in 1, 3 in 0
    members = sparse.csr_matrix(np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], bool))
    pixels = np.array([10, 30, 60])
    mask = sparse.csr_matrix(np.array([[8, 2, 5]]))  # the unit's mask pixels per set
    signatures = np.array([0b01, 0b11])  # images with category 0 only, with both
    activation = np.array([[5, 10]])  # the unit's mask pixels in those images
    counts = CombinationCounts(members, pixels, mask, signatures, activation, np.array([-1, 0, 1, 0]),
                               ["a", "b"], "image", TallyCounts(*(np.zeros((1, 4), np.int64),) * 2, np.zeros((1, 2)),
                                                                 np.zeros(1), 0))
    best = FormulaSearch(counts, "dissection", beam=5).explain(0, 1)[0]
    # label 1 (category 0): union 15 + 10 − 8; label 2 (category 1): union 10 + 10 − 8: label 2 scores better
    assert best.formula.labels == (2,) and (best.intersect, best.union) == (8, 12)
    assert FormulaSearch(counts, "plain", beam=5).explain(0, 1)[0].formula.labels == (1,)  # a tie: lower number
