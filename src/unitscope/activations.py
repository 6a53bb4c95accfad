"""Streaming activation extraction (spec §2.2) and the on-disk activation cache (``docs/outputs.md``).

:func:`extract_batches` runs one forward pass per batch with a :class:`unitscope.hooks.Trace` on every
requested layer.
:class:`ActivationCacheWriter` streams those batches into ``<dir>/<layer>/activations.npy`` (float32,
``(N, U, h, w)``), and :func:`read_cache_batches` reads one or several shard caches back in image
order, a batch at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.format import open_memmap
from torch import nn

from unitscope.hooks import LayerError, Trace
from unitscope.models import normalizer
from unitscope.io import write_json

ARRAY_NAME = "activations.npy"
META_NAME = "activations.json"
#: ``kind`` and ``schema_version`` of an activation cache's ``activations.json`` (docs/outputs.md).
KIND = "activations"
SCHEMA_VERSION = 1


def extract_batches(
    model: nn.Module,
    layers: Sequence[str],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    normalize: str,
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Yield ``(indices, {layer: float32 (B, U, h, w) on device})`` for each ``(indices, uint8 images)`` batch.

    One forward pass per batch serves every layer (a :class:`unitscope.hooks.Trace`). A layer whose output is
    ``(B, C)`` gives 1×1 maps; a module called several times per forward is addressed per call
    (``name:N``). After the first batch the forward pass stops as soon as every layer is captured, so
    shallow layers do not pay for the rest of the network.
    """
    layers = list(dict.fromkeys(layers))
    model.eval().to(device)
    to_input = normalizer(normalize)
    with Trace(model, layers, stop=True) as trace, torch.inference_mode():
        for indices, images in batches:
            outputs = trace(to_input(images.to(device, non_blocking=True)))
            yield indices, {name: _as_maps(name, outputs[name]) for name in layers}


def layer_sizes(model: nn.Module, layers: Sequence[str], image_size: tuple[int, int]) -> dict[str, int]:
    """Values per image of each layer's output (units × h × w): one forward pass of a zero image, on the
    model's device (free on torch's ``meta`` device). Four bytes each in an activation cache."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with Trace(model.eval(), layers) as trace, torch.inference_mode():
        outputs = trace(torch.zeros(1, 3, *image_size, device=device))
    return {name: int(outputs[name][0].numel()) for name in layers}


def _as_maps(name: str, output: torch.Tensor) -> torch.Tensor:
    if output.ndim == 2:
        output = output[:, :, None, None]
    if output.ndim != 4:
        raise LayerError(f"layer {name!r} outputs shape {tuple(output.shape)}; expected (B, C, h, w) or (B, C)")
    return output


class ActivationCacheWriter:
    """Stream extracted batches of one model shard into ``<out>/<layer>/activations.npy`` + ``.json``.

    Rows ``image_start:image_stop`` of the dataset map to rows ``0:image_stop-image_start`` of each array.
    Arrays are created at the first batch (when the shapes are known) under a temporary name and
    renamed into place by :meth:`close` once every row was written; on error they are removed. Use as a
    context manager.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        image_start: int,
        image_stop: int,
        model: str,
        model_spec: str,
        dataset: Mapping[str, Any],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if image_stop <= image_start:
            raise ValueError(f"empty image range {image_start}:{image_stop}")
        self.out = Path(out)
        self.image_start, self.image_stop = image_start, image_stop
        self._meta = {"kind": KIND, "schema_version": SCHEMA_VERSION, "model": model, "model_spec": model_spec,
                      "dataset": dict(dataset)}
        self._extra = dict(extra or {})
        self._arrays: dict[str, np.memmap] = {}
        self._written = np.zeros(image_stop - image_start, dtype=bool)
        self._created: list[str] = []  # layer directories this writer made (removed again on abort)
        self._created_out = False

    def __enter__(self) -> ActivationCacheWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _tmp_path(self, layer: str) -> Path:
        return self.out / layer / f".{ARRAY_NAME}.partial"

    def write(self, indices: torch.Tensor, activations: Mapping[str, torch.Tensor]) -> None:
        """Store one batch: ``indices`` are dataset rows inside this shard's range."""
        rows = indices.cpu().numpy() - self.image_start
        if rows.min() < 0 or rows.max() >= len(self._written):
            raise ValueError(f"image indices outside this shard's range {self.image_start}:{self.image_stop}")
        for layer, maps in activations.items():
            if layer not in self._arrays:
                self._created_out = self._created_out or not self.out.exists()
                if not (self.out / layer).exists():
                    self._created.append(layer)
                (self.out / layer).mkdir(parents=True, exist_ok=True)
                shape = (len(self._written), *maps.shape[1:])
                self._arrays[layer] = open_memmap(self._tmp_path(layer), mode="w+", dtype=np.float32, shape=shape)
            self._arrays[layer][rows] = maps.detach().to("cpu", torch.float32).numpy()
        self._written[rows] = True

    def close(self) -> None:
        """Check that every row was written, then move each layer's array and metadata into place."""
        if not self._written.all():
            missing = int((~self._written).sum())
            self.abort()
            raise RuntimeError(f"activation cache {self.out}: {missing} images of the shard were never written")
        for layer, array in self._arrays.items():
            array.flush()
            os.replace(self._tmp_path(layer), self.out / layer / ARRAY_NAME)
            meta = {
                **self._meta,
                "layer": layer,
                "shape": list(array.shape),
                "image_start": self.image_start,
                "image_stop": self.image_stop,
                **self._extra,
            }
            write_json(meta, self.out / layer / META_NAME)
        self._arrays.clear()

    def abort(self) -> None:
        """Remove the temporary arrays, and the directories this writer created if they are left empty."""
        for layer in self._arrays:
            self._tmp_path(layer).unlink(missing_ok=True)
        for directory in [self.out / layer for layer in self._created] + ([self.out] if self._created_out else []):
            with contextlib.suppress(OSError):  # not empty: holds other files, keep it
                directory.rmdir()
        self._arrays.clear()


