"""unitscope CLI commands for models: ``layers``, ``extract``, ``train-probecnn``."""

from __future__ import annotations

import math
from pathlib import Path

from typing import TYPE_CHECKING

import click

from unitscope.options import (
    OUT_DIRECTORY,
    categories_option,
    device_option,
    normalize_option,
    shard_option,
    workers_option,
)
from unitscope.settings import BRODEN_IMAGES, DISSECT_DEFAULTS, TRAIN_BATCH_SIZE, TRAIN_ITERATIONS, format_bytes

if TYPE_CHECKING:
    from unitscope.models import LoadedModel

# torch-heavy modules are imported inside the commands, so that `unitscope --help` starts fast


def _load(spec: str, arch: str | None, param_hint: str = "'--model'") -> LoadedModel:
    from unitscope.models import ModelSpecError, load_model

    try:
        return load_model(spec, arch)
    except ModelSpecError as error:
        raise click.BadParameter(str(error), param_hint=param_hint) from error
    except (OSError, RuntimeError, ValueError) as error:
        raise click.ClickException(str(error)) from error


@click.command("layers")
@click.argument("spec")
@click.option("--arch", default=None, help="Architecture spec for a file:PATH model.")
@click.option(
    "--image-size", type=click.IntRange(min=1), default=224, show_default=True, help="Input height and width."
)
@click.option("--images", type=click.IntRange(min=1), default=BRODEN_IMAGES, show_default=True,
              help="Images the cache column is computed for (default: all of Broden).")
def layers(spec: str, arch: str | None, image_size: int, images: int) -> None:
    """List the layers of model SPEC: output shape for one image, the last operation in each (``*`` marks a
    nonlinearity: a post-activation layer, the kind to dissect), and the float32 activation cache each needs
    for --images images (docs/models.md, docs/engine.md)."""
    from unitscope.models.layers import layer_info

    model = _load(spec, arch, param_hint="'SPEC'")
    try:
        infos = layer_info(model.module, (image_size, image_size))
    except RuntimeError as error:
        raise click.ClickException(
            f"{spec}: forward pass at {image_size} px failed ({error}); try another --image-size"
        ) from error
    if not infos:
        raise click.ClickException(f"{spec}: no submodule returns a tensor; there is no layer to list")
    width = max(len(info.name) for info in infos)
    last = max(len(info.last_operation) for info in infos) + 2
    click.echo(f"{'layer':<{width}}  {'output shape':<20}  {'units':>5}  {'last operation':<{last}}  "
               f"cache for {images} images")
    for info in infos:
        operation = info.last_operation + (" *" if info.nonlinear else "")
        click.echo(f"{info.name:<{width}}  {'×'.join(map(str, info.shape)):<20}  "
                   f"{info.shape[0] if info.shape else 1:>5}  {operation:<{last}}  "
                   f"{format_bytes(4 * images * math.prod(info.shape))}")


@click.command("extract")
@click.option("--dataset", "dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--model", "spec", required=True, help="Model spec (see docs/cli.md).")
@click.option("--arch", default=None, help="Architecture spec for a file:PATH model.")
@click.option("--layer", "layer_names", multiple=True, required=True, help="Dotted layer name; repeat for several.")
@click.option("--out", type=OUT_DIRECTORY, required=True, help="Cache directory.")
@shard_option
@click.option("--batch-size", type=click.IntRange(min=1), default=DISSECT_DEFAULTS.batch_size, show_default=True,
              help="Images per forward pass; shards split at its multiples (docs/engine.md, Exactness).")
