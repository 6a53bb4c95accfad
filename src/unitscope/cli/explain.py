"""Analyses beyond one unit, one concept (docs/cli.md): ``unitscope compositional`` (logical formulas over concepts
for the units of a dissected layer), ``unitscope ablate`` (what zeroing each unit does to each class) and
``unitscope explain`` (predictions split over interpreted units) and ``unitscope net2vec`` (concepts as
weighted combinations of units)."""

from __future__ import annotations

from pathlib import Path

import click

from unitscope.options import OUT_DIRECTORY, device_option, normalize_option, workers_option
from unitscope.settings import COMPOSITIONAL_DEFAULTS, NET2VEC_DEFAULTS, UNION_RULES, WEIGHTINGS

C = COMPOSITIONAL_DEFAULTS
N = NET2VEC_DEFAULTS


def _layer_source(command):
    """``--dataset``, ``--dissection`` and the dissected activations (``--model``/``--arch`` or ``--activations``)
    of a command that passes over a dissected layer again."""
    options = [
        click.option("--dataset", "dataset_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
                     help="The dissected dataset (Broden format)."),
        click.option("--dissection", required=True, type=click.Path(path_type=Path, file_okay=False),
                     help="The layer's dissection (results/dissect/<run>/<layer>): its thresholds, presence rule "
                          "and basis."),
        click.option("--model", "model_spec", default=None, help="The dissected model's spec (docs/cli.md, Model specs)."),
        click.option("--arch", default=None, help="Architecture spec for a file:PATH model."),
        click.option("--activations", "caches", multiple=True, type=click.Path(path_type=Path),
                     help="Activation cache directory of the layer instead of --model; repeat for several shards."),
    ]
    return _with(command, options)


def _layer_pass(command):
    """The options of the pass itself, after a command's own: ``--batch-size`` (the dissection's, for the same
    activations), ``--normalize``, ``--device``, ``--workers`` and ``--out``."""
    return _with(command, [
        click.option("--batch-size", type=click.IntRange(1), default=C.batch_size, show_default=True,
                     help="Images per forward pass (the dissection's, for the same activations)."),
        normalize_option, device_option, workers_option,
        click.option("--out", "out_dir", required=True, type=OUT_DIRECTORY, help="Result directory."),
    ])


def _with(command, options: list):
    """``command`` with ``options`` in the order given (as if stacked as decorators in that order)."""
    for option in reversed(options):
        command = option(command)
    return command


def _source(model_spec: str | None, arch: str | None, caches: tuple[Path, ...]):
    """The dissected model, or its activation caches; exactly one of them must be given."""
    from unitscope.models import load_model

    if (model_spec is None) == (not caches):
        raise click.UsageError("give exactly one of --model SPEC or --activations CACHE_DIR")
    return load_model(model_spec, arch) if model_spec else list(caches)


@click.command()
@_layer_source
@click.option("--max-length", type=click.IntRange(1), default=C.max_length, show_default=True,
              help="Longest formula (labels joined by OR, AND, AND NOT).")
@click.option("--beam", type=click.IntRange(1), default=C.beam, show_default=True, help="Formulas kept per step.")
@click.option("--union", type=click.Choice(UNION_RULES), default=C.union, show_default=True,
              help="dissection: the union counts the unit's pixels as the dissection's presence rule does (a single "
                   "label scores its dissection IoU where no pixel has it in two layers); plain: every mask pixel "
                   "(Mu & Andreas).")
@_layer_pass
def compositional(dataset_dir, dissection, model_spec, arch, caches, max_length, beam, union, batch_size,
                  normalize, device, workers, out_dir) -> None:
    """Compositional explanations (Mu & Andreas 2020): each unit's best formula over concepts, by exact IoU."""
    from unitscope.compositional.run import compositional_layer
    from unitscope.settings import CompositionalSettings

    settings = CompositionalSettings(max_length=max_length, beam=beam, union=union, batch_size=batch_size)
    try:
        source = _source(model_spec, arch, caches)
        written = compositional_layer(dataset_dir, source, dissection, out_dir, settings, normalize, device, workers)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(str(written))


@click.command(short_help="Unit ablation (Bau et al. 2020): what zeroing each unit does to each class.")
@click.option("--model", "model_spec", required=True,
              help="A classifier of the dataset's scenes whose weights name its classes, e.g. a ProbeCNN checkpoint "
                   "(file:results/models/probecnn/checkpoint-256.pt --arch probecnn).")
