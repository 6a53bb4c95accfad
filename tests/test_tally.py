"""Tally against a brute-force reference written as plain loops (per image, per unit, per pixel)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from realdata import real_data
from unitscope.broden.loaders import SegmentationBatch, batch_segmentations
from unitscope.broden.reader import Segmentation
from unitscope.tally import Bilinear, Tally, TallyCounts


def bilinear_reference(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize with edge clamping, written from the formula (float64)."""
    in_h, in_w = a.shape

    def taps(dst: int, n_in: int, n_out: int) -> tuple[int, int, float]:
        src = max((dst + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(np.floor(src))
        i1 = min(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    out = np.zeros((out_h, out_w))
    for y in range(out_h):
        y0, y1, fy = taps(y, in_h, out_h)
        for x in range(out_w):
            x0, x1, fx = taps(x, in_w, out_w)
            top = a[y0, x0] * (1 - fx) + a[y0, x1] * fx
            bottom = a[y1, x0] * (1 - fx) + a[y1, x1] * fx
            out[y, x] = top * (1 - fy) + bottom * fy
    return out


def tally_reference(acts, thresholds, layers, image_labels, primary, categories, presence):
    """NetDissect's counting rules (spec §2.5) as loops over images, units and pixels."""
    batch, units, _, _ = acts.shape
    _, depth, sh, sw = layers.shape
    n_labels = len(primary)
    counts = lambda label: label > 0 and primary[label] >= 0  # noqa: E731
    inter = np.zeros((units, n_labels), np.int64)
    truth = np.zeros(n_labels, np.int64)
    act_cat = np.zeros((units, categories), np.int64)
    for b in range(batch):
        image_level = [s for s in image_labels[b] if counts(s)]
        present_anywhere = {primary[s] for s in image_level}
        for d in range(depth):
            for y in range(sh):
                for x in range(sw):
                    label = layers[b, d, y, x]
                    if counts(label):
                        truth[label] += 1
                        present_anywhere.add(primary[label])
        for s in image_level:
            truth[s] += sh * sw
        for u in range(units):
            mask = bilinear_reference(acts[b, u].astype(np.float64), sh, sw) > thresholds[u]
            size = int(mask.sum())
            present_under = {primary[s] for s in image_level}
            for y in range(sh):
                for x in range(sw):
                    if mask[y, x]:
                        for d in range(depth):
                            label = layers[b, d, y, x]
                            if counts(label):
                                inter[u, label] += 1
                                present_under.add(primary[label])
            for s in image_level:
                inter[u, s] += size
            present = present_anywhere if presence == "image" else present_under
            for k in present:
                act_cat[u, k] += size
    return inter, truth, act_cat


def random_case(seed: int, batch=5, units=4, h=4, w=4, scale=4, depth=3, n_labels=9, categories=3):
    """Dyadic activations (multiples of 1/8) and an integer upsampling factor make every bilinear value
    exact in float32 and float64 alike, so reference and engine must agree to the last pixel."""
    rng = np.random.default_rng(seed)
    acts = (rng.integers(-8, 24, size=(batch, units, h, w)) / 8).astype(np.float32)
    acts[0, 0] = -1.0  # a unit silent on an image
    thresholds = np.quantile(acts.transpose(1, 0, 2, 3).reshape(units, -1), 0.7, axis=1).astype(np.float32)
    thresholds[1] = acts[:, 1].max()  # a unit that never fires (strict >)
    layers = rng.integers(0, n_labels + 1, size=(batch, depth, h * scale, w * scale)).astype(np.int32)
    layers[:, 2] = 0  # a padding layer
    layers[1, :, :, :] = 0  # an image without pixel labels
    layers[2, 1, :3, :3] = layers[2, 0, :3, :3]  # the same label at one pixel in two layers
    image_labels = rng.integers(0, n_labels + 1, size=(batch, 2)).astype(np.int32)
    image_labels[3] = 0  # no image-level labels
    # label 0 and one label never count; primaries cycle so pixel labels make several categories present
    primary = np.array([-1] + [i % categories for i in range(n_labels)], dtype=np.int64)
    primary[5] = -1
    return acts, thresholds, layers, image_labels, primary, categories


def segmentations(layers: np.ndarray, image_labels: np.ndarray) -> SegmentationBatch:
    """The batch the loader would give for these layers (B, D, sh, sw) and image-level labels (B, K)."""
    items = [Segmentation(np.asarray(layers[b], np.int32), np.asarray(image_labels[b], np.int32))
             for b in range(len(layers))]
    return batch_segmentations(items, range(len(items)))


ADE20K = "ade20k-samples/ADE20K_2021_17_01/images/ADE/training/urban/street"  # not vendored (ADE20K terms)


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("presence", ["image", "mask"])
@pytest.mark.parametrize("seed", [0, 1])
def test_tally_matches_brute_force(presence: str, seed: int, device: str) -> None:
    acts, thresholds, layers, image_labels, primary, categories = random_case(seed)
    expected_inter, expected_truth, expected_act = tally_reference(
        acts, thresholds, layers, image_labels, primary, categories, presence
    )
    # two (image, unit) pairs per chunk: the chunking is exercised
    tally = Tally(thresholds, primary, categories, presence=presence, device=device, max_elements=2 * 16 * 16)
    tally.update(torch.from_numpy(acts), segmentations(layers, image_labels))
    counts = tally.counts()
    np.testing.assert_array_equal(counts.intersect, expected_inter)
    np.testing.assert_array_equal(counts.truth, expected_truth)
    np.testing.assert_array_equal(counts.act_cat, expected_act)
    assert counts.images == len(acts)
    assert counts.intersect[1].sum() == 0 and counts.activation[1] == 0
    assert expected_inter.sum() > 0 and expected_act.sum() > 0  # the case is not trivial
    # IoU from the reference counts, by the spec's formula
    union = expected_act[:, np.clip(primary, 0, None)] + expected_truth[None] - expected_inter
    expected_iou = np.where(union > 0, expected_inter / np.where(union > 0, union, 1), 0.0)
    expected_iou[:, primary < 0] = 0.0
    np.testing.assert_allclose(counts.iou(primary), expected_iou, rtol=0, atol=0)


@pytest.mark.parametrize("presence", ["image", "mask"])
def test_tally_on_real_ade20k_annotations(presence: str) -> None:
    """Real label structure: ADE20K's object and part maps (class = R/10·256 + G, nearest-resized to
    112×112, raw class numbers as labels) under dyadic 7×7 maps (×16 upsampling: exact)."""
    ade20k = real_data(ADE20K)
    names = ["ADE_train_00016869", "ADE_train_00016900", "ADE_train_00016964"]
    images = []
    for name in names:
        layers = []
        for path in [ade20k / f"{name}_seg.png", *sorted(ade20k.glob(f"{name}_parts_*.png"))]:
            rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int32)
            classes = Image.fromarray(rgb[..., 0] // 10 * 256 + rgb[..., 1])
            layers.append(np.asarray(classes.resize((112, 112), Image.NEAREST)))
        images.append(np.stack(layers))
    layers = np.zeros((len(images), max(len(i) for i in images), 112, 112), np.int32)
    for b, image in enumerate(images):
        layers[b, : len(image)] = image
    rng = np.random.default_rng(0)
    categories = 3
    primary = rng.integers(-1, categories, size=int(layers.max()) + 1)
    primary[0] = -1
    acts = (rng.integers(-8, 24, size=(len(images), 3, 7, 7)) / 8).astype(np.float32)
    thresholds = np.quantile(acts.transpose(1, 0, 2, 3).reshape(3, -1), 0.8, axis=1).astype(np.float32)
    image_labels = np.zeros((len(images), 0), np.int32)
    expected = tally_reference(acts, thresholds, layers, image_labels, primary, categories, presence)
    tally = Tally(thresholds, primary, categories, presence=presence)
    tally.update(torch.from_numpy(acts), segmentations(layers, image_labels))
    counts = tally.counts()
    for found, reference in zip((counts.intersect, counts.truth, counts.act_cat), expected):
        np.testing.assert_array_equal(found, reference)
    assert (counts.intersect > 0).sum() > 20  # many labels under the masks


def test_presence_rules_differ_as_specified() -> None:
    """One image, one unit firing on the left half; label 1 (category 0) on the left, label 2 (category 1)
    on the right only. Category 1 is present in the image, but not under the mask."""
    acts = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]] * 4]])  # (1, 1, 4, 4): columns 0-1 high
    layers = torch.zeros(1, 1, 4, 4, dtype=torch.int32)
    layers[0, 0, :, 0] = 1
    layers[0, 0, :, 3] = 2
    primary = np.array([-1, 0, 1])
    no_image_labels = torch.zeros(1, 0, dtype=torch.int32)
    results = {}
    for presence in ("image", "mask"):
        tally = Tally(np.array([0.5], np.float32), primary, 2, presence=presence)
        tally.update(acts, segmentations(layers.numpy(), no_image_labels.numpy()))
        results[presence] = tally.counts()
    # upsampling 4→4 is the identity: mask = columns 0 and 1 = 8 pixels
    assert results["image"].act_cat.tolist() == [[8, 8]]
    assert results["mask"].act_cat.tolist() == [[8, 0]]
    for counts in results.values():
        assert counts.intersect.tolist() == [[0, 4, 0]] and counts.truth.tolist() == [0, 4, 4]
    assert results["mask"].iou(primary)[0, 1] == pytest.approx(4 / (8 + 4 - 4))
    assert results["image"].iou(primary)[0, 2] == 0.0


