"""Effective dimension: the participation ratio against NumPy's covariance and eigenvalues, rotation
invariance, a planted low-dimensional layer, the command line and the report panel."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from test_dissect import DyadicNet, make_dataset, reference_activations
from unitscope.cli import main
from unitscope.dimension import measure, participation_ratio, variance_shares
from unitscope.rotation import random_rotation
from unitscope.settings import DissectSettings


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("broden") / "ds")


SETTINGS = DissectSettings(normalize="none", batch_size=4)


def _numpy_dimension(acts: np.ndarray) -> tuple[float, np.ndarray]:
    samples = acts.astype(np.float64).transpose(1, 0, 2, 3).reshape(acts.shape[1], -1)
    eigenvalues = np.linalg.eigvalsh(np.cov(samples, bias=True))[::-1]
    return eigenvalues.sum() ** 2 / (eigenvalues**2).sum(), np.cumsum(eigenvalues) / eigenvalues.sum()


def test_participation_ratio_matches_eigenvalues(dataset, tmp_path) -> None:
    model = DyadicNet(units=6)
    written = measure(dataset, model, ["mixed", "coarse"], tmp_path / "out", SETTINGS)
    for layer, acts in reference_activations(dataset, model).items():
        result = json.loads((written[layer] / "dimension.json").read_text())
        ratio, shares = _numpy_dimension(acts)
        assert result["participation_ratio"] == pytest.approx(ratio, rel=1e-9)
        np.testing.assert_allclose(result["variance_shares"], shares[:6], rtol=1e-9)
        assert result["samples"] == acts.shape[0] * acts.shape[2] * acts.shape[3] and result["units"] == 6
        meta = json.loads((written[layer] / "meta.json").read_text())
        assert meta["kind"] == "dimension" and meta["layer"] == layer


class Planted(nn.Module):
    """Twelve units that are mixtures of three pooled colour channels: a three-dimensional layer; with
    ``rotation``, the same layer in a rotated basis."""

    def __init__(self, rotation: np.ndarray | None = None) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        mix = torch.randn(12, 3, generator=generator, dtype=torch.float64)
        if rotation is not None:
            mix = torch.from_numpy(rotation) @ mix
        self.register_buffer("mix", mix.float())
        self.units = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(torch.einsum("uc,bchw->buhw", self.mix, nn.functional.avg_pool2d(x, 8)))


def test_a_rotation_leaves_the_dimension_and_a_planted_layer_has_at_most_three(dataset, tmp_path) -> None:
    plain = measure(dataset, Planted(), ["units"], tmp_path / "plain", SETTINGS)["units"]
    rotated = measure(dataset, Planted(random_rotation(12, 5)), ["units"], tmp_path / "rot", SETTINGS)["units"]
    a, b = (json.loads((d / "dimension.json").read_text()) for d in (plain, rotated))
    assert a["participation_ratio"] == pytest.approx(b["participation_ratio"], rel=1e-5)
    np.testing.assert_allclose(a["variance_shares"], b["variance_shares"], rtol=1e-5)
    assert 1 <= a["participation_ratio"] <= 3
    assert a["variance_shares"][2] == pytest.approx(1.0, abs=1e-6)  # three components carry everything


def test_edge_cases() -> None:
    assert participation_ratio(np.zeros((3, 3))) == 0.0
    assert participation_ratio(np.eye(4)) == pytest.approx(4.0)
    assert variance_shares(np.diag([3.0, 1.0]), 5) == [0.75, 1.0]


def test_cli_writes_a_result_per_layer(dataset, tmp_path) -> None:
    result = CliRunner().invoke(main, ["dimension", "--dataset", str(dataset.root), "--model",
                                       "python:test_dissect:DyadicNet", "--normalize", "none", "--layer", "mixed",
                                       "--out", str(tmp_path / "out"), "--name", "dyadic", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "out" / "mixed" / "meta.json").read_text())
    assert meta["model"] == "dyadic"
    bad = CliRunner().invoke(main, ["dimension", "--dataset", str(dataset.root), "--layer", "mixed", "--out",
                                    str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "--model SPEC or --activations" in bad.output and not (tmp_path / "bad").exists()
