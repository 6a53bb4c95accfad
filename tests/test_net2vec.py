"""Net2Vec's probes on units that are known mixtures of concept detectors, its metrics, and the command end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from sklearn.metrics import average_precision_score

from compositional_reference import concept_masks
from test_dissect import DyadicNet, _settings, make_dataset, reference_activations
from test_report import unit_links
from test_tally import bilinear_reference
from unitscope.cli import main
from unitscope.dissect import dissect
from unitscope.dissect.result import Dissected
from unitscope.models import LoadedModel
from unitscope.net2vec.probes import (
    _fit,
    average_precision,
    class_weighted_loss,
    retrain_top_units,
    segmentation_logits,
    top_units,
    train_classification,
    train_segmentation,
    units_carrying,
)
from unitscope.net2vec.run import CONCEPTS_COLUMNS, SPARSITY_COLUMNS, gather, net2vec_layer, peak_bytes, probed_concepts
from unitscope.settings import Net2VecSettings

#: Two concepts planted as mixtures of six binary units: c0 = units 0 and 1, c1 = unit 2 but not unit 3.
TRUE_WEIGHT = torch.tensor([[4.0, 4.0, 0, 0, 0, 0], [0, 0, 4.0, -4.0, 0, 0]])
TRUE_BIAS = torch.tensor([-2.0, -2.0])


def _planted(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    binary = (torch.rand(n, 6, 4, 4, generator=generator) < 0.3).float()
    return binary, segmentation_logits(binary, TRUE_WEIGHT, TRUE_BIAS, (16, 16)) > 0


def test_segmentation_probes_recover_the_mixing_weights() -> None:
    binary, targets = _planted(96, 0)
    alpha = 1 - targets.float().mean(dim=(0, 2, 3))

    def batches(epoch: int):
        order = torch.randperm(len(binary), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(order), 16):
            rows = order[start:start + 16]
            yield binary[rows], targets[rows]

    weight, bias = train_segmentation(batches, 6, alpha, (16, 16), epochs=40, lr=1e-2, momentum=0.9)
    cosine = F.cosine_similarity(weight, TRUE_WEIGHT, dim=1)
    assert (cosine > 0.99).all(), cosine  # the planted units carry the concept, the others ~0
    held_out, truth = _planted(32, 1)
    predicted = segmentation_logits(held_out, weight, bias, (16, 16)) > 0
    iou = (predicted & truth).sum(dim=(0, 2, 3)) / (predicted | truth).sum(dim=(0, 2, 3))
    assert (iou > 0.85).all(), iou  # the class-weighted loss trades precision of rare concepts for recall
    assert units_carrying(weight).tolist() == [2, 2]
    assert (top_units(weight, 2).abs().argsort(dim=1, descending=True)[:, :2].sort(dim=1).values
            == torch.tensor([[0, 1], [2, 3]])).all()


def test_retraining_on_the_top_units_is_each_concept_trained_alone_on_them() -> None:
    """The sparsity sweep's probes: each concept's k largest weights trained further from the truncated probe, the
    others held at zero, equal each concept's probe trained alone on just those units' maps from the same start; the
    retrained probe fits better than the truncated one."""
    binary, targets = _planted(64, 2)
    alpha = 1 - targets.float().mean(dim=(0, 2, 3))

    def batches(epoch: int):
        for start in range(0, len(binary), 16):
            yield binary[start:start + 16], targets[start:start + 16]

    noisy = TRUE_WEIGHT + 0.3 * torch.randn(2, 6, generator=torch.Generator().manual_seed(4))  # a start to improve on
    retrained = retrain_top_units(batches, noisy, TRUE_BIAS, [1, 2], alpha, (16, 16), 5, 1e-3, 0.9)
    for k, (weight, bias) in zip([1, 2], retrained):
        start = top_units(noisy, k)
        assert ((weight != 0) == (start != 0)).all() and ((weight != 0).sum(dim=1) == k).all()
        for c in range(2):
            units = start[c].nonzero()[:, 0]

            def alone(epoch: int, c=c, units=units):
                for b, t in batches(epoch):
                    yield b[:, units], t[:, c:c + 1]

            reference = _fit(alone, [(start[c:c + 1, units], TRUE_BIAS[c:c + 1], None)], alpha[c:c + 1], (16, 16), 5,
                             1e-3, 0.9)[0]
            torch.testing.assert_close(weight[c, units], reference[0][0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(bias[c], reference[1][0], rtol=1e-5, atol=1e-6)

    def loss(weight: torch.Tensor, bias: torch.Tensor) -> float:
        return float(class_weighted_loss(segmentation_logits(binary, weight, bias, (16, 16)), targets, alpha))

    assert loss(*retrained[0]) < loss(top_units(noisy, 1), TRUE_BIAS)


def test_the_loss_is_the_class_weighted_one_by_hand() -> None:
    logits = torch.tensor([[[[0.5, -1.0]], [[2.0, 0.0]]]])  # (1 image, 2 concepts, 1 × 2 pixels)
    targets = torch.tensor([[[[True, False]], [[False, True]]]])
    alpha = torch.tensor([0.9, 0.6])
    softplus = lambda z: float(np.log1p(np.exp(z)))  # noqa: E731
    expected = (0.9 * softplus(-0.5) + 0.1 * softplus(-1.0)) + (0.4 * softplus(2.0) + 0.6 * softplus(-0.0))
    assert float(class_weighted_loss(logits, targets, alpha)) == pytest.approx(expected, rel=1e-6)


def test_classification_probe_finds_the_present_concept() -> None:
    generator = torch.Generator().manual_seed(3)
    features = torch.rand(200, 6, generator=generator)
    labels = torch.stack([features[:, 0] + features[:, 1] > 1.2, features[:, 4] > 0.8], dim=1)
    weight, bias = train_classification(features[:150], labels[:150], epochs=400, lr=0.5, momentum=0.9)
    ap = average_precision(features[150:] @ weight.T + bias, labels[150:])
    assert (ap > 0.9).all(), ap
    assert set(weight[0].abs().topk(2).indices.tolist()) == {0, 1} and weight[1].abs().argmax() == 4


def test_average_precision_equals_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(40, 12)).astype(float)  # many ties
    labels = rng.random((40, 12)) < 0.3
    ours = average_precision(torch.tensor(scores), torch.tensor(labels)).numpy()
    expected = [average_precision_score(labels[:, j], scores[:, j]) for j in range(12)]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    assert torch.isnan(average_precision(torch.rand(5, 1), torch.zeros(5, 1, dtype=torch.bool))).all()


def _loaded() -> LoadedModel:
    return LoadedModel(module=DyadicNet(), spec="python:DyadicNet", name="DyadicNet", default_normalize="none")


@pytest.fixture(scope="module")
def dissected(tmp_path_factory):
    root = tmp_path_factory.mktemp("net2vec")
    dataset = make_dataset(root / "ds", images=40)
    dissect(dataset, DyadicNet(), ["mixed"], root / "dissect", _settings())
    return dataset, root / "dissect" / "mixed"


def test_single_units_and_both_protocols_equal_dense_masks(dissected, tmp_path) -> None:
    """The best single unit's IoUs on the val images, by Net2Vec's protocol and by the dissection's, equal a dense
    computation from the reference activations and label maps."""
    dataset, dissection = dissected
    written = net2vec_layer(dataset, _loaded(), dissection, tmp_path / "out",
                            Net2VecSettings(epochs=2, lr=1e-3, sparsity_epochs=1), device="cpu")
    concepts = pd.read_csv(written / "concepts.csv", keep_default_na=False)
    assert concepts.columns.tolist() == CONCEPTS_COLUMNS
    acts = reference_activations(dataset, DyadicNet())["mixed"]
    thresholds = pd.read_csv(dissection / "thresholds.csv")["threshold"].to_numpy(np.float64).astype(np.float32)
    val = np.flatnonzero(dataset.index["split"].to_numpy() == "val")
    train = np.flatnonzero(dataset.index["split"].to_numpy() == "train")
    masks = np.stack([[bilinear_reference(acts[i, u].astype(np.float64), *dataset.label_size) > thresholds[u]
                       for u in range(acts.shape[1])] for i in range(len(acts))])  # (N, units, sh, sw)
    labels, _ = concept_masks(dataset)
    primary = np.asarray(dataset.primary)

    def ious(rows, unit, label):
        mask, truth = masks[rows, unit], labels[label][rows]
        hits = (mask & truth).sum()
        contains = truth.any(axis=(1, 2))
        category = np.array([any(primary[other] == primary[label] and labels[other][i].any() for other in labels)
                             for i in rows])
        net2vec = hits / (mask[contains].sum() + truth.sum() - hits)
        dissection_union = mask[category].sum() + truth.sum() - hits
        return net2vec, hits / dissection_union

    checked = 0
    for row in concepts.itertuples():
        if row.val_images == 0:
            continue
        train_ious = [ious(train, u, row.number)[0] for u in range(acts.shape[1])]
        assert row.unit == int(np.argmax(train_ious)) + 1  # chosen on the training images
        net2vec, by_dissection = ious(val, row.unit - 1, row.number)
        assert row.unit_iou == pytest.approx(net2vec, abs=1e-12)
        assert row.unit_iou_dissection == pytest.approx(by_dissection, abs=1e-12)
        checked += 1
    assert checked >= 5
    # the combinations' IoUs from the saved weights, on dense masks of the val images
    with np.load(written / "weights.npz") as weights:
        weight, bias = torch.from_numpy(weights["segmentation_weight"]), torch.from_numpy(weights["segmentation_bias"])
        numbers = weights["concepts"].tolist()
    binary = torch.from_numpy(acts[val] > thresholds[None, :, None, None]).float()
    predicted = (segmentation_logits(binary, weight, bias, tuple(dataset.label_size)) > 0).numpy()
    for i, number in enumerate(numbers):
        row = concepts.set_index("number").loc[number]
        truth = labels[number][val]
        if not truth.any():
            assert np.isnan(row["iou"])  # no val image to score it on
            continue
        mask, hits = predicted[:, i], (predicted[:, i] & truth).sum()
        contains = truth.any(axis=(1, 2))
        assert row["iou"] == pytest.approx(hits / (mask[contains].sum() + truth.sum() - hits), abs=1e-12)
    sparsity = pd.read_csv(written / "sparsity.csv").set_index(["k", "number"])
    assert sparsity.columns.tolist() == SPARSITY_COLUMNS[1:2] + SPARSITY_COLUMNS[3:]
    assert sorted(set(sparsity.index.get_level_values("k"))) == [1, 2, 4, 6]
    with np.load(written / "weights.npz") as weights:  # the sweep's probes, retrained on their k largest weights
        assert weights["sparsity_k"].tolist() == [1, 2, 4]
        sweep = zip(weights["sparsity_k"], weights["sparsity_weight"], weights["sparsity_bias"])
        for k, w, b in [*sweep, (6, weight.numpy(), bias.numpy())]:
            assert ((w != 0).sum(axis=1) <= k).all()
            masks = (segmentation_logits(binary, torch.from_numpy(w), torch.from_numpy(b),
                                         tuple(dataset.label_size)) > 0).numpy()
            for i, number in enumerate(numbers):
                truth = labels[number][val]
                if truth.any():
                    hits = (masks[:, i] & truth).sum()
                    expected = hits / (masks[:, i][truth.any(axis=(1, 2))].sum() + truth.sum() - hits)
                    assert sparsity.loc[(k, number), "iou"] == pytest.approx(expected, abs=1e-12)
    summary = json.loads((written / "summary.json").read_text())
    assert summary["reference"]["AlexNet (ImageNet) conv5"] == {"combination": 0.115, "single unit": 0.043}
    with np.load(written / "weights.npz") as weights:
        assert weights["segmentation_weight"].shape == (len(concepts), 6)


class ChannelNet(torch.nn.Module):
    """Three units: the red, green and blue channels averaged over 16×16 cells (4×4 maps of a 64×64 image; JPEG's
    16×16 chroma blocks stay inside a cell)."""

    def __init__(self) -> None:
        super().__init__()
        self.channels = torch.nn.AvgPool2d(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channels(x)


def test_the_whole_layer_recovers_planted_mixtures(tmp_path) -> None:
    """Through `net2vec_layer` (dissection thresholds, activations, label maps, training, evaluation): a cell is red
    where a ~ B(0.3), green where b ~ B(0.3), its blue random; `car` covers the cells a OR b, `tree` the others. The
    car probe puts positive weight on the red and green units and next to none on blue, the tree probe negative, and
    the combination beats the best single unit."""
    from unitscope.broden.reader import BrodenDataset
    from unitscope.broden.writer import BrodenWriter
    from test_dissect import LABELS

    rng = np.random.default_rng(0)
    with BrodenWriter(tmp_path / "ds", LABELS, image_size=64, label_size=16) as writer:
        for i in range(48):
            a, b = rng.random((4, 4)) < 0.3, rng.random((4, 4)) < 0.3
            cells = np.stack([255 * a, 255 * b, rng.integers(0, 256, (4, 4))], axis=-1).astype(np.uint8)
            objects = np.kron(np.where(a | b, 3, 4), np.ones((4, 4), np.int64))  # car 3, tree 4
            writer.add_image("src", f"img{i:02d}", np.kron(cells, np.ones((16, 16, 1), np.uint8)),
                             {"object": [objects]}, {"scene": [8]})
    dataset = BrodenDataset(tmp_path / "ds")
    dissect(dataset, ChannelNet(), ["channels"], tmp_path / "dissect", _settings(quantile=0.25))
    loaded = LoadedModel(module=ChannelNet(), spec="python:ChannelNet", name="ChannelNet", default_normalize="none")
    written = net2vec_layer(dataset, loaded, tmp_path / "dissect" / "channels", tmp_path / "out",
                            Net2VecSettings(epochs=40, lr=1e-3), device="cpu", concepts=["car", "tree"])
    concepts = pd.read_csv(written / "concepts.csv", keep_default_na=False).set_index("concept")
    with np.load(written / "weights.npz") as weights:
        weight = dict(zip([LABELS[n] for n in weights["concepts"]], weights["segmentation_weight"]))
    red, green, blue = weight["car"]
    assert min(red, green) > 5 * abs(blue), weight["car"]
    red, green, blue = weight["tree"]
    assert max(red, green) < -5 * abs(blue), weight["tree"]
    for concept in ("car", "tree"):
        # Bilinear upsampling of the 4×4 logits blurs the cell borders (0.70 and 0.73 here); a single unit covers at
        # most its own colour's cells (0.11 and 0.13 here).
        assert concepts.loc[concept, "iou"] > 0.6, concepts.loc[concept]
        assert concepts.loc[concept, "iou"] > 3 * concepts.loc[concept, "unit_iou"], concepts.loc[concept]
        assert concepts.loc[concept, "units_90"] == 2


def _val_only_kitchens(tmp_path) -> tuple:
    """A dataset whose kitchen scenes are all in the val split, dissected; returns ``(dataset,)``."""
    from unitscope.broden.format import split_of
    from unitscope.broden.reader import BrodenDataset
    from unitscope.broden.writer import BrodenWriter
    from test_dissect import IMAGE, LABEL, LABELS

    rng = np.random.default_rng(5)
    with BrodenWriter(tmp_path / "kitchens", LABELS, image_size=IMAGE, label_size=LABEL) as writer:
        for i in range(16):
            image = np.kron(rng.integers(0, 256, (4, 4, 3)).astype(np.uint8), np.ones((8, 8, 1), np.uint8))
            scene = 9 if split_of(f"src/img{i:02d}.jpg") == "val" else 8
            writer.add_image("src", f"img{i:02d}", image, {"color": [np.ones((LABEL, LABEL), np.int64)]},
                             {"scene": [scene]})
    dataset = BrodenDataset(tmp_path / "kitchens")
    dissect(dataset, DyadicNet(), ["mixed"], tmp_path / "k", _settings())
    return (dataset,)


def test_bad_input_is_one_line_and_leaves_nothing(dissected, tmp_path, monkeypatch) -> None:
    dataset, dissection = dissected
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="--concept 'nope' is not a label"):
        net2vec_layer(dataset, _loaded(), dissection, out, device="cpu", concepts=["nope"])
    with pytest.raises(ValueError, match="--concept 'kitchen-s' has no training image"):
        net2vec_layer(*_val_only_kitchens(tmp_path), _loaded(), tmp_path / "k" / "mixed", out, device="cpu",
                      concepts=["kitchen-s"])
    with pytest.raises(ValueError, match="--epochs must be at least 1"):
        net2vec_layer(dataset, _loaded(), dissection, out, Net2VecSettings(epochs=0), device="cpu")
    other = LoadedModel(module=ChannelNet(), spec="python:ChannelNet", name="ChannelNet", default_normalize="none")
    with pytest.raises(ValueError, match="--dissection .* was computed with other weights than --model "
                                         "python:ChannelNet"):  # a network without the layer: named as another one
        net2vec_layer(dataset, other, dissection, out, device="cpu")
    # At its peak Net2Vec holds twice what it keeps per image (6 units: 2 packed bytes + 8 each; 6 bytes per concept)
    # and the larger of a batch of the pass and a training step. The pass of 32 images at 16×16 label pixels holds
    # 1 byte per image, concept and pixel, and for the images it resamples at once (all 32 here) 4 per concept and
    # 40 per unit: 256 × (32 × 10 + 32 × (40 + 240)) = 2,375,680 bytes for 10 concepts, above a step's 33 × 16 × 10 ×
    # 256 = 1,351,680; with the 2 × 40 × (6 × 10 + 60) = 9,600 kept, 2,385,280. For two concepts 2,053,760. It must
    # fit in 3/4 of the memory the process may use.
    assert peak_bytes(dataset, len(probed_concepts(dataset)), 6, (4, 4), 16, 32) == 2_385_280
    assert peak_bytes(dataset, 2, 6, (4, 4), 16, 32) == 5_760 + 256 * (64 + 32 * (8 + 240)) == 2_053_760
    with monkeypatch.context() as patch:
        patch.setattr("unitscope.net2vec.run.memory_limit", lambda: 3_000_000)
        with pytest.raises(ValueError, match=r"probes of 10 concepts over 40 images \(16 a step, 32 a batch of the "
                                             r"pass\) need 2\.4 MB at the peak, more than 3/4 of the 3\.0 MB .* "
                                             r"with --concept, or lower --step-images or --batch-size"):
            net2vec_layer(dataset, _loaded(), dissection, out, device="cpu")
        assert not out.exists()
        net2vec_layer(dataset, _loaded(), dissection, out, Net2VecSettings(epochs=1), device="cpu",
                      concepts=["car", "tree"])
    assert pd.read_csv(out / "concepts.csv")["concept"].tolist() == ["car", "tree"]
    shutil.rmtree(out)
    result = CliRunner().invoke(main, ["net2vec", "--dataset", str(dataset.root), "--dissection", str(dissection),
                                       "--out", str(out)])
    assert result.exit_code == 2 and "exactly one of --model" in result.output and not out.exists()
    other = DyadicNet(seed=5)  # an activation cache of another model records no weights: its maxima differ
    from unitscope.activations import ActivationCacheWriter, extract_batches
    from unitscope.broden.loaders import image_loader

    with ActivationCacheWriter(tmp_path / "cache", image_start=0, image_stop=len(dataset), model="other",
                               model_spec="python:DyadicNet", dataset={"index_sha256": dataset.index_sha256()}) as w:
        for indices, acts in extract_batches(other, ["mixed"], image_loader(dataset, range(len(dataset)), 4), "none",
                                             torch.device("cpu")):
            w.write(indices, acts)
    with pytest.raises(ValueError, match="the activations differ from those of --dissection"):
        net2vec_layer(dataset, [tmp_path / "cache"], dissection, out, device="cpu")
    assert not out.exists()


def test_a_layer_of_one_unit_sweeps_only_all_its_units(dissected, tmp_path) -> None:
    dataset, _ = dissected
    one = DyadicNet(units=1)
    dissect(dataset, one, ["mixed"], tmp_path / "dissect", _settings())
    loaded = LoadedModel(module=one, spec="python:DyadicNet", name="DyadicNet", default_normalize="none")
    written = net2vec_layer(dataset, loaded, tmp_path / "dissect" / "mixed", tmp_path / "out",
                            Net2VecSettings(epochs=1, sparsity_epochs=1), device="cpu")
    assert set(pd.read_csv(written / "sparsity.csv")["k"]) == {1}
    with np.load(written / "weights.npz") as weights:
        assert weights["sparsity_k"].shape == (0,) and weights["sparsity_weight"].shape[0] == 0
        assert weights["segmentation_weight"].shape[1] == 1


def test_report_shows_combinations_beside_single_units(dissected, tmp_path) -> None:
    dataset, dissection = dissected
    written = net2vec_layer(dataset, _loaded(), dissection, tmp_path / "out", Net2VecSettings(epochs=2, lr=1e-3),
                            device="cpu")
    meta = json.loads((written / "meta.json").read_text())
    del meta["settings"]["sparsity_epochs"]  # a result written before the sweep could be retrained
    (written / "meta.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(main, ["report", "--results", str(dissection.parent), "--results", str(written),
                                       "--dataset", str(dataset.root), "--out", str(tmp_path / "site"),
                                       "--workers", "1"])
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    index = (site / "net2vec" / "index.html").read_text()
    assert "paper: AlexNet (ImageNet) conv5 on Broden" in index and "0.115" in index
    assert unit_links(site / "net2vec" / "DyadicNet.html")  # each concept's best single unit
    page = (site / "net2vec" / "DyadicNet.html").read_text()
    concepts = pd.read_csv(written / "concepts.csv", keep_default_na=False)
    assert all(name in page for name in concepts["concept"]) and "k largest weights (not retrained)" in page
    shown = [p for p in (site / "concepts").glob("*.html") if p.name != "index.html"]
    assert shown and any("Net2Vec" in p.read_text() for p in shown)
    assert "Net2Vec" in (site / "DyadicNet" / "mixed" / "index.html").read_text()


def test_a_subset_of_concepts_keeps_every_count_of_the_full_pass(dissected) -> None:
    """`--concept` counts only the named concepts, and their columns equal the full pass's: a category is present
    where any of its labels is, named or not. The batches the probes train on hold the binarised units (packed in
    memory) and each concept's pixels read again from the label maps, equal to a dense reading of both."""
    dataset, dissection = dissected
    result = Dissected.read(dissection)
    full = gather(dataset, _loaded(), result, batch_size=4, device="cpu")
    subset = np.array([9, 3])  # kitchen-s (a scene) and car (an object)
    part = gather(dataset, _loaded(), result, batch_size=4, device="cpu", concepts=subset)
    columns = [full.concepts.tolist().index(n) for n in subset]
    assert part.concepts.tolist() == subset.tolist()
    for name in ("present", "contains", "concept_pixels"):
        np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[:, columns], err_msg=name)
    np.testing.assert_array_equal(part.unit_hits, full.unit_hits[:, :, columns])
    assert not full.present.all()  # the fixture has images without a scene or an object
    labels, _ = concept_masks(dataset)
    acts = reference_activations(dataset, DyadicNet())["mixed"]
    binary = acts > result.thresholds().astype(np.float32)[None, :, None, None]
    rows = np.array([5, 0, 17, 3, 39])
    seen = []
    for batch, units, pixels in part.batches(rows, 2):
        seen.extend(batch.tolist())
        np.testing.assert_array_equal(units.numpy(), binary[batch])
        for j, number in enumerate(subset):
            np.testing.assert_array_equal(pixels[:, j].numpy(), labels[number][batch])
    assert seen == rows.tolist() and labels[9].any() and labels[3].any()
    np.testing.assert_allclose(full.features.numpy(), binary.mean(axis=(2, 3)), rtol=0, atol=1e-7)


