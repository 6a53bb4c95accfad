"""Model-parameter randomisation (order, cascading vs independent, batch norm) and the similarity metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from unitscope.models.registry import Anatomy
from unitscope.saliency.randomization import (
    Block,
    RandomizationError,
    randomization_blocks,
    reinitialize,
    stages,
)
from unitscope.saliency.similarity import noise_map, similarities, sobel_map

#: Adebayo et al.'s cascading order for Inception v3 (their src/utils.py, inception_block_names), in torchvision's
#: module names (their "Logits" is torchvision's "fc").
INCEPTION_V3_ORDER = ["fc", "Mixed_7c", "Mixed_7b", "Mixed_7a", "Mixed_6e", "Mixed_6d", "Mixed_6c", "Mixed_6b",
                      "Mixed_6a", "Mixed_5d", "Mixed_5c", "Mixed_5b", "Conv2d_4a_3x3", "Conv2d_3b_1x1",
                      "Conv2d_2b_3x3", "Conv2d_2a_3x3", "Conv2d_1a_3x3"]


class Net(nn.Module):
    """stem (conv + bn) → body (two conv blocks) → unused head → fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)
        self.body = nn.Sequential(nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU()), nn.Sequential(nn.Conv2d(2, 2, 1)))
        self.unused = nn.Linear(2, 2)
        self.fc = nn.Linear(2, 3)
        self.bn.running_mean.fill_(0.5)
        self.bn.running_var.fill_(2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(self.bn(self.conv(x))).mean(dim=(2, 3)))


ANATOMY = Anatomy(None, ("body",), {"stem": ("conv", "bn")})
EXAMPLE = torch.zeros(1, 1, 5, 5)


def parameters(model: nn.Module, block: str) -> dict[str, torch.Tensor]:
    prefixes = {"stem": ("conv.", "bn."), "body.0": ("body.0.",), "body.1": ("body.1.",), "fc": ("fc.",)}[block]
    return {k: v for k, v in model.named_parameters() if k.startswith(prefixes)}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_blocks_run_top_down_and_unused_modules_are_no_block() -> None:
    blocks = randomization_blocks(Net(), ANATOMY, EXAMPLE)
    assert blocks == [Block("fc", ("fc",)), Block("body.1", ("body.1",)), Block("body.0", ("body.0",)),
                      Block("stem", ("conv", "bn"))]
    with pytest.raises(RandomizationError, match="no module 'layer9'"):
        randomization_blocks(Net(), Anatomy(None, ("layer9",)), EXAMPLE)


def test_inception_v3_blocks_are_the_papers_order() -> None:
    import torchvision

    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    from unitscope.models.zoo import torchvision_anatomy

    names = [b.name for b in randomization_blocks(model, torchvision_anatomy("inception_v3"), torch.zeros(1, 3, 80, 80))]
    assert names == INCEPTION_V3_ORDER  # AuxLogits does not run in eval mode: no block


def test_cascading_randomises_cumulatively_and_independent_one_block_at_a_time() -> None:
    torch.manual_seed(0)
    model = Net()
    blocks = randomization_blocks(model, ANATOMY, EXAMPLE)
    names = [b.name for b in blocks]
    original = {name: {k: v.clone() for k, v in parameters(model, name).items()} for name in names}
    cascading = []
    for k, stage in enumerate(stages(model, blocks, "cascading", seed=3)):
        assert stage.block == names[k] and list(stage.seeds) == names[: k + 1]
        for j, name in enumerate(names):
            assert same(parameters(stage.model, name), original[name]) == (j > k), (stage.block, name)
        cascading.append({name: {k: v.clone() for k, v in parameters(stage.model, name).items()} for name in names})
    for k, stage in enumerate(stages(model, blocks, "independent", seed=3)):
        for j, name in enumerate(names):
            assert same(parameters(stage.model, name), original[name]) == (j != k)
        # a block gets the same random weights in both tests
        assert same(parameters(stage.model, names[k]), cascading[k][names[k]])
    assert all(same(parameters(model, n), original[n]) for n in names), "the original model is left unchanged"
    bottom_up = [s.block for s in stages(model, blocks, "cascading", seed=3, order="bottom-up")]
    assert bottom_up == names[::-1]
    last = list(stages(model, blocks, "independent", seed=3, order="bottom-up"))[-1]
    assert same(parameters(last.model, "fc"), cascading[0]["fc"])
    other = next(iter(stages(model, blocks, "cascading", seed=4)))
    assert not same(parameters(other.model, "fc"), cascading[0]["fc"])


def test_batch_norm_running_statistics_are_kept_unless_reset() -> None:
    model = Net()
    stem = Block("stem", ("conv", "bn"))
    reinitialize(model, stem, seed=1)
    assert torch.equal(model.bn.running_mean, torch.full((2,), 0.5))
    assert torch.equal(model.bn.running_var, torch.full((2,), 2.0))
    assert torch.equal(model.bn.weight.data, torch.ones(2))  # BatchNorm's own reset_parameters: weight 1, bias 0
    reinitialize(model, stem, seed=1, reset_statistics=True)
    assert torch.equal(model.bn.running_mean, torch.zeros(2)) and torch.equal(model.bn.running_var, torch.ones(2))


def test_a_layer_without_reset_parameters_is_refused() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gain

    model = nn.Sequential(nn.Linear(2, 2), Scale())
    with pytest.raises(RandomizationError, match=r"layer '1' \(Scale\) of block '1' has parameters but no "
                                                 r"reset_parameters\(\)"):
        reinitialize(model, Block("1", ("1",)), seed=0)


def test_similarity_of_known_pairs() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((32, 32)).astype(np.float32)
    identical = similarities(a, a, a, a)
    assert identical == {"spearman-abs": pytest.approx(1.0), "spearman": pytest.approx(1.0), "ssim": pytest.approx(1.0),
                         "hog-pearson": pytest.approx(1.0)}
    b = a**3  # a monotone transform keeps every rank
    monotone = similarities(a, b, a, b)
    assert monotone["spearman-abs"] == pytest.approx(1.0) and monotone["ssim"] < 1.0
    reversed_ = similarities(a, 1 - a, a - 0.5, 0.5 - a)
    assert reversed_["spearman-abs"] == pytest.approx(-1.0) and reversed_["spearman"] == pytest.approx(-1.0)
    c = rng.random((32, 32)).astype(np.float32)
    result = similarities(a, c, a, c)
    assert result["spearman-abs"] == pytest.approx(stats.spearmanr(a.ravel(), c.ravel()).statistic)
    assert abs(result["spearman-abs"]) < 0.1 and abs(result["ssim"]) < 0.1


def test_constant_maps_give_nan_correlations_not_dropped_values() -> None:
    a = np.random.default_rng(1).random((32, 32)).astype(np.float32)
    flat = np.zeros((32, 32), np.float32)
    result = similarities(a, flat, a, flat)
    assert math.isnan(result["spearman-abs"]) and math.isnan(result["spearman"]) and math.isnan(result["hog-pearson"])
    assert not math.isnan(result["ssim"])  # SSIM stays defined (its constants keep the ratio finite)
    with pytest.raises(ValueError, match="too small for HOG"):
        similarities(a[:8, :8], a[:8, :8], a[:8, :8], a[:8, :8])


def test_controls() -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = 255  # one vertical edge
    edges = sobel_map(image)
    assert edges.max() == 1.0 and set(np.flatnonzero(edges.max(axis=0))) == {15, 16}
    assert np.array_equal(noise_map((4, 4), 0), noise_map((4, 4), 0))
    assert not np.array_equal(noise_map((4, 4), 0), noise_map((4, 4), 1))
