"""The two passes of a dissection over the images: exact thresholds first, then the tally (docs/engine.md)."""

from __future__ import annotations

import functools
from contextlib import closing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unitscope.activations import ActivationCacheWriter
from unitscope.dissect.null import PermutedLabels, image_kinds, permutations
from unitscope.dissect.sources import Run, activation_batches, every_row, labelled_batches
from unitscope.rotation import rotate_activations, rotation_matrix
from unitscope.settings import Rotation
from unitscope.tally import Tally, update_tallies
from unitscope.thresholds import TopImages, TopK, required_k


class Transform:
    """The per-batch change of basis (identity without rotation), on the run's device."""

    def __init__(self, rotation: Rotation | None, device: torch.device) -> None:
        self.rotation, self.device = rotation, device
        self.matrices: dict[int, torch.Tensor] = {}

    def __call__(self, acts: torch.Tensor) -> torch.Tensor:
        acts = acts.to(device=self.device, dtype=torch.float32)
        if acts.dim() == 2:  # (B, C) outputs are C units with 1×1 maps
            acts = acts[:, :, None, None]
        if self.rotation is None:
            return acts
        units = acts.shape[1]
        if units not in self.matrices:
            r = self.rotation
            matrix = _rotation_matrix(units, r.alpha, r.seed, r.unpermute)
            self.matrices[units] = torch.tensor(matrix, dtype=torch.float32, device=self.device)
        return rotate_activations(acts, self.matrices[units]).to(torch.float32)


@functools.lru_cache(maxsize=8)
def _rotation_matrix(units: int, alpha: float, seed: int, unpermute: bool) -> np.ndarray:
    """P·Q^α, computed once per process: its Schur decomposition is O(units³), and both passes need it."""
    matrix = np.asarray(rotation_matrix(units, alpha, seed, unpermute=unpermute))
    matrix.flags.writeable = False
    return matrix


@dataclass
class LayerTopK:
    topk: TopK
    images: TopImages
    map_size: tuple[int, int]


def topk_pass(run: Run, cache_root: Path | None) -> dict[str, LayerTopK]:
    """Pass 1: per-unit top-k values and top images of every layer over ``run.rows``.

    With ``cache_root``, the raw activations are also written there as an activation cache for pass 2.
    """
    transform = Transform(run.settings.rotation, run.device)
    writer = None
    if cache_root is not None:
        writer = ActivationCacheWriter(
            cache_root, image_start=run.rows.start, image_stop=run.rows.stop, model=run.source_meta["model"],
            model_spec=run.source_meta["model_spec"], dataset=run.dataset_meta(),
            extra={"weights_sha256": run.source_meta["weights_sha256"], "checkpoint": run.source_meta["checkpoint"]},
        )
    state: dict[str, LayerTopK] = {}
    try:
        with closing(every_row(run, activation_batches(run), "thresholds")) as batches:
            for indices, raw in batches:
                if writer is not None:
                    writer.write(torch.from_numpy(indices), raw)
                for layer in run.layers:
                    acts = transform(raw[layer])
                    if layer not in state:
                        units, (h, w) = acts.shape[1], tuple(acts.shape[2:])
                        k = required_k(run.images * h * w, run.settings.level)
                        top = TopImages.empty(units, run.settings.top_k)
                        state[layer] = LayerTopK(TopK(units, k, run.device), top, (h, w))
                    state[layer].topk.update(acts)
                    state[layer].images.update(indices, acts.amax(dim=(2, 3)).cpu().numpy())
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return state


@dataclass
class LayerTally:
    tally: Tally
    top: TopImages
    maps: np.ndarray  # (units, k, h, w) float32
    filled: np.ndarray  # (units, k) bool
    lookup: dict[int, list[tuple[int, int]]]  # image index -> [(unit, rank)]
    null: list[Tally]  # one per permutation of the significance null (settings.null_permutations)


def tally_pass(run: Run, thresholds: Mapping[str, np.ndarray], tops: Mapping[str, TopImages],
                map_sizes: Mapping[str, tuple[int, int]], caches: Sequence[Path] | None) -> dict[str, LayerTally]:
    """Pass 2: exact counts of every layer over ``run.rows`` and the maps of the units' top images; with
    ``settings.null_permutations``, also the counts of the permutation null (:mod:`unitscope.dissect.null`)."""
    transform = Transform(run.settings.rotation, run.device)
    primary = np.asarray(run.dataset.primary)
    settings = run.settings
    permuted = None
    if settings.null_permutations:
        kinds = image_kinds(run.dataset, run.images)
        permuted = PermutedLabels(run.dataset, permutations(kinds, settings.null_permutations, settings.null_seed))

    def tally(layer: str) -> Tally:
        return Tally(thresholds[layer], primary, len(run.dataset.categories), settings.presence, run.device)

    state: dict[str, LayerTally] = {}
    for layer in run.layers:
        top = tops[layer]
        units, k = top.indices.shape
        lookup: dict[int, list[tuple[int, int]]] = {}
        for unit in range(units):
            for rank in range(k):
                lookup.setdefault(int(top.indices[unit, rank]), []).append((unit, rank))
        state[layer] = LayerTally(
            tally(layer), top, np.zeros((units, k, *map_sizes[layer]), np.float32), np.zeros((units, k), bool),
            lookup, [tally(layer) for _ in range(settings.null_permutations)],
        )
    with closing(every_row(run, labelled_batches(run, caches), "tally")) as batches:
        for indices, raw, seg in batches:
            null_labels = permuted.batches(indices) if permuted is not None else []
            for layer in run.layers:
                acts = transform(raw[layer])
                layer_state = state[layer]
                update_tallies([layer_state.tally, *layer_state.null], acts, [seg, *null_labels])
                hits = [(row, unit, rank) for row, image in enumerate(indices.tolist())
                        for unit, rank in layer_state.lookup.get(image, ())]
                if hits:  # one device-to-host copy per batch, not one per top image
                    rows, units, ranks = (list(column) for column in zip(*hits))
                    layer_state.maps[units, ranks] = acts[rows, units].cpu().numpy()
                    layer_state.filled[units, ranks] = True
    return state