def test_memory_limit_is_the_machine_or_a_smaller_limit_of_the_cgroup_or_its_ancestors(tmp_path) -> None:
    import os

    from unitscope.memory import memory_limit

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    mount, proc = tmp_path / "sys", tmp_path / "cgroup"

    def limits(files: dict[str, str], cgroup: str) -> int:
        for path, value in files.items():
            (mount / path).parent.mkdir(parents=True, exist_ok=True)
            (mount / path).write_text(value + "\n")
        proc.write_text(cgroup)
        return memory_limit(proc, mount)

    # cgroup v2, a SLURM step under its job: the job's limit holds, the step's own says "max"
    assert limits({"slurm/job_1/memory.max": str(physical // 3), "slurm/job_1/step_0/memory.max": "max"},
                  "0::/slurm/job_1/step_0\n") == physical // 3
    # cgroup v1 beside other controllers; the root's "unlimited" is a huge number
    assert limits({"memory/memory.limit_in_bytes": str(2**63 - 4096),
                   "memory/slurm/uid_0/job_2/memory.limit_in_bytes": str(physical // 5)},
                  "4:memory:/slurm/uid_0/job_2\n3:cpuset:/\n") == physical // 5
    assert limits({}, "0::/not/mounted/here\n") == physical  # no limit file: the machine's memory
    assert memory_limit(tmp_path / "no-such-file", mount) == physical
