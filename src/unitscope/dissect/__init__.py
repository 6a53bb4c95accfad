"""Network Dissection of one model's layers on a Broden-format dataset (spec §2), as a library.

Exact thresholds must be known before anything can be tallied, so a dissection is two passes over the
images (``docs/engine.md``):

1. **top-k pass**: activations of every requested layer (one forward pass serves all layers, or batches
   read from an activation cache) → optional rotation → per-unit :class:`~unitscope.thresholds.TopK`
   (exact quantile) and :class:`~unitscope.thresholds.TopImages`. With a model, the raw activations are
   also written to a temporary float32 cache inside the output directory when the cache policy says so
   (``DissectSettings.cache``), and pass 2 reads it; otherwise pass 2 runs the forward pass again.
2. **tally pass**: cached activations + segmentations → rotation → :class:`~unitscope.tally.Tally`, and
   the raw maps of each unit's top images.

Both passes are streaming; memory is set by the batch size, units × k (thresholds) and units × top-k maps,
not by the number of images. The accumulators of image shards merge exactly, so the sharded two-stage
flow (:func:`run_topk_stage`, :func:`run_tally_stage`, :func:`merge`) writes byte-identical results.

Notebook use::

    from unitscope.broden.reader import BrodenDataset
    from unitscope.dissect import DissectSettings, dissect
    dissect(BrodenDataset("broden1_224"), "torchvision:resnet18@imagenet", ["layer4"], "out")

Modules: ``sources`` (the validated run and its activation batches, from a model or caches), ``passes``
(top-k and tally), ``tables`` (result files), ``run`` (:func:`dissect`), ``shards`` (the two-stage flow);
settings live in :mod:`unitscope.settings`.
"""

from unitscope.dissect.run import dissect
from unitscope.dissect.shards import merge, run_tally_stage, run_topk_stage
from unitscope.dissect.sources import KIND, SCHEMA_VERSION, Source
from unitscope.settings import DissectError, DissectSettings, Rotation

__all__ = [
    "KIND",
    "SCHEMA_VERSION",
    "DissectError",
    "DissectSettings",
    "Rotation",
    "Source",
    "dissect",
    "merge",
    "run_tally_stage",
    "run_topk_stage",
]
