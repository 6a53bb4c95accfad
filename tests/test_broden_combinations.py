"""Label combinations: each pixel's labels are recovered exactly, every tuple once, with its pixel count."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from unitscope.broden.combinations import label_combinations


def check(layers: np.ndarray) -> None:
    """Every image of ``layers`` (B, D, sh, sw): its tuples, once each, with their pixel counts."""
    combinations = label_combinations(layers)
    images, depth, sh, sw = layers.shape
    assert combinations.ids.shape == (images, sh, sw) and combinations.labels.shape[::2] == (images, depth)
    for b in range(images):
        labels, pixels = combinations.labels[b], combinations.pixels[b]
        np.testing.assert_array_equal(np.moveaxis(labels[combinations.ids[b]], -1, 0), layers[b])
        tuples = Counter(map(tuple, layers[b].reshape(depth, -1).T.tolist()))  # brute force: every pixel's
        found = {tuple(row): int(n) for row, n in zip(labels[pixels > 0].tolist(), pixels[pixels > 0])}
        assert found == dict(tuples) and (pixels > 0).sum() == len(tuples)
        assert not labels[pixels == 0].any()  # padding rows
        assert combinations.ids[b].max() < len(tuples)


def test_hand_computed_case() -> None:
    first = [[[1, 1], [2, 1]], [[0, 5], [0, 5]]]  # (D=2, 2, 2): tuples (1,0) (1,5) / (2,0) (1,5)
    second = [[[7, 7], [7, 7]], [[0, 0], [0, 0]]]  # one tuple
    combinations = label_combinations(np.array([first, second], np.int32))
    assert combinations.ids.tolist() == [[[0, 1], [2, 1]], [[0, 0], [0, 0]]]
    assert combinations.labels.tolist() == [[[1, 0], [1, 5], [2, 0]], [[7, 0], [0, 0], [0, 0]]]
    assert combinations.pixels.tolist() == [[1, 2, 1], [4, 0, 0]]


@pytest.mark.parametrize("seed", range(3))
def test_piecewise_constant_layers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    layers = np.zeros((3, 4, 40, 56), np.int32)
    for b in range(3):
        for d in range(4 - b):  # fewer layers in later images: zero-padded, as in a batch
            for _ in range(6):  # rectangles of labels, overlapping
                y, x = rng.integers(0, 40), rng.integers(0, 56)
                layers[b, d, y : y + rng.integers(1, 20), x : x + rng.integers(1, 30)] = rng.integers(1, 1200)
    layers[2, :, :, :] = layers[0]  # two images with the same tuples keep them apart
    check(layers)


def test_noise_with_large_label_numbers() -> None:
    """Every pixel a new tuple and label numbers in the thousands: the sorting path of the numbering."""
    rng = np.random.default_rng(0)
    check(rng.integers(0, 5000, size=(2, 3, 30, 30)).astype(np.int32))


def test_no_pixel_layers() -> None:
    combinations = label_combinations(np.zeros((2, 0, 3, 4), np.int32))
    assert combinations.ids.tolist() == [[[0] * 4] * 3] * 2
    assert combinations.labels.shape == (2, 1, 0) and combinations.pixels.tolist() == [[12], [12]]


@pytest.mark.parametrize("seed", range(3))
def test_images_numbered_alone_stack_into_the_batch_numbering(seed: int) -> None:
    """The permutation null numbers each image once and stacks them: the same arrays as numbering the batch, also
    when the images have different numbers of pixel layers (the missing ones read as label 0)."""
    from unitscope.broden.combinations import stack_combinations

    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 4, size=(depth, 12, 10)).repeat(2, axis=2)[:, :, :10] * rng.integers(1, 30)
              for depth in (3, 1, 0, 2)]
    padded = np.zeros((len(images), 3, 12, 10), np.int32)
    for b, layers in enumerate(images):
        padded[b, : len(layers)] = layers
    batch = label_combinations(padded)
    stacked = stack_combinations([label_combinations(layers[None]) for layers in images])
    for name in ("ids", "labels", "pixels"):
        np.testing.assert_array_equal(getattr(stacked, name), getattr(batch, name), err_msg=name)