def test_counts_are_additive_over_batches() -> None:
    acts, thresholds, layers, image_labels, primary, categories = random_case(3, batch=6)
    whole = Tally(thresholds, primary, categories)
    whole.update(torch.from_numpy(acts), segmentations(layers, image_labels))
    parts = []
    for part in (slice(0, 1), slice(1, 4), slice(4, 6)):
        tally = Tally(thresholds, primary, categories)
        tally.update(torch.from_numpy(acts[part]), segmentations(layers[part], image_labels[part]))
        parts.append(tally.counts())
    total = parts[0] + parts[1] + parts[2]
    for key, value in whole.counts().arrays().items():
        np.testing.assert_array_equal(total.arrays()[key], value)
    restored = TallyCounts.from_arrays(total.arrays())
    np.testing.assert_array_equal(restored.intersect, total.intersect)


@pytest.mark.parametrize(("size", "target"), [((7, 7), (112, 112)), ((13, 13), (113, 113)), ((5, 3), (12, 9))])
def test_upsampling_equals_pillow_bilinear(size, target) -> None:
    """Spec §2.4: F.interpolate(align_corners=False) reproduces Pillow's BILINEAR resize of a float image."""
    maps = torch.from_numpy(np.random.default_rng(0).standard_normal((2, *size)).astype(np.float32))
    ours = Bilinear(size, target).dense(maps).numpy()
    for i in range(2):
        pillow = np.asarray(Image.fromarray(maps[i].numpy(), mode="F").resize(target[::-1], Image.BILINEAR))
        np.testing.assert_allclose(ours[i], pillow, atol=1e-5)  # Pillow accumulates in float32
        np.testing.assert_allclose(ours[i], bilinear_reference(maps[i].numpy().astype(np.float64), *target), atol=1e-5)