@click.option("--arch", default=None, help="Architecture spec for a file:PATH model.")
@click.option("--layer", required=True, help="Layer whose units are zeroed.")
@click.option("--dataset", "dataset_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="The Broden-format dataset the classifier was trained on (its held-out scenes are used).")
@click.option("--dissection", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The layer's dissection: the labels of each class's most important units are recorded.")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True,
              help="The images used: held-out (val) or training ones.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True,
              help="Inputs per forward pass (copies of the images under several masks share one).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the random-units control.")
@normalize_option
@device_option
@click.option("--out", "out_dir", required=True, type=OUT_DIRECTORY, help="Result directory.")
def ablate(model_spec, arch, layer, dataset_dir, dissection, split, batch_size, seed, normalize, device,
           out_dir) -> None:
    """Unit ablation (Bau et al. 2020): each unit zeroed, each class's accuracy and logit; each class's top units."""
    from unitscope.ablation.run import ablate_layer
    from unitscope.models import load_model

    try:
        model = load_model(model_spec, arch)
        written = ablate_layer(model, layer, dataset_dir, out_dir, dissection, split, normalize, device, batch_size,
                               seed)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(str(written))


@click.command(short_help="Predictions split over the interpreted units of a layer (Zhou et al. 2018).")
@click.option("--model", "model_spec", required=True, help="The dissected classifier's spec (docs/cli.md, Model specs).")
@click.option("--arch", default=None, help="Architecture spec for a file:PATH model.")
@click.option("--dissection", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="The dissection of the layer that feeds the classifier (results/dissect/<run>/<layer>): its units' "
                   "labels, IoUs and detectors.")
@click.option("--image", "images", multiple=True, required=True,
              help="Image file, folder, Broden dataset (its val images) or builtin:NAME; repeat.")
@click.option("--max-images", type=click.IntRange(1), default=None, help="Explain only the first N images.")
@click.option("--size", type=click.IntRange(8), default=224, show_default=True, help="Side of the square images.")
@click.option("--weights", "weighting", type=click.Choice(["auto", *WEIGHTINGS]), default="auto", show_default=True,
              help="cam: the linear classifier's weights after global average pooling (exact); grad-cam: gradient "
                   "weights, for other heads; auto: cam where the model has that head.")
@click.option("--target", type=click.IntRange(0), default=None,
              help="Class to explain (default: each image's top class).")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Images per forward pass.")
@normalize_option
@device_option
@click.option("--out", "out_dir", required=True, type=OUT_DIRECTORY, help="Result directory.")
def explain(model_spec, arch, dissection, images, max_images, size, weighting, target, batch_size, normalize, device,
            out_dir) -> None:
    """Explain predictions with interpreted units (Zhou et al. 2018): each logit split over the dissected layer."""
    from unitscope.explain.run import explain_images
    from unitscope.models import load_model
    from unitscope.saliency.images import load_images

    try:
        loaded = load_images(images, size, max_images)
        model = load_model(model_spec, arch)
        written = explain_images(model, dissection, loaded, out_dir, weighting, target, normalize, device, batch_size)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(str(written))


@click.command()
@_layer_source
@click.option("--concept", "concepts", multiple=True, help="Train only this concept's probes (a label name); repeat.")
@click.option("--epochs", type=click.IntRange(1), default=N.epochs, show_default=True,
              help="Epochs of the segmentation probes (SGD, momentum 0.9).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=N.lr, show_default=True,
              help="Learning rate of the segmentation probes (their loss is summed over an image's pixels).")
@click.option("--step-images", type=click.IntRange(1), default=N.step_images, show_default=True,
              help="Images per step of the segmentation probes.")
@click.option("--sparsity-epochs", type=click.IntRange(0), default=N.sparsity_epochs, show_default=True,
              help="Epochs that retrain each probe on its k largest weights for the sparsity sweep (0: truncate).")
@click.option("--seed", type=click.IntRange(0), default=N.seed, show_default=True, help="Seed of the image order.")
@_layer_pass
def net2vec(dataset_dir, dissection, model_spec, arch, caches, concepts, epochs, lr, step_images, sparsity_epochs,
            seed, batch_size, normalize, device, workers, out_dir) -> None:
    """Net2Vec (Fong & Vedaldi 2018): each concept as a weighted combination of the layer's units."""
    import dataclasses

    from unitscope.net2vec.run import net2vec_layer

    settings = dataclasses.replace(N, epochs=epochs, lr=lr, step_images=step_images,
                                   sparsity_epochs=sparsity_epochs, seed=seed)
    try:
        source = _source(model_spec, arch, caches)
        written = net2vec_layer(dataset_dir, source, dissection, out_dir, settings, normalize, device, concepts,
                                batch_size, workers)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(str(written))


COMMANDS = [compositional, ablate, explain, net2vec]
