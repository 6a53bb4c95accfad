"""One dissection in one process: both passes over every image, then the result files."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from unitscope.broden.reader import BrodenDataset
from unitscope.dissect.passes import tally_pass, topk_pass
from unitscope.dissect.sources import Source, caches_to_disk, prepare
from unitscope.dissect.tables import image_paths, label_names, output_dir, write_layer
from unitscope.settings import DissectSettings


def dissect(
    dataset: BrodenDataset | str | Path,
    source: Source,
    layers: Sequence[str],
    out_dir: str | Path,
    settings: DissectSettings | None = None,
) -> dict[str, Path]:
    """Dissect ``layers`` of a model (spec string, :class:`LoadedModel` or ``nn.Module``) or of activation
    caches (a list of directories), writing ``<out_dir>/<layer>/`` per layer. Returns those directories.

    With a model, the second pass reads a temporary activation cache that the first pass writes, or runs the
    forward pass again (``settings.cache``); the results are the same.
    """
    dataset = dataset if isinstance(dataset, BrodenDataset) else BrodenDataset(dataset)
    settings = settings or DissectSettings()
    run = prepare(dataset, source, layers, settings, None)
    out_dir = Path(out_dir)
    with output_dir(out_dir) as scratch:
        cache_root = scratch / "cache" if run.model is not None and caches_to_disk(run) else None
        first = topk_pass(run, cache_root)
        thresholds = {layer: s.topk.threshold(settings.level) for layer, s in first.items()}
        second = tally_pass(run, thresholds, {l: s.images for l, s in first.items()},
                             {l: s.map_size for l, s in first.items()}, [cache_root] if cache_root else None)
        if cache_root is not None:
            shutil.rmtree(cache_root)
        names, paths = label_names(dataset), image_paths(dataset)
        written = {}
        for layer in run.layers:
            s = second[layer]
            meta = run.layer_meta(layer, s.maps.shape[0], first[layer].map_size)
            written[layer] = write_layer(out_dir / layer, scratch / layer, meta, s.tally.counts(), thresholds[layer],
                                          s.top, s.maps, names, dataset.primary, paths,
                                          [t.counts() for t in s.null])
    return written
