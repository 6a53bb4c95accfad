"""The effective dimension of a layer: how many directions its units really span (docs/analyses.md).

The covariance C of a layer's units is taken over every image and spatial position of the dataset; its
*participation ratio* PR = (Σλ)² / Σλ² = tr(C)² / ‖C‖²_F is the number of equally strong directions that
would give the same spread of variance (1: one direction; the number of units: all equally strong). A
rotation of the basis leaves C's eigenvalues unchanged, so this is a property of the representation, not of
its units: a layer whose PR is far below its unit count can only re-mix those few directions when rotated,
which is why the rotation experiment of a low-dimensional layer is a control, not a test of axis alignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import numpy as np
import torch

from unitscope import __version__
from unitscope.broden.reader import BrodenDataset
from unitscope.dissect.passes import Transform
from unitscope.dissect.sources import Source, activation_batches, every_row, prepare
from unitscope.dissect.tables import output_dir
from unitscope.io import publish_directory, write_json
from unitscope.settings import DissectSettings

#: ``kind`` and ``schema_version`` of a dimension result's ``meta.json``.
KIND = "dimension"
SCHEMA_VERSION = 1
#: Components whose cumulative share of the variance is recorded.
COMPONENTS = 10


class Covariance:
    """Streaming covariance of a layer's units over images and positions (sums in float64, on the device of
    the activations)."""

    def __init__(self, units: int, device: torch.device | str = "cpu") -> None:
        self.count = 0
        self.total = torch.zeros(units, dtype=torch.float64, device=device)
        self.products = torch.zeros(units, units, dtype=torch.float64, device=device)

    def update(self, acts: torch.Tensor) -> None:
        """Add activations (B, units, h, w): every position of every image is one sample."""
        samples = acts.transpose(0, 1).reshape(acts.shape[1], -1).to(device=self.total.device, dtype=torch.float64)
        self.count += samples.shape[1]
        self.total += samples.sum(dim=1)
        self.products += samples @ samples.T

    def matrix(self) -> np.ndarray:
        """The covariance (units, units), float64."""
        mean = self.total / self.count
        return ((self.products - self.count * torch.outer(mean, mean)) / self.count).cpu().numpy()


def participation_ratio(covariance: np.ndarray) -> float:
    """tr(C)² / ‖C‖²_F: the number of directions the variance effectively spreads over (0 with no variance)."""
    squared = float((covariance * covariance).sum())
    return float(np.trace(covariance)) ** 2 / squared if squared > 0 else 0.0


def variance_shares(covariance: np.ndarray, components: int = COMPONENTS) -> list[float]:
    """The cumulative share of the variance carried by the first ``components`` principal components."""
    eigenvalues = np.clip(np.linalg.eigvalsh(covariance)[::-1], 0.0, None)
    total = eigenvalues.sum()
    if total <= 0:
        return [0.0] * min(components, len(eigenvalues))
    return (np.cumsum(eigenvalues[:components]) / total).tolist()


def measure(dataset: BrodenDataset | str | Path, source: Source, layers: Sequence[str], out_dir: str | Path,
            settings: DissectSettings | None = None) -> dict[str, Path]:
    """The effective dimension of ``layers`` over the dataset's images (a model or activation caches, as
    :func:`unitscope.dissect.dissect` takes them), written to ``<out_dir>/<layer>/``. Returns those directories."""
    dataset = dataset if isinstance(dataset, BrodenDataset) else BrodenDataset(dataset)
    run = prepare(dataset, source, layers, settings or DissectSettings(), None)
    transform = Transform(None, run.device)
    covariances: dict[str, Covariance] = {}
    with closing(every_row(run, activation_batches(run), "covariance")) as batches:
        for _, raw in batches:
            for layer in run.layers:
                acts = transform(raw[layer])
                covariances.setdefault(layer, Covariance(acts.shape[1], acts.device)).update(acts)
    out_dir = Path(out_dir)
    written = {}
    with output_dir(out_dir) as scratch:
        for layer, covariance in covariances.items():
            matrix = covariance.matrix()
            units = matrix.shape[0]
            meta = {**run.identity(KIND, SCHEMA_VERSION, layer, units), "dataset": run.dataset_meta(),
                    "categories": list(run.dataset.categories),
                    "normalize": run.source_meta["normalize"], "tags": dict(run.settings.tags),
                    "unitscope_version": __version__}
            result = {"units": units, "samples": covariance.count, "participation_ratio": participation_ratio(matrix),
                      "variance_shares": variance_shares(matrix)}
            write_json(meta, scratch / layer / "meta.json")
            write_json(result, scratch / layer / "dimension.json")
            written[layer] = out_dir / layer
            publish_directory(scratch / layer, written[layer])
    return written
