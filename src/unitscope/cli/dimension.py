"""``unitscope dimension``: the effective dimension (participation ratio) of layers (docs/cli.md)."""

from __future__ import annotations

from pathlib import Path

import click

from unitscope.options import OUT_DIRECTORY, categories_option, device_option, normalize_option, tag_option, workers_option
from unitscope.settings import DISSECT_DEFAULTS


@click.command()
@click.option("--dataset", "dataset_dir", required=True, type=click.Path(path_type=Path), help="Broden-format dataset.")
@click.option("--model", "model_spec", default=None, help="Model spec (docs/cli.md).")
@click.option("--arch", default=None, help="Architecture spec for a file:PATH model.")
@click.option("--activations", "caches", multiple=True, type=click.Path(path_type=Path),
              help="Activation cache directory (`unitscope extract`); repeat for several shards.")
@click.option("--layer", "layers", multiple=True, required=True, help="Layer to measure; repeat for several.")
@click.option("--out", "out_dir", required=True, type=OUT_DIRECTORY, help="Results: a directory per layer.")
@categories_option
@click.option("--batch-size", type=click.IntRange(1), default=DISSECT_DEFAULTS.batch_size, show_default=True,
              help="Images per forward pass.")
@device_option
@workers_option
@click.option("--max-images", type=click.IntRange(1), default=None, help="Use only the first N images.")
@normalize_option
@click.option("--name", default=None, help="Display name of the model in results and reports.")
@tag_option
def dimension(dataset_dir, model_spec, arch, caches, layers, out_dir, categories, batch_size, device, workers,
              max_images, normalize, name, tags) -> None:
    """Participation ratio of each layer's unit covariance: how many directions its units span."""
    if (model_spec is None) == (not caches):
        raise click.UsageError("give exactly one of --model SPEC or --activations CACHE_DIR")
    if caches and (arch or normalize):
        raise click.UsageError("--arch and --normalize apply to --model, not to --activations")

    from unitscope.broden.reader import BrodenDataset
    from unitscope.dimension import measure
    from unitscope.models import load_model
    from unitscope.settings import DissectSettings

    try:
        dataset = BrodenDataset(dataset_dir, categories)
        settings = DissectSettings(batch_size=batch_size, device=str(device), workers=workers, normalize=normalize,
                                   max_images=max_images, name=name, tags=tags)
        source = load_model(model_spec, arch) if model_spec is not None else list(caches)
        written = measure(dataset, source, list(layers), out_dir, settings)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    for path in written.values():
        click.echo(str(path))


COMMANDS: list[click.Command] = [dimension]