@dataclass(frozen=True)
class CacheShard:
    """One shard of a layer's activation cache: its metadata and array path."""

    path: Path
    meta: dict[str, Any]

    @property
    def image_start(self) -> int:
        return int(self.meta["image_start"])

    @property
    def image_stop(self) -> int:
        return int(self.meta["image_stop"])


def cache_shards(cache_dirs: Sequence[str | Path], layer: str) -> list[CacheShard]:
    """The shards of ``layer`` in ``cache_dirs``, sorted by image range; they must tile one range exactly."""
    shards = []
    for directory in cache_dirs:
        meta_path = Path(directory) / layer / META_NAME
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: {directory} holds no finished cache of layer {layer!r}")
        shards.append(CacheShard(Path(directory) / layer / ARRAY_NAME, json.loads(meta_path.read_text())))
    if not shards:
        raise ValueError("no activation cache directories given")
    shards.sort(key=lambda s: s.image_start)
    first = shards[0].meta
    for previous, shard in zip(shards, shards[1:], strict=False):
        if shard.image_start != previous.image_stop:
            raise ValueError(
                f"activation caches do not tile the images: {previous.path} ends at {previous.image_stop}, "
                f"{shard.path} starts at {shard.image_start}"
            )
    for shard in shards:
        for key in ("model_spec", "dataset"):
            if shard.meta.get(key) != first.get(key):
                raise ValueError(f"activation cache {shard.path} has a different {key} than {shards[0].path}")
        if shard.meta["shape"][1:] != first["shape"][1:]:
            raise ValueError(
                f"activation cache {shard.path} has maps of shape {shard.meta['shape'][1:]}, not {first['shape'][1:]}"
            )
    return shards


def read_cache_batches(
    cache_dirs: Sequence[str | Path], layer: str, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(dataset indices LongTensor (B,), float32 (B, U, h, w))`` from shard caches in image order.

    Arrays are memory-mapped and read ``batch_size`` rows at a time (a batch never spans two shards).
    """
    for shard in cache_shards(cache_dirs, layer):
        array = np.load(shard.path, mmap_mode="r")
        expected = (shard.image_stop - shard.image_start, *shard.meta["shape"][1:])
        if array.shape != expected or array.dtype != np.float32:
            raise ValueError(f"{shard.path} holds {array.dtype} {array.shape}, expected float32 {expected}")
        for start in range(0, len(array), batch_size):
            stop = min(start + batch_size, len(array))
            indices = torch.arange(shard.image_start + start, shard.image_start + stop, dtype=torch.long)
            yield indices, torch.from_numpy(np.array(array[start:stop]))