@pytest.mark.parametrize(
    ("size", "target"),
    [
        ((7, 7), (112, 112)),  # 16-pixel cells, 24 at the edges: cut into cells of 4 × 4 tiles
        ((14, 14), (112, 112)),  # 8-pixel cells: 2 × 2 tiles each
        ((13, 13), (113, 113)),  # cells of 8 or 9 pixels: partly filled tiles
        ((40, 40), (112, 112)),  # cells of 2–3 pixels: one tile per cell, no tile test
        ((1, 3), (5, 12)),
        ((9, 7), (5, 4)),  # downsampling
    ],
)
@pytest.mark.parametrize("max_elements", [1024, 1 << 21])
def test_sparse_mask_tiles_equal_dense_comparison(size, target, max_elements) -> None:
    """The tally evaluates only tiles that can exceed T; it must find exactly the dense mask's pixels,
    also when T equals a map value (NetDissect thresholds are often order statistics) and on plateaus."""
    rng = np.random.default_rng(2)
    maps = torch.from_numpy(rng.standard_normal((40, *size)).astype(np.float32))
    maps[:5] = torch.round(maps[:5])  # plateaus at the threshold
    maps[5:10] = maps[5:10] * 1e-3 + 1e4  # large values, small differences: rounding matters
    thresholds = maps.reshape(40, -1)[torch.arange(40), rng.integers(0, size[0] * size[1], 40)]
    grid = Bilinear(size, target)
    dense = grid.dense(maps) > thresholds[:, None, None]
    found = torch.zeros(dense.shape, dtype=torch.int64)
    groups = 0
    for pair, tile_y, tile_x, mask in grid.mask_tiles(maps, thresholds, max_elements):
        ty, tx = grid.rows.layout[tile_y], grid.cols.layout[tile_x]  # (n, tile) outputs; padding repeats
        mask = mask.T.reshape(len(pair), ty.shape[1], tx.shape[1])
        index = (pair[:, None, None].expand_as(mask), ty[:, :, None].expand_as(mask), tx[:, None, :].expand_as(mask))
        found.index_put_(tuple(i[mask] for i in index), torch.ones(int(mask.sum()), dtype=torch.int64),
                         accumulate=True)
        groups += 1
    assert found.max() == 1  # each mask pixel reported once
    assert torch.equal(found.bool(), dense) and dense.sum() > 0
    if max_elements == 1024 and target[0] * target[1] > 1000:
        assert groups > 1  # the work was split


def test_layout_cuts_a_field_into_the_tiles_of_mask_tiles() -> None:
    grid = Bilinear((13, 13), (113, 113))
    field = torch.arange(2 * 113 * 113).reshape(2, 113, 113)
    tiles = grid.layout(field)
    assert tiles.shape == (2 * grid.tiles[0] * grid.tiles[1], grid.rows.tile * grid.cols.tile)
    b, ty, tx = 1, 3, 5
    expected = field[b][grid.rows.layout[ty][:, None], grid.cols.layout[tx][None, :]].reshape(-1)
    assert torch.equal(tiles[(b * grid.tiles[0] + ty) * grid.tiles[1] + tx], expected)
