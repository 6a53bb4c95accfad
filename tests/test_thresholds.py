"""Exact streaming thresholds and top images against numpy on the full data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unitscope.thresholds import NETDISSECT_LEVEL, TopImages, TopK, required_k

LEVELS = [0.995, NETDISSECT_LEVEL, 0.5, 0.9, 0.0, 1.0 - 1e-9, 0.123456]


def _stream(values: np.ndarray, k: int, rng: np.random.Generator) -> TopK:
    top = TopK(values.shape[0], k)
    cuts = np.sort(rng.integers(0, values.shape[1], size=4))
    for chunk in np.split(values, cuts, axis=1):
        top.update(torch.from_numpy(chunk))
    return top


@pytest.mark.parametrize("ties", [False, True])
def test_threshold_equals_numpy_quantile_bit_for_bit(ties: bool) -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(1, 2000))
        values = rng.standard_normal((3, n)).astype(np.float32) * 10
        if ties:
            values = np.round(values)
        for level in LEVELS:
            top = _stream(values, required_k(n, level), rng)  # the smallest sufficient k
            expected = np.array([np.quantile(row, level) for row in values])
            got = top.threshold(level)
            assert got.dtype == expected.dtype == np.float32
            np.testing.assert_array_equal(got, expected, err_msg=f"n={n} level={level}")
            assert top.count == n


def test_required_k_is_small_and_checked() -> None:
    assert NETDISSECT_LEVEL == pytest.approx(0.994995, abs=1e-6)
    n = 63305 * 49  # Broden × a 7×7 layer: about 0.5 % of the values are kept
    assert required_k(n, 0.995) == n - int(np.floor((n - 1) * 0.995)) + 1
    assert required_k(n, 0.995) < 0.0051 * n
    top = TopK(1, 2)
    top.update(torch.arange(10.0)[None])
    with pytest.raises(ValueError, match="needs"):
        top.threshold(0.5)
    with pytest.raises(ValueError, match="zero values"):
        required_k(0, 0.5)


def test_activation_batches_and_shards_merge_exactly() -> None:
    rng = np.random.default_rng(1)
    acts = rng.standard_normal((20, 4, 3, 5)).astype(np.float32)  # (images, units, h, w)
    level, n = 0.97, 20 * 3 * 5
    k = required_k(n, level)
    shards = [TopK(4, k) for _ in range(3)]
    for shard, rows in zip(shards, np.array_split(np.arange(20), 3)):
        for row in rows:
            shard.update(torch.from_numpy(acts[row : row + 1]))
    restored = [TopK.from_state(s.state()) for s in shards]
    merged = restored[2].merge(restored[0]).merge(restored[1])
    per_unit = acts.transpose(1, 0, 2, 3).reshape(4, -1)
    np.testing.assert_array_equal(merged.threshold(level), np.quantile(per_unit, level, axis=1).astype(np.float32))
    np.testing.assert_array_equal(merged.values(), -np.sort(-per_unit, axis=1)[:, :k])
    with pytest.raises(ValueError, match="merge"):
        merged.merge(TopK(4, k + 1))


def test_top_images_rank_by_maximum_with_ties_to_lower_index() -> None:
    maxima = np.array([[1.0, 5.0], [3.0, 5.0], [3.0, 0.0], [2.0, 5.0], [3.0, 1.0]], dtype=np.float32)  # (images, units)
    whole = TopImages.empty(2, 3)
    whole.update(np.arange(5), maxima)
    assert whole.indices.tolist() == [[1, 2, 4], [0, 1, 3]]
    assert whole.values.tolist() == [[3.0, 3.0, 3.0], [5.0, 5.0, 5.0]]
    late, early = TopImages.empty(2, 3), TopImages.empty(2, 3)
    late.update(np.arange(3, 5), maxima[3:])
    early.update(np.arange(3), maxima[:3])
    merged = late.merge(early)  # merge order must not matter
    np.testing.assert_array_equal(merged.indices, whole.indices)
    np.testing.assert_array_equal(merged.values, whole.values)
    few = TopImages.empty(2, 3)
    few.update(np.array([7]), maxima[:1])
    assert few.indices.tolist() == [[7], [7]]
