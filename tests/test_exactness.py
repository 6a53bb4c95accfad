"""What exactness means (docs/engine.md, Exactness), tested on real convolution kernels.

The tally is exact *given* the activations; the activations of a real network can differ in their last
float bits with the composition of a forward batch. So the claims are:
1. downstream of the activations (thresholds, bilinear masks, rotation, tally, top images) nothing depends
   on the batch size or the shards: one activation cache dissected in any batching gives identical files;
2. at one batch size, any number of shards gives the unsharded run's files byte for byte, forward pass
   included, because shard boundaries fall on multiples of the batch size.
ProbeCNN (convolution, batch norm, ReLU, max-pool in float32) stands in for any network here: its conv4
gives an image other last bits alone than in a batch of 4. The dyadic-model tests in test_dissect.py check the counts
themselves against a brute-force reference.
"""

from __future__ import annotations

import pytest
import torch

from unitscope.activations import extract_batches
from unitscope.broden.reader import BrodenDataset
from unitscope.dissect import DissectSettings, Rotation, dissect, merge, run_tally_stage, run_topk_stage
from unitscope.models import load_model
from unitscope.settings import Shard
from unitscope.probe.generate import generate

FILES = ("tally.csv", "thresholds.csv", "ious.csv", "top_images.csv", "summary.json", "top_maps.npy")
LAYERS = ["conv2", "conv4"]
SPEC = "probecnn"
IMAGES = 15  # 3 shards at batch size 4: rows 0..3, 4..7, 8..14 (5 and 10 rounded down); unaligned, 0..4 ends in a batch of 1


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> BrodenDataset:
    return BrodenDataset(generate(tmp_path_factory.mktemp("probe") / "ds", IMAGES, size=96, seed=5, workers=1))


@pytest.fixture(scope="module")
def model():
    return load_model(SPEC)


def _settings(batch_size: int, rotation: Rotation | None = None) -> DissectSettings:
    return DissectSettings(quantile=0.05, batch_size=batch_size, top_k=4, rotation=rotation)


def _whole_and_sharded(probe, model, tmp_path, settings: DissectSettings) -> None:
    """One dissection into ``whole``, and the three-shard two-stage flow into ``merged``."""
    dissect(probe, model, LAYERS, tmp_path / "whole", settings)
    parts = [Shard(i, 3) for i in range(3)]
    for shard in parts:
        run_topk_stage(probe, model, LAYERS, tmp_path / f"topk{shard.index}", settings, shard)
    merge([tmp_path / f"topk{s.index}" for s in parts], tmp_path / "thresholds")
    for shard in parts:
        run_tally_stage(probe, model, LAYERS, tmp_path / f"tally{shard.index}", settings, shard,
                        tmp_path / "thresholds")
    merge([tmp_path / f"tally{s.index}" for s in parts], tmp_path / "merged")


def _assert_same_files(a, b) -> None:
    for layer in LAYERS:
        for name in FILES:
            assert (a / layer / name).read_bytes() == (b / layer / name).read_bytes(), (layer, name)


def test_batch_composition_changes_the_last_bits(probe, model, one_thread) -> None:
    """Why shard boundaries are aligned: the same image gives other float bits alone than in a batch of 4."""
    images = torch.stack([torch.from_numpy(probe.image(i)).permute(2, 0, 1) for i in range(4)])
    indices = torch.arange(4)

    def conv4(batches):
        return torch.cat([acts["conv4"] for _, acts in extract_batches(model.module, ["conv4"], batches, "imagenet",
                                                                        torch.device("cpu"))])

    together = conv4([(indices, images)])
    alone = conv4([(indices[i:i + 1], images[i:i + 1]) for i in range(4)])
    assert not torch.equal(together, alone)
    torch.testing.assert_close(together, alone)


def test_shard_boundaries_fall_on_batch_multiples() -> None:
    assert [Shard(i, 3).range(IMAGES, 4) for i in range(3)] == [range(0, 4), range(4, 8), range(8, 15)]
    assert [Shard(i, 3).range(IMAGES) for i in range(3)] == [range(0, 5), range(5, 10), range(10, 15)]
    assert Shard(0, 8).range(10, 4) == range(0, 0)  # too many shards for the batch size: empty, refused later


@pytest.mark.parametrize("rotation", [None, Rotation(0.5, 1)], ids=["original", "rotated"])
def test_sharded_forward_passes_equal_one_pass(probe, model, tmp_path, one_thread, rotation) -> None:
    _whole_and_sharded(probe, model, tmp_path, _settings(4, rotation))
    _assert_same_files(tmp_path / "whole", tmp_path / "merged")


def test_one_cache_gives_the_same_results_in_any_batching(probe, model, tmp_path, one_thread) -> None:
    from click.testing import CliRunner

    from unitscope.cli import main

    result = CliRunner().invoke(main, ["extract", "--dataset", str(probe.root), "--model", SPEC, "--layer",
                                       LAYERS[0], "--layer", LAYERS[1], "--batch-size", "8", "--device", "cpu",
                                       "--out", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    rotation = Rotation(0.5, 1)
    for batch_size in (1, 3, 15):
        dissect(probe, [tmp_path / "cache"], LAYERS, tmp_path / f"b{batch_size}", _settings(batch_size, rotation))
    _assert_same_files(tmp_path / "b1", tmp_path / "b3")
    _assert_same_files(tmp_path / "b1", tmp_path / "b15")


def test_recomputing_the_forward_pass_gives_the_cached_results(probe, model, tmp_path, one_thread) -> None:
    """The cache policy changes where pass 2 gets its activations, never a result."""
    from unitscope.dissect.sources import cache_bytes, caches_to_disk, prepare

    def settings(policy: str, budget: float) -> DissectSettings:
        return DissectSettings(quantile=0.05, batch_size=4, top_k=4, cache=policy, cache_budget_gb=budget)

    needed = cache_bytes(prepare(probe, model, LAYERS, settings("auto", 1), None))
    # conv2 64×12×12 and conv4 256×3×3 at 96 px: (9216 + 2304) values × 4 bytes × 15 images
    assert needed == 4 * IMAGES * (64 * 12 * 12 + 256 * 3 * 3)
    decisions = {}
    for policy, budget in (("disk", 0), ("recompute", 100), ("auto", needed / 1e9), ("auto", needed / 1e9 / 2)):
        decisions[policy, budget] = caches_to_disk(prepare(probe, model, LAYERS, settings(policy, budget), None))
        dissect(probe, model, LAYERS, tmp_path / f"{policy}-{budget}", settings(policy, budget))
    assert list(decisions.values()) == [True, False, True, False]
    runs = sorted(tmp_path.iterdir())
    for other in runs[1:]:
        _assert_same_files(runs[0], other)


def test_unaligned_shard_boundaries_would_change_the_files(probe, model, tmp_path, one_thread, monkeypatch) -> None:
    """The alignment is what makes the sharded test above pass: with boundaries at i·N//n (rows 0..4 end in a
    batch of one image), the forward pass gives other bits and some result file differs."""
    aligned = Shard.range
    monkeypatch.setattr(Shard, "range", lambda self, n_images, align=1: aligned(self, n_images, 1))
    _whole_and_sharded(probe, model, tmp_path, _settings(4))
    differs = [(layer, name) for layer in LAYERS for name in FILES
               if (tmp_path / "whole" / layer / name).read_bytes() != (tmp_path / "merged" / layer / name).read_bytes()]
    assert differs
