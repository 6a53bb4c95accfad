"""The permutation null: brute-force null tallies, permutations within image kind, a planted detector that
survives and a chance detector that does not, shards that add up exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from test_dissect import IMAGE, LABEL, LABELS, DyadicNet, _read, _settings, make_dataset, reference_activations
from test_tally import tally_reference
from unitscope.broden.reader import BrodenDataset
from unitscope.broden.writer import BrodenWriter
from unitscope.cli import main
from unitscope.dissect import dissect, merge, run_tally_stage, run_topk_stage
from unitscope.dissect.null import NULL_ALPHA, image_kinds, permutations
from unitscope.settings import Shard


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("broden") / "ds")


def test_permutations_stay_within_image_kind(dataset) -> None:
    kinds = image_kinds(dataset, len(dataset))
    annotated = [tuple(dataset.index.loc[i, c] != "" for c in dataset.categories) for i in range(len(dataset))]
    for i in range(len(dataset)):
        for j in range(len(dataset)):
            assert (kinds[i] == kinds[j]) == (annotated[i] == annotated[j])
    assert len(set(kinds)) > 2
    perms = permutations(kinds, 5, seed=3)
    assert perms.shape == (5, len(dataset))
    for row in perms:
        assert sorted(row) == list(range(len(dataset)))  # each image's labels are used once
        np.testing.assert_array_equal(kinds[row], kinds)
    assert len({tuple(row) for row in perms}) == 5
    np.testing.assert_array_equal(permutations(kinds, 5, seed=3), perms)


def test_null_tallies_match_brute_force(dataset, tmp_path) -> None:
    """null.csv's levels are the 1 − 0.01/L quantile of IoUs tallied by the reference with permuted labels."""
    model, permutation_count = DyadicNet(), 4
    dissect(dataset, model, ["mixed"], tmp_path / "out", _settings(null_permutations=permutation_count, null_seed=7))
    acts = reference_activations(dataset, model)["mixed"]
    thresholds = _read(tmp_path / "out" / "mixed", "thresholds.csv")["threshold"].to_numpy().astype(np.float32)
    segs = [dataset.segmentation(i) for i in range(len(dataset))]
    layers = np.zeros((len(segs), max(len(s.layers) for s in segs), *dataset.label_size), np.int64)
    image_labels = np.zeros((len(segs), max(len(s.image_labels) for s in segs)), np.int64)
    for i, s in enumerate(segs):
        layers[i, : len(s.layers)] = s.layers
        image_labels[i, : len(s.image_labels)] = s.image_labels
    primary = np.asarray(dataset.primary)
    ious = []
    for row in permutations(image_kinds(dataset, len(dataset)), permutation_count, seed=7):
        inter, truth, act_cat = tally_reference(acts, thresholds, layers[row], image_labels[row], primary,
                                                len(dataset.categories), "image")
        union = act_cat[:, np.clip(primary, 0, None)] + truth[None] - inter
        ious.append(np.where(union > 0, inter / np.maximum(union, 1), 0.0))
    ious = np.stack(ious)
    null = _read(tmp_path / "out" / "mixed", "null.csv").set_index("number")
    counted = np.flatnonzero(primary >= 0)
    assert null.index.tolist() == counted.tolist()
    quantile = 1 - NULL_ALPHA / len(counted)
    expected = np.quantile(ious.reshape(-1, ious.shape[-1]), quantile, axis=0)
    np.testing.assert_allclose(null["level"].to_numpy(), expected[counted], rtol=1e-12)
    np.testing.assert_allclose(null["max"].to_numpy(), ious.max(axis=(0, 1))[counted], rtol=1e-12)
    np.testing.assert_allclose(null["mean"].to_numpy(), ious.mean(axis=(0, 1))[counted], rtol=1e-12)
    assert (null["level"] > 0).sum() > 3
    summary = json.loads((tmp_path / "out" / "mixed" / "summary.json").read_text())
    chance = (ious.max(axis=2) > 0.04).sum(axis=1)
    assert summary["significant"]["chance_detectors"]["per_permutation"] == chance.tolist()
    passed = []  # each permutation's units against the levels of the other three
    for r in range(permutation_count):
        levels = np.quantile(np.delete(ious, r, 0).reshape(-1, ious.shape[-1]), quantile, axis=0)
        passed.append(sum(1 for u in range(ious.shape[1])
                          if ious[r, u].max() > max(0.04, levels[ious[r, u].argmax()])))
    assert summary["significant"]["chance_significant"]["per_permutation"] == passed
    meta = json.loads((tmp_path / "out" / "mixed" / "meta.json").read_text())
    assert meta["null"] == {"permutations": permutation_count, "seed": 7, "alpha": NULL_ALPHA, "quantile": quantile}


