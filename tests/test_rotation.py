"""Random rotations (spec §3): group properties, NetDissect's quirks, and that rotating loses no information."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from unitscope.rotation import (
    random_rotation,
    rotate_activations,
    rotation_matrix,
    rotation_power,
    unpermutation,
)


def plane_rotation(theta: float) -> np.ndarray:
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


def assert_rotation(m: np.ndarray) -> None:
    np.testing.assert_allclose(m @ m.T, np.eye(len(m)), atol=1e-10)
    assert np.linalg.det(m) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 5, 16, 33])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_rotation_is_special_orthogonal_and_seeded(n, seed):
    q = random_rotation(n, seed)
    assert q.dtype == np.float64 and q.shape == (n, n)
    assert_rotation(q)
    np.testing.assert_array_equal(q, random_rotation(n, seed))


def test_random_rotation_follows_the_recipe():
    # QR of RandomState(seed).normal, columns times sign(diag R), first row negated when det < 0.
    normal = np.random.RandomState(3).normal(size=(6, 6))
    q, r = np.linalg.qr(normal)
    expected = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(expected) < 0:
        expected[0] *= -1
    np.testing.assert_allclose(random_rotation(6, 3), expected, atol=1e-14)
    assert not np.allclose(random_rotation(6, 3), random_rotation(6, 4))


@pytest.mark.parametrize("n", [6, 7, 24])
def test_powers_lie_on_a_geodesic_of_rotations(n):
    q = random_rotation(n, 2)
    np.testing.assert_array_equal(rotation_power(q, 0.0), np.eye(n))
    for alpha in (0.2, 0.5, 1.0, 1.7):
        assert_rotation(rotation_power(q, alpha))
    for alpha, beta in ((0.2, 0.3), (0.5, 0.5), (0.4, 0.6), (1.0, -0.25)):
        np.testing.assert_allclose(
            rotation_power(q, alpha) @ rotation_power(q, beta), rotation_power(q, alpha + beta), atol=1e-10
        )
    # The rebuilt full rotation keeps Q's spectrum (eigenvalues e^{±iθ}).
    spectrum = lambda m: np.sort_complex(np.round(np.linalg.eigvals(m), 8))  # noqa: E731
    np.testing.assert_allclose(spectrum(rotation_power(q, 1.0)), spectrum(q), atol=1e-7)


def test_block_orientation_is_fixed_as_in_netdissect():
    # Angles come from arccos (>= 0) and every block is rebuilt counter-clockwise, so a clockwise
    # plane rotation's full power is the counter-clockwise one: Q^1 != Q (spec §3 subtlety).
    np.testing.assert_allclose(rotation_power(plane_rotation(0.7), 0.5), plane_rotation(0.35), atol=1e-12)
    np.testing.assert_allclose(rotation_power(plane_rotation(-0.7), 1.0), plane_rotation(0.7), atol=1e-12)


def test_full_rebuilt_rotation_differs_from_q_where_schur_blocks_turn_clockwise():
    # Spec §3, n = 256, seed 1: R(1) has Q's angles but every plane turns counter-clockwise, so
    # R(1) = Q exactly in the planes whose Schur block of Q is counter-clockwise, and differs by
    # ||B(θ) - B(-θ)||_F^2 = 8 sin^2 θ in each clockwise one. Which planes LAPACK returns clockwise is
    # its own choice (it moved between numpy/scipy builds: ||R(1) - Q||_F was 16.1, then 15.97), so the
    # expected norm is computed here from this machine's Schur form, not pinned.
    q = random_rotation(256, 1)
    full = rotation_power(q, 1.0)
    assert np.linalg.norm(q - np.eye(256)) == pytest.approx(22.6, abs=0.05)  # Haar sample of RandomState(1)
    assert np.linalg.norm(full - np.eye(256)) == pytest.approx(np.linalg.norm(q - np.eye(256)), abs=1e-8)
    t, _ = scipy.linalg.schur(q, output="real")
    lower = np.diagonal(t, offset=-1)
    blocks = np.flatnonzero(lower != 0.0)
    assert len(blocks) == 128  # generic even n: 128 planes, no real eigenvalues
    clockwise = blocks[lower[blocks] < 0]
    expected = np.sqrt(8 * np.sum(1 - np.diagonal(t)[clockwise] ** 2))
    assert np.linalg.norm(full - q) == pytest.approx(expected, abs=1e-6)
    assert 0 < len(clockwise) < 128  # some planes of each orientation: R(1) != Q, as the spec reports


def test_odd_dimension_keeps_the_fixed_axis():
    # Rotation by 0.8 about an arbitrary axis of R^3: the +1 eigenvector stays fixed for every power.
    axis_basis = np.linalg.qr(np.random.RandomState(5).normal(size=(3, 3)))[0]
    if np.linalg.det(axis_basis) < 0:
        axis_basis[:, 0] *= -1
    about_z = np.eye(3)
    about_z[:2, :2] = plane_rotation(0.8)
    q = axis_basis @ about_z @ axis_basis.T
    axis = axis_basis[:, 2]
    for alpha in (0.25, 0.5, 1.0):
        power = rotation_power(q, alpha)
        assert_rotation(power)
        np.testing.assert_allclose(power @ axis, axis, atol=1e-12)
        # Rotation angle about the axis: trace = 1 + 2 cos(alpha * 0.8).
        assert np.trace(power) == pytest.approx(1 + 2 * np.cos(alpha * 0.8), abs=1e-12)


def test_half_turns_are_paired_into_planes():
    # diag(-1, -1, 1) is a half turn about z: its square root is a quarter turn about z.
    q = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(rotation_power(q, 1.0), q, atol=1e-12)
    half = rotation_power(q, 0.5)
    assert_rotation(half)
    np.testing.assert_allclose(half @ half, q, atol=1e-12)
    np.testing.assert_allclose(half[2], [0, 0, 1], atol=1e-12)
    assert np.trace(half) == pytest.approx(1.0, abs=1e-12)


def test_rejects_reflections_and_non_orthogonal_matrices():
    with pytest.raises(ValueError, match="reflection"):
        rotation_power(np.diag([-1.0, 1.0, 1.0]), 0.5)
    with pytest.raises(ValueError, match="not orthogonal"):
        rotation_power(np.array([[1.0, 0.1], [0.0, 1.0]]), 0.5)
    with pytest.raises(ValueError, match="square"):
        rotation_power(np.ones((2, 3)), 0.5)


def test_unpermutation_inverts_a_permutation():
    order = np.random.RandomState(0).permutation(9)
    perm = np.eye(9)[order]  # row i has its 1 in column order[i]
    p = unpermutation(perm)
    np.testing.assert_array_equal(p, perm.T)
    np.testing.assert_array_equal(p @ perm, np.eye(9))


def test_unpermutation_is_greedy_by_row_maximum():
    # Row 1 has the largest maximum (0.9, column 0) and takes column 0 first; row 0's best column
    # is then taken, so it gets its second best (column 2); row 2 gets what is left (column 1).
    m = np.array([[0.8, 0.1, 0.5], [0.9, 0.2, 0.0], [0.7, 0.3, 0.6]])
    expected = np.zeros((3, 3))
    expected[0, 1] = expected[2, 0] = expected[1, 2] = 1  # P[col, row]
    np.testing.assert_array_equal(unpermutation(m), expected)


@pytest.mark.parametrize("n", [8, 31])
def test_rotation_matrix_is_unpermuted_power(n):
    q = random_rotation(n, 4)
    p = unpermutation(rotation_power(q, 1.0))
    np.testing.assert_array_equal(p.sum(axis=0), np.ones(n))
    np.testing.assert_array_equal(p.sum(axis=1), np.ones(n))
    np.testing.assert_allclose(rotation_matrix(n, 0.6, 4), p @ rotation_power(q, 0.6), atol=1e-13)
    np.testing.assert_allclose(rotation_matrix(n, 0.6, 4, unpermute=False), rotation_power(q, 0.6), atol=1e-13)
    np.testing.assert_array_equal(rotation_matrix(n, 0.0, 4), p)  # alpha = 0: a relabelling of units
    # Unpermuted, each rotated unit's strongest original unit is itself more often than by chance.
    full = rotation_matrix(n, 1.0, 4)
    assert np.mean(np.argmax(full, axis=1) == np.arange(n)) > 0.5


def test_rotate_activations_matches_a_per_position_loop():
    generator = torch.Generator().manual_seed(0)
    acts = torch.randn(3, 5, 4, 2, generator=generator)
    matrix = rotation_matrix(5, 0.5, 1)
    rotated = rotate_activations(acts, torch.from_numpy(matrix))
    assert rotated.dtype == torch.float32 and rotated.shape == acts.shape
    a = acts.numpy().astype(np.float64)
    expected = np.empty_like(a)
    for b in range(3):
        for y in range(4):
            for x in range(2):
                expected[b, :, y, x] = matrix @ a[b, :, y, x]
    np.testing.assert_allclose(rotated.numpy(), expected, atol=1e-5)
    flat = rotate_activations(acts[:, :, 0, 0], torch.from_numpy(matrix))  # (B, U) layers: 1x1 maps
    np.testing.assert_allclose(flat.numpy(), expected[:, :, 0, 0], atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        rotate_activations(acts, torch.eye(4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rotate_activations_on_cuda():
    acts = torch.randn(2, 6, 3, 3)
    matrix = torch.from_numpy(rotation_matrix(6, 0.3, 2))
    on_gpu = rotate_activations(acts.cuda(), matrix)
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), rotate_activations(acts, matrix), atol=1e-5, rtol=1e-5)


def test_rotation_preserves_information():
    # A random-feature classification problem: a linear probe fits the rotated features exactly as
    # well (the probe absorbs M^T), and inner products between feature vectors are unchanged.
    rng = np.random.RandomState(0)
    units, samples = 12, 400
    features = rng.normal(size=(samples, units, 2, 2))
    weights = rng.normal(size=units * 4)
    labels = (features.reshape(samples, -1) @ weights + 0.5 * rng.normal(size=samples) > 0).astype(float)
    matrix = torch.from_numpy(rotation_matrix(units, 0.7, 3))
    rotated = rotate_activations(torch.from_numpy(features), matrix).numpy()

    def probe_accuracy(x: np.ndarray) -> float:
        design = np.hstack([x.reshape(samples, -1), np.ones((samples, 1))])
        train, test = slice(0, 300), slice(300, None)
        coef = np.linalg.lstsq(design[train], 2 * labels[train] - 1, rcond=None)[0]
        return float(np.mean((design[test] @ coef > 0) == labels[test]))

    before, after = probe_accuracy(features), probe_accuracy(rotated)
    assert before > 0.8 and after == pytest.approx(before)
    per_position = lambda x: np.einsum("aupq,bupq->pqab", x, x)  # noqa: E731
    np.testing.assert_allclose(per_position(rotated), per_position(features), atol=1e-9)
    assert not np.allclose(rotated, features, atol=0.1)  # the basis did change