@device_option
@workers_option
@normalize_option
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@categories_option
def extract(
    dataset_dir, spec, arch, layer_names, out, shard, batch_size, device, workers, normalize, max_images, categories
) -> None:
    """Extract activations of one or more layers into an activation cache (docs/outputs.md)."""
    from unitscope.progress import progress

    from unitscope.activations import ActivationCacheWriter, extract_batches
    from unitscope.broden.loaders import image_loader
    from unitscope.broden.reader import BrodenDataset
    from unitscope.models import LayerError, resolve_layers
    from unitscope.models.layers import warn_linear_layers

    model = _load(spec, arch)
    try:
        resolve_layers(model.module, layer_names)
    except LayerError as error:
        raise click.BadParameter(str(error), param_hint="'--layer'") from error
    try:
        dataset = BrodenDataset(dataset_dir, categories)
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    n_images = len(dataset) if max_images is None else min(max_images, len(dataset))
    rows = shard.range(n_images, batch_size) if shard else range(n_images)
    if not rows:
        raise click.BadParameter(
            f"shard {shard} of {n_images} images is empty (shards split at multiples of --batch-size {batch_size}); "
            "use fewer shards or a smaller batch size", param_hint="'--shard'"
        )
    normalize = normalize or model.default_normalize
    warn_linear_layers(model.module, list(layer_names), tuple(dataset.image_size))
    info = dataset.record(n_images)
    batches = image_loader(dataset, rows, batch_size, workers)
    try:
        with ActivationCacheWriter(
            out,
            image_start=rows.start,
            image_stop=rows.stop,
            model=model.name,
            model_spec=spec,
            dataset=info,
            extra={"normalize": normalize, "categories": dataset.categories, "weights_sha256": model.weights_sha256(),
                   "checkpoint": model.checkpoint},
        ) as writer:
            extracted = extract_batches(model.module, layer_names, batches, normalize, device)
            for indices, activations in progress(extracted, total=math.ceil(len(rows) / batch_size), desc="extract", unit="batch"):
                writer.write(indices, activations)
    except (LayerError, OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"wrote activations of {len(rows)} images for {', '.join(layer_names)} to {out}")


def _parse_checkpoints(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return sorted({int(item) for item in value.split(",") if item.strip()})
    except ValueError as error:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of iterations, e.g. 0,1,2,4") from error


@click.command("train-probecnn")
@click.option("--dataset", "dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--out", type=OUT_DIRECTORY, required=True)
@click.option(
    "--iterations", type=click.IntRange(min=0), default=TRAIN_ITERATIONS, show_default=True, help="SGD steps."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--checkpoints", callback=_parse_checkpoints, default=None, help="Iterations to save (default 0,1,2,4,…,N)."
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=TRAIN_BATCH_SIZE, show_default=True, help="Images per step."
)
@click.option("--batchnorm/--no-batchnorm", default=True, show_default=True, help="Batch norm in every block.")
@click.option(
    "--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
    help="Dropout probability before the classifier.",
)
@click.option(
    "--width", type=click.IntRange(min=1), default=1, show_default=True, help="conv4's width as a multiple of 256."
)
@click.option("--labels", type=click.Choice(["true", "permuted"]), default="true", show_default=True,
              help="Train on the true scene labels, or on one seeded permutation of them (data randomisation).")
@device_option
def train_probecnn(dataset_dir, out, iterations, seed, checkpoints, batch_size, batchnorm, dropout, width, labels,
                   device) -> None:
    """Train ProbeCNN on the probe set's scene classes, saving checkpoints for dissection."""
    from unitscope import train
    from unitscope.models.probecnn import Architecture

    try:
        log = train.train_probecnn(
            dataset_dir,
            out,
            iterations=iterations,
            seed=seed,
            checkpoints=checkpoints,
            batch_size=batch_size,
            architecture=Architecture(batchnorm=batchnorm, dropout=dropout, width=width),
            device=device,
            labels=labels,
        )
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"trained probecnn for {log['iterations']} iterations: "
        f"train accuracy {log['final_train_accuracy']:.3f} on {labels} labels, val accuracy "
        f"{log['final_val_accuracy']:.3f}; wrote {out}"
    )


COMMANDS = [layers, extract, train_probecnn]
