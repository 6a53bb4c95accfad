"""Random bases for the axis-alignment experiment (spec §3): NetDissect's rotations, reproduced exactly.

A layer's activations are re-expressed in a rotated basis, a'(x, y) = M · a(x, y) at every position, with
M = P · Q^α: Q a seeded Haar-random rotation in SO(n), Q^α a point on the geodesic from the identity
(α = 0) to the full rotation (α = 1), and P an optional un-permutation that keeps rotated unit j closest
to original unit j. Rotations preserve all information (a following layer could absorb M⁻¹ = Mᵀ), so any
change in interpretability measures how axis-aligned the learned representation is.

Following NetDissect's ``src/rotate.py`` exactly (NumPy ``RandomState``, LAPACK QR and real Schur):
the powers are rebuilt from Q's rotation *angles* arccos(T_ii) ∈ [0, π] with a fixed 2×2 block
orientation, so the rebuilt α = 1 matrix has Q's spectrum but is **not** Q (about half the Schur blocks
of Q turn the other way). Use :func:`rotation_matrix` to reproduce published rotated runs.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch


def random_rotation(n: int, seed: int) -> np.ndarray:
    """A Haar-random rotation in SO(n), float64 (spec §3).

    QR of a seeded standard-normal n×n matrix, columns times the signs of R's diagonal (Haar on O(n)),
    then the first row negated if the determinant is negative.
    """
    if n < 1:
        raise ValueError(f"rotation size must be a positive number of units, got {n}")
    q, r = np.linalg.qr(np.random.RandomState(seed).normal(size=(n, n)))
    d = np.diagonal(r)
    q = q * (d / np.abs(d))
    if np.linalg.det(q) < 0:
        q[0] = -q[0]
    return q


def rotation_power(q: np.ndarray, alpha: float) -> np.ndarray:
    """Q^α along the geodesic from the identity, rebuilt from Q's real Schur form as NetDissect does.

    Q = W T Wᵀ; every 2×2 block of T contributes its angle θ = arccos(T_ii) (clipped to [-1, 1]) and
    is rebuilt as the rotation [[cos αθ, -sin αθ], [sin αθ, cos αθ]]; the result is W · B · Wᵀ.
    NetDissect reads the angles at every other diagonal entry, which assumes n even and no real
    eigenvalues; here the block structure is read from T's subdiagonal, which gives the same matrix in
    that (generic) case and also handles the rest: a 1×1 block +1 (one in every generic odd-n
    rotation, anywhere on the diagonal) stays 1, and the 1×1 blocks −1 (an even number in SO(n)) are
    paired into rotations by απ. α = 0 returns the identity exactly.
    """
    q = _check_rotation(q)
    return _rebuild(*_canonical_form(q), alpha)


def unpermutation(q: np.ndarray) -> np.ndarray:
    """The permutation P that un-permutes a rotation: rotated unit j of P·Q stays closest to unit j.

    Rows of Q are visited in order of decreasing row maximum; each takes its largest still-free column
    c, and P[c, row] = 1 moves that row to position c. For a permutation matrix Q this gives P = Q⁻¹.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or q.shape[0] != q.shape[1]:
        raise ValueError(f"unpermutation needs a square matrix, got shape {q.shape}")
    n = len(q)
    permutation = np.zeros((n, n))
    free = np.ones(n, dtype=bool)
    for row in np.argsort(-q.max(axis=1), kind="stable"):
        col = int(np.argmax(np.where(free, q[row], -np.inf)))
        permutation[col, row] = 1.0
        free[col] = False
    return permutation


def rotation_matrix(n: int, alpha: float, seed: int, unpermute: bool = True) -> np.ndarray:
    """NetDissect's rotation for n units: P · Q^α (``--rotation_seed``/``--rotation_power``, spec §3).

    With ``unpermute`` (always on in NetDissect's ``rundissect.sh``) P is the :func:`unpermutation` of
    the rebuilt full rotation Q^1, applied to every power (so α = 0 gives P, a mere relabelling of
    units); without it P = I.
    """
    q = random_rotation(n, seed)
    form = _canonical_form(q)
    power = _rebuild(*form, alpha)
    if not unpermute:
        return power
    return unpermutation(_rebuild(*form, 1.0)) @ power


def rotate_activations(acts: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """a'(x, y) = M · a(x, y) at every position of (B, U, ...) activations (B, U, h, w) or (B, U).

    The matrix is cast to the activations' dtype and device; one batched matmul, on any device.
    """
    if acts.ndim < 2:
        raise ValueError(f"activations must be (batch, units, ...), got shape {tuple(acts.shape)}")
    units = acts.shape[1]
    if matrix.shape != (units, units):
        raise ValueError(
            f"rotation matrix of shape {tuple(matrix.shape)} does not fit activations of shape "
            f"{tuple(acts.shape)} (expected ({units}, {units}) for {units} units)"
        )
    matrix = matrix.to(dtype=acts.dtype, device=acts.device)
    flat = acts.reshape(acts.shape[0], units, -1)
    return torch.matmul(matrix, flat).reshape(acts.shape)


def _check_rotation(q: np.ndarray) -> np.ndarray:
    """``q`` as float64, or a ValueError if it is not an orthogonal square matrix."""
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or q.shape[0] != q.shape[1]:
        raise ValueError(f"a rotation must be a square matrix, got shape {q.shape}")
    error = np.abs(q @ q.T - np.eye(len(q))).max(initial=0.0)
    if error > 1e-6:
        raise ValueError(f"matrix is not orthogonal (max |Q Qᵀ - I| = {error:.2g})")
    return q


def _canonical_form(q: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """Q = W T Wᵀ read as planes of rotation: W and (i, j, θ) for each plane of columns i, j of W.

    1×1 blocks +1 are fixed axes (left out); 1×1 blocks −1 are paired into planes with θ = π.
    """
    t, w = scipy.linalg.schur(q, output="real")
    planes: list[tuple[int, int, float]] = []
    flips: list[int] = []
    i = 0
    while i < len(t):
        if i + 1 < len(t) and t[i + 1, i] != 0.0:  # LAPACK writes exact zeros between blocks
            planes.append((i, i + 1, float(np.arccos(np.clip(t[i, i], -1.0, 1.0)))))
            i += 2
            continue
        if t[i, i] < 0:
            flips.append(i)
        i += 1
    if len(flips) % 2:
        raise ValueError("matrix is a reflection (determinant -1), not a rotation; its powers are not real")
    planes += [(a, b, float(np.pi)) for a, b in zip(flips[::2], flips[1::2])]
    return w, planes


def _rebuild(w: np.ndarray, planes: list[tuple[int, int, float]], alpha: float) -> np.ndarray:
    """W · blockdiag(rotations by α·θ in each plane) · Wᵀ (the identity, exactly, for α = 0)."""
    if not np.isfinite(alpha):
        raise ValueError(f"rotation power must be a finite number, got {alpha}")
    n = len(w)
    if alpha == 0:
        return np.eye(n)
    blocks = np.eye(n)
    for i, j, theta in planes:
        c, s = np.cos(alpha * theta), np.sin(alpha * theta)
        blocks[i, i], blocks[i, j], blocks[j, i], blocks[j, j] = c, -s, s, c
    return w @ blocks @ w.T
