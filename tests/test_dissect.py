"""The dissection engine end to end, against a brute-force reference written from the spec.

Activations of the test model are dyadic (exact in float32), and label maps are an integer multiple of
the maps' size, so every bilinear value is exact: reference and engine must agree on every integer.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from test_tally import tally_reference
from unitscope.broden.reader import BrodenDataset
from unitscope.broden.writer import BrodenWriter
from unitscope.cli import main
from unitscope.dissect import DissectError, DissectSettings, Rotation, dissect, merge, run_tally_stage, run_topk_stage
from unitscope.settings import Shard
from unitscope.probe.generate import generate
from unitscope.rotation import rotation_matrix

IMAGE, LABEL, POOL = 32, 16, 8  # maps 4×4, upsampled ×4 to 16×16
LABELS = {1: "red-c", 2: "blue-c", 3: "car", 4: "tree", 5: "wood", 6: "wheel", 7: "door", 8: "beach-s",
          9: "kitchen-s", 10: "dotted"}
RESULT_FILES = ("tally.csv", "thresholds.csv", "ious.csv", "top_images.csv", "summary.json", "meta.json")


class DyadicNet(nn.Module):
    """Random integer mixing of 8×8-average-pooled pixel values: dyadic activations, exact in float32."""

    def __init__(self, units: int = 6, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("mix", torch.randint(-2, 3, (units, 3), generator=generator).float())
        self.pool = nn.AvgPool2d(POOL)
        self.mixed = nn.Identity()
        self.coarse = nn.AvgPool2d(2)  # 2×2 maps: a second layer, upsampled ×8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = torch.floor(x * 255 + 0.5)  # with normalize="none": the uint8 values again
        mixed = self.mixed(torch.einsum("uc,bchw->buhw", self.mix, self.pool(pixels)))
        return self.coarse(torch.relu(mixed))


def reference_activations(dataset: BrodenDataset, model: DyadicNet) -> dict[str, np.ndarray]:
    """The model's layers recomputed in float64 numpy from the decoded images."""
    mix = model.mix.numpy().astype(np.float64)
    mixed = []
    height, width = dataset.image_size
    for i in range(len(dataset)):
        image = dataset.image(i).astype(np.float64)
        pooled = image.reshape(height // POOL, POOL, width // POOL, POOL, 3).mean(axis=(1, 3))
        mixed.append(np.einsum("uc,hwc->uhw", mix, pooled))
    mixed = np.stack(mixed)
    relu = np.maximum(mixed, 0)
    h, w = relu.shape[2:]
    coarse = relu.reshape(*relu.shape[:2], h // 2, 2, w // 2, 2).mean(axis=(3, 5))
    return {"mixed": mixed.astype(np.float32), "coarse": coarse.astype(np.float32)}


def _blobs(rng: np.random.Generator, choices: list[int], zero_fraction: float) -> np.ndarray:
    """A label map of 4×4 blocks of random labels."""
    coarse = rng.choice(choices, size=(LABEL // 4, LABEL // 4))
    coarse[rng.random(coarse.shape) < zero_fraction] = 0
    return np.kron(coarse, np.ones((4, 4), dtype=np.int64))


def make_dataset(root, images: int = 14, seed: int = 0):
    """A random Broden set: colour everywhere, objects, two part layers, materials, scenes and textures.

    "wood" (5) appears mostly as a material but also in object layers, so in an object layer it counts
    for its primary category, material. "tree" (4) is also used as a part once.
    """
    rng = np.random.default_rng(seed)
    with BrodenWriter(root, LABELS, image_size=IMAGE, label_size=LABEL) as writer:
        for i in range(images):
            image = rng.integers(0, 256, size=(IMAGE // 8, IMAGE // 8, 3)).astype(np.uint8)
            image = np.kron(image, np.ones((8, 8, 1), dtype=np.uint8))  # smooth: JPEG keeps it close
            layers = {"color": [_blobs(rng, [1, 2], 0.1)]}
            if i % 3 != 2:
                layers["object"] = [_blobs(rng, [3, 4, 5] if i % 4 == 0 else [3, 4], 0.4)]
                layers["part"] = [_blobs(rng, [6, 7], 0.6), _blobs(rng, [6, 7, 4] if i == 1 else [6, 7], 0.7)]
            if i % 2:
                layers["material"] = [_blobs(rng, [5], 0.3)]
            image_labels = {"scene": [8 if i % 2 else 9]} if i % 3 != 1 else {"texture": [10]}
            writer.add_image("src", f"img{i:02d}", image, layers, image_labels)
    return BrodenDataset(root)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("broden") / "ds")


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """The embedded probe set at 64 px: DyadicNet's maps are 8×8 and 4×4, label maps 32×32 (exact ×4, ×8)."""
    return BrodenDataset(generate(tmp_path_factory.mktemp("probe") / "ds", 8, size=64, seed=3, workers=1))


def _settings(**changes) -> DissectSettings:
    return DissectSettings(**{"quantile": 0.2, "normalize": "none", "batch_size": 4, "top_k": 3, **changes})


def _read(directory, name):
    return pd.read_csv(directory / name, keep_default_na=False)


@pytest.mark.parametrize("presence", ["image", "mask"])
@pytest.mark.parametrize("source", ["dataset", "probe"])
def test_dissection_matches_brute_force(source, request, tmp_path, presence) -> None:
    dataset = request.getfixturevalue(source)
    model = DyadicNet()
    out = tmp_path / "out"
    dissect(dataset, model, ["mixed", "coarse"], out, _settings(presence=presence))
    reference = reference_activations(dataset, model)
    primary = dataset.primary
    names = dataset.labels["name"].reindex(range(len(primary))).tolist()
    if source == "dataset":
        assert primary[5] == dataset.categories.index("material")  # "wood": found in object layers too
    for layer, acts in reference.items():
        units = acts.shape[1]
        per_unit = acts.transpose(1, 0, 2, 3).reshape(units, -1)
        thresholds = np.array([np.quantile(per_unit[u], 0.8) for u in range(units)], dtype=np.float32)
        written = _read(out / layer, "thresholds.csv")["threshold"].to_numpy(np.float64).astype(np.float32)
        np.testing.assert_array_equal(written, thresholds)

        segs = [dataset.segmentation(i) for i in range(len(dataset))]
        depth = max(s.layers.shape[0] for s in segs)
        layers = np.zeros((len(segs), depth, *dataset.label_size), np.int64)
        image_labels = np.zeros((len(segs), max(len(s.image_labels) for s in segs)), np.int64)
        for i, s in enumerate(segs):
            layers[i, : len(s.layers)] = s.layers
            image_labels[i, : len(s.image_labels)] = s.image_labels
        inter, truth, act_cat = tally_reference(acts, thresholds, layers, image_labels, primary,
                                                len(dataset.categories), presence)
        ious = _read(out / layer, "ious.csv")
        expected = []
        for u in range(units):
            for c in range(1, len(primary)):
                if primary[c] < 0 or inter[u, c] == 0:
                    continue
                union = act_cat[u, primary[c]] + truth[c] - inter[u, c]
                expected.append((u + 1, names[c], c, dataset.categories[primary[c]], inter[u, c] / union,
                                 inter[u, c], act_cat[u, primary[c]], truth[c]))
        expected = pd.DataFrame(expected, columns=ious.columns).sort_values(
            ["unit", "iou", "number"], ascending=[True, False, True]).reset_index(drop=True)
        assert len(expected) > 5
        pd.testing.assert_frame_equal(ious, expected, check_dtype=False)

        tally = _read(out / layer, "tally.csv").set_index("unit")
        for u in range(units):
            for k, category in enumerate(dataset.categories):
                assert tally.loc[u + 1, f"{category}-activation"] == act_cat[u, k]
        best = ious.sort_values(["unit", "iou", "number"], ascending=[True, False, True]).groupby("unit").first()
        for unit, row in best.iterrows():
            assert tally.loc[unit, "label"] == row["label"]
            assert tally.loc[unit, "score"] == pytest.approx(row["iou"], rel=0, abs=0)

        top = _read(out / layer, "top_images.csv")
        maxima = acts.max(axis=(2, 3))
        maps = np.load(out / layer / "top_maps.npy")
        assert maps.shape == (units, 3, *acts.shape[2:])
        for u in range(units):
            order = sorted(range(len(acts)), key=lambda i: (-maxima[i, u], i))[:3]
            rows = top[top["unit"] == u + 1]
            assert rows["image_index"].tolist() == order
            assert rows["max_activation"].tolist() == maxima[order, u].tolist()
            np.testing.assert_array_equal(maps[u], acts[order, u])
        assert rows["image"].tolist() == [dataset.index["image"][i] for i in order]

        meta = json.loads((out / layer / "meta.json").read_text())
        assert meta["units"] == units and meta["presence"] == presence and meta["map_size"] == list(acts.shape[2:])
        assert meta["quantile_level"] == 0.8 and meta["dataset"]["images"] == len(dataset)
        summary = json.loads((out / layer / "summary.json").read_text())
        assert summary["units"] == units
    assert sorted(p.name for p in out.iterdir()) == ["coarse", "mixed"]  # the temporary cache is gone


class PlantedNet(nn.Module):
    """Unit 0 fires where the red channel is high, unit 1 where blue is high, unit 2 is silent noise."""

    def __init__(self) -> None:
        super().__init__()
        self.units = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.avg_pool2d(x, IMAGE // LABEL)  # maps at label resolution
        red, blue = pooled[:, 0] - 0.5, pooled[:, 2] - 0.5
        return self.units(torch.stack([red.clamp(min=0), blue.clamp(min=0), pooled[:, 1] * 0], dim=1))


def test_planted_detectors_are_found(tmp_path) -> None:
    """Cars are painted red, beaches blue: the engine must label the planted units with IoU near 1."""
    rng = np.random.default_rng(1)
    with BrodenWriter(tmp_path / "ds", LABELS, image_size=IMAGE, label_size=LABEL) as writer:
        for i in range(16):
            car = np.zeros((LABEL, LABEL), np.int64)
            if i % 2:
                y, x = rng.integers(0, LABEL - 6, size=2)
                car[y : y + 6, x : x + 6] = 3
            image = np.full((IMAGE, IMAGE, 3), 40, np.uint8)
            image[np.kron(car, np.ones((2, 2), np.int64)) == 3] = (230, 40, 40)
            beach = i % 4 == 0
            if beach:
                image[..., 2] = 230
            colour = np.ones((LABEL, LABEL), np.int64)
            scene = {"scene": [8 if beach else 9]}
            writer.add_image("src", f"p{i}", image, {"color": [colour], "object": [car]}, scene)
    out = tmp_path / "out"
    dissect(BrodenDataset(tmp_path / "ds"), PlantedNet(), ["units"], out, _settings(quantile=0.3))
    tally = _read(out / "units", "tally.csv").set_index("unit")
    assert tally.loc[1, "label"] == "car" and tally.loc[1, "category"] == "object" and tally.loc[1, "score"] > 0.9
    assert tally.loc[2, "label"] == "beach-s" and tally.loc[2, "score"] > 0.9
    assert tally.loc[3, "score"] == 0 and tally.loc[3, "label"] == ""
    summary = json.loads((out / "units" / "summary.json").read_text())
    assert summary["detectors"] == 2


def test_results_do_not_depend_on_batch_size_or_loader_workers(dataset, tmp_path) -> None:
    outs = []
    for batch_size, workers in ((1, 0), (5, 2)):
        outs.append(tmp_path / f"b{batch_size}-w{workers}")
        dissect(dataset, DyadicNet(), ["mixed"], outs[-1], _settings(batch_size=batch_size, workers=workers))
    for name in RESULT_FILES:
        assert (outs[0] / "mixed" / name).read_bytes() == (outs[1] / "mixed" / name).read_bytes(), name


def _cli(*args: str) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_run_equals_unsharded(dataset, tmp_path, shards) -> None:
    """Two shards through the command line, three through the library: both byte-identical to one run."""
    model, settings, layers = DyadicNet(), _settings(), ["mixed", "coarse"]
    dissect(dataset, model, layers, tmp_path / "whole", settings)
    if shards == 2:
        common = ["dissect", "--dataset", dataset.root, "--model", "python:test_dissect:DyadicNet", "--normalize",
                  "none", "--layer", "mixed", "--layer", "coarse", "--quantile", "0.2", "--top-k", "3",
                  "--batch-size", "4", "--device", "cpu"]
        for i in range(shards):
            _cli(*common, "--shard", f"{i}/{shards}", "--stage", "topk", "--out", tmp_path / f"topk{i}")
        _cli("merge", tmp_path / "topk1", tmp_path / "topk0", "--out", tmp_path / "thresholds")
        for i in range(shards):
            _cli(*common, "--shard", f"{i}/{shards}", "--stage", "tally", "--thresholds", tmp_path / "thresholds",
                 "--out", tmp_path / f"tally{i}")
        _cli("merge", tmp_path / "tally0", tmp_path / "tally1", "--out", tmp_path / "merged")
    else:
        for i in range(shards):
            run_topk_stage(dataset, model, layers, tmp_path / f"topk{i}", settings, Shard(i, shards))
        merge([tmp_path / f"topk{i}" for i in reversed(range(shards))], tmp_path / "thresholds")
        for i in range(shards):
            run_tally_stage(dataset, model, layers, tmp_path / f"tally{i}", settings, Shard(i, shards),
                            tmp_path / "thresholds")
        merge([tmp_path / f"tally{i}" for i in range(shards)], tmp_path / "merged")
    for layer in layers:
        for name in RESULT_FILES:
            whole = (tmp_path / "whole" / layer / name).read_bytes()
            if name == "meta.json":  # the display name of a python: spec differs from an nn.Module's
                whole, merged = (json.loads((tmp_path / d / layer / name).read_text()) for d in ("whole", "merged"))
                assert {**merged, "model": "", "model_spec": ""} == {**whole, "model": "", "model_spec": ""}
                continue
            assert (tmp_path / "merged" / layer / name).read_bytes() == whole, (layer, name)
        np.testing.assert_array_equal(np.load(tmp_path / "merged" / layer / "top_maps.npy"),
                                      np.load(tmp_path / "whole" / layer / "top_maps.npy"))
    with pytest.raises(DissectError, match="missing"):
        merge([tmp_path / f"tally{i}" for i in range(shards - 1)], tmp_path / "incomplete")
    assert not (tmp_path / "incomplete").exists()


def test_cli_dissect_from_activation_cache_and_rotation_identity(dataset, tmp_path) -> None:
    """`--activations` reads an extracted cache; α = 0 without un-permuting is the identity, with it a
    relabelling of units (NetDissect applies the un-permutation P to every power, spec §3)."""
    from unitscope.activations import ActivationCacheWriter, extract_batches
    from unitscope.broden.loaders import image_loader

    model = DyadicNet()
    with ActivationCacheWriter(tmp_path / "cache", image_start=0, image_stop=len(dataset), model="dyadic",
                               model_spec="python:DyadicNet", dataset={"index_sha256": dataset.index_sha256()}) as w:
        for indices, acts in extract_batches(model, ["mixed"], image_loader(dataset, range(len(dataset)), 4), "none",
                                             torch.device("cpu")):
            w.write(indices, acts)
    dissect(dataset, model, ["mixed"], tmp_path / "model", _settings())
    runner = CliRunner()
    base = ["dissect", "--dataset", str(dataset.root), "--activations", str(tmp_path / "cache"), "--layer", "mixed",
            "--quantile", "0.2", "--top-k", "3", "--device", "cpu"]
    result = runner.invoke(main, [*base, "--out", str(tmp_path / "cache_out")])
    assert result.exit_code == 0, result.output
    first_rows = runner.invoke(main, [*base, "--max-images", "9", "--out", str(tmp_path / "cache9")])
    assert first_rows.exit_code == 0, first_rows.output  # the cache holds more rows than dissected
    dissect(dataset, model, ["mixed"], tmp_path / "model9", _settings(max_images=9))
    for name in ("tally.csv", "thresholds.csv", "top_images.csv"):
        assert (tmp_path / "cache9" / "mixed" / name).read_bytes() == (tmp_path / "model9" / "mixed" / name).read_bytes()
    rotation = ["--rotation-alpha", "0", "--rotation-seed", "1"]
    rotated = runner.invoke(main, [*base, "--out", str(tmp_path / "rot0"), *rotation, "--no-unpermute"])
    assert rotated.exit_code == 0, rotated.output
    permuted = runner.invoke(main, [*base, "--out", str(tmp_path / "perm"), *rotation])
    assert permuted.exit_code == 0, permuted.output
    for name in ("tally.csv", "thresholds.csv", "ious.csv", "top_images.csv", "summary.json"):
        model_bytes = (tmp_path / "model" / "mixed" / name).read_bytes()
        assert (tmp_path / "cache_out" / "mixed" / name).read_bytes() == model_bytes, name
        assert (tmp_path / "rot0" / "mixed" / name).read_bytes() == model_bytes, name
    meta = json.loads((tmp_path / "perm" / "mixed" / "meta.json").read_text())
    assert meta["rotation"] == {"alpha": 0.0, "seed": 1, "unpermute": True}
    source = rotation_matrix(6, 0.0, 1).argmax(axis=1)  # rotated unit j is original unit source[j]
    assert sorted(source) == list(range(6))
    thresholds = _read(tmp_path / "model" / "mixed", "thresholds.csv")["threshold"].to_numpy()
    np.testing.assert_array_equal(_read(tmp_path / "perm" / "mixed", "thresholds.csv")["threshold"], thresholds[source])


def test_cache_guards(dataset, tmp_path) -> None:
    """A cache is only read with the dataset, categories and rows it was extracted from."""
    runner = CliRunner()
    extract = ["extract", "--dataset", str(dataset.root), "--model", "python:test_dissect:DyadicNet", "--normalize",
               "none", "--layer", "mixed", "--batch-size", "4", "--device", "cpu"]
    assert runner.invoke(main, [*extract, "--out", str(tmp_path / "cache")]).exit_code == 0
    assert runner.invoke(main, [*extract, "--max-images", "5", "--out", str(tmp_path / "cache5")]).exit_code == 0
    other = make_dataset(tmp_path / "other", images=16)  # another index.csv

    def dissect_cli(data, cache, *extra):
        return runner.invoke(main, ["dissect", "--dataset", str(data), "--activations", str(cache), "--layer",
                                    "mixed", "--out", str(tmp_path / "out"), *extra])

    cases = [
        (dissect_cli(other.root, tmp_path / "cache"), "was extracted from another dataset (index.csv checksum differs)"),
        (dissect_cli(dataset.root, tmp_path / "cache", "--categories", "object"), "was extracted with --categories"),
        (dissect_cli(dataset.root, tmp_path / "cache5"), "the activations cover 5 of the 14 images"),
        (dissect_cli(dataset.root, tmp_path / "cache", "--layer", "coarse"), "has no layer 'coarse'"),
    ]
    for result, message in cases:
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_netdissect_level_end_to_end(dataset, tmp_path) -> None:
    """`--netdissect-level`: every unit's threshold is numpy's quantile of all its activations at NetDissect's
    effective level 0.994995, recorded in meta.json."""
    from unitscope.thresholds import NETDISSECT_LEVEL

    result = CliRunner().invoke(main, ["dissect", "--dataset", str(dataset.root), "--model",
                                       "python:test_dissect:DyadicNet", "--normalize", "none", "--layer", "mixed",
                                       "--netdissect-level", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    acts = reference_activations(dataset, DyadicNet())["mixed"]
    per_unit = acts.transpose(1, 0, 2, 3).reshape(acts.shape[1], -1)
    expected = np.array([np.quantile(row, NETDISSECT_LEVEL) for row in per_unit], dtype=np.float32)
    got = _read(tmp_path / "out" / "mixed", "thresholds.csv")["threshold"].to_numpy(np.float32)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(expected, np.array([np.quantile(row, 0.995) for row in per_unit], dtype=np.float32))
    meta = json.loads((tmp_path / "out" / "mixed" / "meta.json").read_text())
    assert meta["quantile_level"] == NETDISSECT_LEVEL and meta["quantile"] == pytest.approx(1 - NETDISSECT_LEVEL)


@pytest.mark.parametrize("alpha", [0.3, 0.7])
def test_partial_rotation_equals_dissecting_a_model_whose_layer_is_rotated(dataset, tmp_path, alpha) -> None:
    """0 < α < 1 end to end: `--rotation-alpha α` gives the files of the unrotated dissection of a model whose
    layer output is multiplied by P·Q^α (a hooks.rotate edit on that layer)."""
    from unitscope.hooks import rotate

    model = DyadicNet()
    dissect(dataset, model, ["mixed"], tmp_path / "rotated", _settings(rotation=Rotation(alpha, 1)))
    matrix = torch.tensor(rotation_matrix(6, alpha, 1), dtype=torch.float32)
    edit = rotate(matrix)
    wrapped = DyadicNet()
    wrapped.mixed.register_forward_hook(lambda module, inputs, output: edit(output))
    dissect(dataset, wrapped, ["mixed"], tmp_path / "wrapped", _settings())
    for name in ("tally.csv", "thresholds.csv", "ious.csv", "top_images.csv", "summary.json", "top_maps.npy"):
        assert (tmp_path / "rotated" / "mixed" / name).read_bytes() == (tmp_path / "wrapped" / "mixed" / name).read_bytes(), name
    assert not np.allclose(matrix.numpy(), np.eye(6)) and not np.allclose(np.abs(matrix.numpy()), np.eye(6))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", "nope"], "no layer 'nope'"),
        (["--layer", "mixed", "--categories", "color,nonsense"], "nonsense"),
        (["--layer", "mixed", "--quantile", "0"], "--quantile"),
        (["--layer", "mixed", "--quantile", "1"], "--quantile"),
        (["--layer", "mixed", "--device", "cuda"], "CUDA"),
        (["--layer", "mixed", "--categories", "scene", "--max-images", "0"], "--max-images"),
        (["--layer", "mixed", "--categories", "part", "--shard", "2/2", "--stage", "topk"], "shard"),
    ],
)
def test_cli_rejects_bad_input_without_output(dataset, tmp_path, args, message) -> None:
    if "CUDA" == message and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["dissect", "--dataset", str(dataset.root), "--model", "python:test_dissect:DyadicNet",
               "--out", str(out), *args],
    )
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_cli_out_that_is_a_file_is_one_line(dataset, tmp_path) -> None:
    out = tmp_path / "results.txt"
    out.write_text("not a directory")
    result = CliRunner().invoke(main, ["dissect", "--dataset", str(dataset.root), "--model",
                                       "python:test_dissect:DyadicNet", "--layer", "mixed", "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output  # refused as the command line is parsed
    assert "Invalid value for '--out'" in result.output and "is a file" in result.output
    with pytest.raises(DissectError, match=f"--out {out} is a file; give a directory"):
        dissect(dataset, DyadicNet(), ["mixed"], out, _settings())
    assert out.read_text() == "not a directory"


def test_ctrl_c_exits_130_and_leaves_nothing(dataset, tmp_path, monkeypatch) -> None:
    import unitscope.dissect.run as engine

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "tally_pass", interrupted)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["dissect", "--dataset", str(dataset.root), "--model",
                                       "python:test_dissect:DyadicNet", "--layer", "mixed", "--out", str(out)])
    assert result.exit_code == 130 and "interrupted" in result.output
    assert not out.exists()


def test_empty_selection_is_refused(tmp_path) -> None:
    """A dataset whose rows have no data in the selected categories has nothing to dissect."""
    with BrodenWriter(tmp_path / "ds", LABELS, image_size=IMAGE, label_size=LABEL) as writer:
        writer.add_image("src", "a", np.zeros((IMAGE, IMAGE, 3), np.uint8), {}, {"scene": [8]})
    result = CliRunner().invoke(main, ["dissect", "--dataset", str(tmp_path / "ds"), "--model",
                                       "python:test_dissect:DyadicNet", "--layer", "mixed", "--categories", "object",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "no image has data" in result.output
    assert not (tmp_path / "out").exists()


def test_hooks_come_off_a_model_when_a_dissection_fails(dataset, tmp_path, monkeypatch) -> None:
    """Even while the failure's traceback is alive (pytest's excinfo holds it, as a notebook would), the
    user's model runs whole again: the extraction was closed when the pass failed."""
    from unitscope.dissect import passes

    def failing(tallies, acts, batches):
        raise RuntimeError("tally failed")

    monkeypatch.setattr(passes, "update_tallies", failing)
    model = DyadicNet()
    with pytest.raises(RuntimeError, match="tally failed") as excinfo:
        dissect(dataset, model, ["mixed"], tmp_path / "out", _settings(cache="recompute"))
    assert excinfo.traceback  # the frames stay referenced
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert model(torch.zeros(1, 3, IMAGE, IMAGE)).shape == (1, 6, 2, 2)