class RedGreenNet(nn.Module):
    """Unit 0 fires on red (painted where cars are), unit 1 on blue (painted at random, unrelated to labels)."""

    def __init__(self) -> None:
        super().__init__()
        self.units = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.avg_pool2d(x, IMAGE // LABEL)  # maps at label resolution
        return self.units((pooled[:, [0, 2]] - pooled[:, 1:2]).clamp(min=0))


def test_planted_detector_survives_and_a_chance_detector_does_not(tmp_path) -> None:
    """A unit painted onto cars beats the car null; a unit firing on random squares overlaps cars often enough to
    pass IoU 0.04, but no more than other images' cars do: it is a raw detector, not a significant one."""
    rng = np.random.default_rng(5)
    with BrodenWriter(tmp_path / "ds", LABELS, image_size=IMAGE, label_size=LABEL) as writer:
        for i in range(40):
            car = np.zeros((LABEL, LABEL), np.int64)
            y, x = rng.integers(0, LABEL - 8, size=2)
            car[y : y + 8, x : x + 8] = 3
            image = np.full((IMAGE, IMAGE, 3), 60, np.uint8)
            image[np.kron(car, np.ones((2, 2), np.int64)) == 3] = (220, 60, 60)
            gy, gx = rng.integers(0, LABEL - 8, size=2)
            square = np.zeros((IMAGE, IMAGE), bool)
            square[2 * gy : 2 * gy + 16, 2 * gx : 2 * gx + 16] = True
            image[square, 2] = 220
            writer.add_image("src", f"p{i}", image, {"object": [car]}, {})
    out = tmp_path / "out"
    dissect(BrodenDataset(tmp_path / "ds"), RedGreenNet(), ["units"], out,
            _settings(quantile=0.25, null_permutations=8, batch_size=8))
    tally = _read(out / "units", "tally.csv").set_index("unit")
    null = _read(out / "units", "null.csv").set_index("label")
    assert tally.loc[1, "label"] == "car" and tally.loc[1, "score"] > 0.5 > null.loc["car", "level"]
    assert tally.loc[2, "label"] == "car" and 0.04 < tally.loc[2, "score"] < null.loc["car", "level"]
    summary = json.loads((out / "units" / "summary.json").read_text())
    assert summary["detectors"] == 2
    assert summary["significant"]["detectors"] == 1
    assert summary["significant"]["unique_top_label"]["per_category"]["object"] == 1
    # `unitscope summarize` finds null.csv beside the tally and counts the same significant detectors.
    printed = CliRunner().invoke(main, ["summarize", str(out / "units" / "tally.csv"), "--json"])
    assert printed.exit_code == 0, printed.output
    recounted = json.loads(printed.output)["significant"]
    assert {k: v for k, v in summary["significant"].items() if not k.startswith("chance")} == recounted


def test_sharded_null_equals_unsharded(dataset, tmp_path) -> None:
    model, settings, layers = DyadicNet(), _settings(null_permutations=3), ["mixed", "coarse"]
    dissect(dataset, model, layers, tmp_path / "whole", settings)
    for i in range(2):
        run_topk_stage(dataset, model, layers, tmp_path / f"topk{i}", settings, Shard(i, 2))
    merge([tmp_path / "topk0", tmp_path / "topk1"], tmp_path / "thresholds")
    for i in range(2):
        run_tally_stage(dataset, model, layers, tmp_path / f"tally{i}", settings, Shard(i, 2), tmp_path / "thresholds")
    merge([tmp_path / "tally0", tmp_path / "tally1"], tmp_path / "merged")
    for layer in layers:
        for name in ("null.csv", "summary.json", "tally.csv"):
            assert (tmp_path / "merged" / layer / name).read_bytes() == (tmp_path / "whole" / layer / name).read_bytes()
        assert "significant" in json.loads((tmp_path / "whole" / layer / "summary.json").read_text())
    pd.testing.assert_frame_equal(_read(tmp_path / "whole" / "mixed", "null.csv"),
                                  _read(tmp_path / "merged" / "mixed", "null.csv"))


def test_summarize_refuses_a_null_of_another_dissection(tmp_path) -> None:
    tally = tmp_path / "tally.csv"
    tally.write_text("unit,category,label,score,object-label,object-truth,object-activation,object-intersect,object-iou\n"
                     "1,object,car,0.5,car,10,10,5,0.5\n")
    (tmp_path / "other.csv").write_text("number,label,category,level,max,mean\n4,tree,object,0.1,0.2,0.01\n")
    result = CliRunner().invoke(main, ["summarize", str(tally), "--null", str(tmp_path / "other.csv")])
    assert result.exit_code == 2 and "no null level for label 'car'" in result.output
    (tmp_path / "null.csv").write_text("number,label,category,level,max,mean\n3,car,object,0.6,0.7,0.01\n")
    found = CliRunner().invoke(main, ["summarize", str(tally), "--json"])  # null.csv beside the tally
    assert json.loads(found.output)["significant"]["detectors"] == 0  # 0.5 does not beat the level 0.6
