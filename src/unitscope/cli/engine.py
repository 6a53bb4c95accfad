"""``unitscope dissect`` and ``unitscope merge``: the dissection engine on the command line (docs/cli.md)."""

from __future__ import annotations

from pathlib import Path

import click

from unitscope.options import (
    OUT_DIRECTORY,
    categories_option,
    device_option,
    normalize_option,
    shard_option,
    tag_option,
    workers_option,
)
from unitscope.settings import CACHE_POLICIES, DISSECT_DEFAULTS, PRESENCE_RULES



@click.command()
@click.option("--dataset", "dataset_dir", required=True, type=click.Path(path_type=Path), help="Broden-format dataset.")
@click.option("--model", "model_spec", default=None,
              help="Model spec (docs/cli.md), e.g. torchvision:resnet18@imagenet.")
@click.option("--arch", default=None, help="Architecture spec for a file:PATH model.")
@click.option("--activations", "caches", multiple=True, type=click.Path(path_type=Path),
              help="Activation cache directory (`unitscope extract`); repeat for several shards.")
@click.option("--layer", "layers", multiple=True, required=True, help="Layer to dissect; repeat for several.")
@click.option("--out", "out_dir", required=True, type=OUT_DIRECTORY,
              help="Results: a directory per layer.")
@click.option("--quantile", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help=f"Top activation quantile α defining T_u  [default: {DISSECT_DEFAULTS.quantile}].")
@click.option("--netdissect-level", is_flag=True, help="Use NetDissect's effective level 0.994995 instead of 1 − α.")
@click.option("--iou-threshold", type=click.FloatRange(0, 1), default=DISSECT_DEFAULTS.iou_threshold, show_default=True,
              help="A unit is a detector when its best IoU exceeds this.")
@click.option("--presence", type=click.Choice(PRESENCE_RULES), default=DISSECT_DEFAULTS.presence, show_default=True,
              help="Category presence rule of the union: image (original NetDissect) or mask (NetDissect-Lite).")
@categories_option
@click.option("--top-k", type=click.IntRange(1), default=DISSECT_DEFAULTS.top_k, show_default=True,
              help="Top images kept per unit.")
@click.option("--rotation-alpha", type=click.FloatRange(0, 1), default=None, help="Rotate the basis by Q^alpha.")
@click.option("--rotation-seed", type=int, default=None, help="Seed of the random rotation Q.")
@click.option("--no-unpermute", is_flag=True, help="Do not un-permute the rotation.")
@click.option("--null-permutations", type=click.IntRange(0), default=DISSECT_DEFAULTS.null_permutations,
              show_default=True, help="Permutations of the significance null: activations paired with other images' "
                                      "labels of the same kind; writes null.csv and significant counts.")
@click.option("--null-seed", type=click.IntRange(0), default=DISSECT_DEFAULTS.null_seed, show_default=True,
              help="Seed of the null's permutations.")
@click.option("--batch-size", type=click.IntRange(1), default=DISSECT_DEFAULTS.batch_size, show_default=True,
              help="Images per forward pass; shards split at its multiples (docs/engine.md, Exactness).")
@device_option
@workers_option
@click.option("--max-images", type=click.IntRange(1), default=None, help="Dissect only the first N images.")
@click.option("--cache", type=click.Choice(CACHE_POLICIES), default=DISSECT_DEFAULTS.cache, show_default=True,
              help="With --model: the second pass reads a temporary activation cache on disk, runs the forward pass "
                   "again (recompute), or caches when it fits --cache-budget (auto). Changes no result.")
@click.option("--cache-budget", type=click.FloatRange(0), default=DISSECT_DEFAULTS.cache_budget_gb, show_default=True,
              help="GB: the largest temporary activation cache --cache auto writes.")
@normalize_option
@shard_option
@click.option("--stage", type=click.Choice(("topk", "tally")), default=None, help="Stage of a sharded run.")
@click.option("--thresholds", "thresholds_dir", type=click.Path(path_type=Path), default=None,
              help="Merged top-k stage (`unitscope merge`) to take thresholds from (with --stage tally).")
@click.option("--name", default=None, help="Display name of the model in results and reports.")
@tag_option
def dissect(dataset_dir, model_spec, arch, caches, layers, out_dir, quantile, netdissect_level, iou_threshold, presence,
            categories, top_k, rotation_alpha, rotation_seed, no_unpermute, null_permutations, null_seed, batch_size,
            device, workers, max_images, cache, cache_budget, normalize, shard, stage, thresholds_dir, name,
            tags) -> None:
    """Dissect layers of a model: exact thresholds, IoU of every unit with every concept."""
    if (model_spec is None) == (not caches):
        raise click.UsageError("give exactly one of --model SPEC or --activations CACHE_DIR")
    if quantile is not None and netdissect_level:
        raise click.UsageError("--quantile and --netdissect-level exclude each other")
    if (rotation_alpha is None) != (rotation_seed is None):
        raise click.UsageError("--rotation-alpha and --rotation-seed go together")
    if (shard is None) != (stage is None):
        raise click.UsageError("--shard I/N and --stage topk|tally go together")
    if (stage == "tally") != (thresholds_dir is not None):
        raise click.UsageError("--thresholds DIR is required with --stage tally, and only there")
    if caches and (arch or normalize):
        raise click.UsageError("--arch and --normalize apply to --model, not to --activations")

    from unitscope import dissect as engine
    from unitscope.broden.reader import BrodenDataset
    from unitscope.models import load_model

    try:
        try:
            dataset = BrodenDataset(dataset_dir, categories)
        except ValueError as error:  # an unknown category; format errors are BrodenFormatError (a ValueError too)
            if categories and type(error) is ValueError:
                raise click.BadParameter(str(error), param_hint="--categories") from None
            raise
        rotation = None
        if rotation_alpha is not None:
            rotation = engine.Rotation(rotation_alpha, rotation_seed, unpermute=not no_unpermute)
        settings = engine.DissectSettings(
            quantile=DISSECT_DEFAULTS.quantile if quantile is None else quantile, netdissect_level=netdissect_level,
            iou_threshold=iou_threshold, presence=presence, top_k=top_k, batch_size=batch_size, device=str(device),
            workers=workers, cache=cache, cache_budget_gb=cache_budget,
            normalize=normalize, max_images=max_images, rotation=rotation, null_permutations=null_permutations,
            null_seed=null_seed, name=name, tags=tags,
        )
        source = load_model(model_spec, arch) if model_spec is not None else list(caches)
        if stage is None:
            written = engine.dissect(dataset, source, list(layers), out_dir, settings)
        elif stage == "topk":
            written = {"part": engine.run_topk_stage(dataset, source, list(layers), out_dir, settings, shard)}
        else:
            written = {"part": engine.run_tally_stage(dataset, source, list(layers), out_dir, settings, shard,
                                                      thresholds_dir)}
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    for path in written.values():
        click.echo(str(path))


@click.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=OUT_DIRECTORY, help="Merged output directory.")
def merge(parts, out_dir) -> None:
    """Merge the parts of a sharded dissection: top-k parts give thresholds, tally parts the final results."""
    from unitscope import dissect as engine

    try:
        written = engine.merge(list(parts), out_dir)
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise click.ClickException(str(error)) from None
    for path in written.values():
        click.echo(str(path))


COMMANDS: list[click.Command] = [dissect, merge]
