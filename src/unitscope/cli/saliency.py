"""``unitscope saliency`` and ``unitscope sanity-check``: saliency maps and their randomisation tests (docs/cli.md)."""

from __future__ import annotations

import click

from unitscope.options import OUT_DIRECTORY, device_option, normalize_option
from unitscope.settings import (
    EXPLAINED_CLASSES,
    RANDOMIZATION_ORDERS,
    RANDOMIZATION_TESTS,
    SALIENCY_DEFAULTS,
    SALIENCY_METHODS,
    SANITY_DEFAULTS,
    SANITY_TESTS,
)

#: The side of the square images the maps are computed on, by default.
DEFAULT_SIZE = 224


def _saliency_options(command):
    options = [
        click.option("--model", "model_spec", required=True, help="Model spec (docs/cli.md, Model specs)."),
        click.option("--arch", default=None, help="Architecture spec for a file:PATH model."),
        click.option("--image", "images", multiple=True, required=True,
                     help="Image file, folder of images, Broden-format dataset (its val scene images), or builtin:NAME "
                          "(astronaut, chelsea, coffee, rocket, motorcycle, china, flower); repeat for several."),
        click.option("--max-images", type=click.IntRange(1), default=None, help="Use only the first N images."),
        click.option("--size", type=click.IntRange(8), default=DEFAULT_SIZE, show_default=True,
                     help="Images are resized (shorter side) and centre-cropped to SIZE×SIZE."),
        click.option("--method", "methods", multiple=True, type=click.Choice(SALIENCY_METHODS),
                     help="Saliency method; repeat for several (default: all)."),
        click.option("--layer", default=None,
                     help="Grad-CAM's convolutional layer (default: the model family's last feature layer)."),
        normalize_option,
        device_option,
        click.option("--batch-size", type=click.IntRange(1), default=SALIENCY_DEFAULTS.batch_size, show_default=True,
                     help="Images, IG steps or noise samples per pass. Changes maps only in float rounding."),
        click.option("--smoothgrad-samples", type=click.IntRange(1), default=SALIENCY_DEFAULTS.smoothgrad_samples,
                     show_default=True, help="SmoothGrad's noisy copies per image."),
        click.option("--smoothgrad-noise", type=click.FloatRange(0, min_open=True),
                     default=SALIENCY_DEFAULTS.smoothgrad_noise, show_default=True,
                     help="SmoothGrad's σ as a fraction of each image's value range."),
        click.option("--ig-steps", type=click.IntRange(1), default=SALIENCY_DEFAULTS.ig_steps, show_default=True,
                     help="Integrated Gradients' steps."),
        click.option("--seed", type=int, default=SALIENCY_DEFAULTS.seed, show_default=True,
                     help="Seed of SmoothGrad's noise (and of the randomisation)."),
        click.option("--out", "out_dir", required=True, type=OUT_DIRECTORY, help="Result directory."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _prepare(model_spec, arch, images, max_images, size, methods, layer, normalize, device, batch_size, smoothgrad_samples,
             smoothgrad_noise, ig_steps, seed):
    from unitscope.models import load_model
    from unitscope.saliency.images import load_images
    from unitscope.saliency.run import Subject
    from unitscope.settings import SaliencySettings

    settings = SaliencySettings(methods=tuple(methods) or SALIENCY_METHODS, smoothgrad_samples=smoothgrad_samples,
                                smoothgrad_noise=smoothgrad_noise, ig_steps=ig_steps, batch_size=batch_size,
                                seed=seed)
    settings.validate()
    subject = Subject(load_model(model_spec, arch), normalize, layer, device)
    return subject, load_images(images, size, max_images), settings


@click.command()
@_saliency_options
@click.option("--target", default=None,
              help="Class to explain in every image, by index or name (default: each image's predicted class).")
def saliency(target, out_dir, **options) -> None:
    """Saliency maps of a model for some images: every method, raw maps and predictions."""
    from unitscope.saliency.run import explain_images

    try:
        subject, images, settings = _prepare(**options)
        written = explain_images(subject, images, out_dir, target, settings)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(str(written))


@click.command("sanity-check", short_help="Sanity checks of saliency maps (Adebayo et al. 2018).")
@_saliency_options
@click.option("--test", "tests", multiple=True, type=click.Choice(SANITY_TESTS),
              help="Sanity check: model-parameter randomisation (cascading, independent) or data randomisation "
                   "(data: needs --random-labels); repeat for several (default: all that apply).")
@click.option("--order", type=click.Choice(RANDOMIZATION_ORDERS), default=SANITY_DEFAULTS.order, show_default=True,
              help="Order in which blocks are randomised.")
@click.option("--explain", type=click.Choice(EXPLAINED_CLASSES), default=SANITY_DEFAULTS.explain, show_default=True,
              help="Class a randomised model's maps explain: its own prediction, or the original model's.")
@click.option("--reset-statistics", is_flag=True, help="Re-initialise batch-norm running statistics too.")
@click.option("--random-labels", "random_labels", default=None,
              help="The same architecture trained on permuted labels (a model spec; file:PATH takes --arch): "
                   "the data randomisation test.")
@click.option("--figure-images", type=click.IntRange(0), default=SANITY_DEFAULTS.figure_images, show_default=True,
              help="Images whose cascading maps are kept for the report's figure.")
def sanity_check(tests, order, explain, reset_statistics, random_labels, figure_images, out_dir, **options) -> None:
    """Sanity checks of saliency maps (Adebayo et al. 2018): how much the maps change when the model's blocks are
    randomised (cascading, independent), or when it was trained on permuted labels."""
    from unitscope.models import load_model
    from unitscope.saliency.run import sanity_check as run_sanity_check
    from unitscope.saliency.run import summarize
    from unitscope.settings import SanitySettings

    default_tests = (*RANDOMIZATION_TESTS, "data") if random_labels else RANDOMIZATION_TESTS
    sanity = SanitySettings(tests=tuple(tests) or default_tests, order=order, explain=explain,
                            reset_statistics=reset_statistics, seed=options["seed"], figure_images=figure_images)
    try:
        sanity.validate()
        subject, images, settings = _prepare(**options)
        try:
            other = load_model(random_labels, options["arch"] if random_labels.startswith("file:") else None) \
                if random_labels else None
        except (ValueError, FileNotFoundError) as error:
            raise ValueError(f"--random-labels {random_labels}: {error}") from None
        written = run_sanity_check(subject, images, out_dir, settings, sanity, other)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    import pandas as pd

    summary = summarize(pd.read_csv(written / "similarity.csv"))
    spearman = summary[summary["metric"] == "spearman-abs"]
    table = spearman.pivot_table(index=["test", "stage"], columns="method", values="median", sort=False,
                                 dropna=False)  # a method whose maps were all constant keeps its (NaN) column
    table = table[table.index.isin(pd.MultiIndex.from_frame(spearman[["test", "stage"]]))]  # no test × other stages
    click.echo("median Spearman rank correlation (absolute maps) with the original model's maps:", err=True)
    click.echo(table.round(2).to_string(), err=True)
    click.echo(str(written))


@click.command("train-digits")
@click.option("--labels", type=click.Choice(["true", "permuted"]), default="true", show_default=True,
              help="Train on the digits' true labels, or on one seeded permutation of them.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initialisation, order and permutation.")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Passes over the training digits (default: 80).")
@click.option("--test-images", type=click.IntRange(0), default=20, show_default=True,
              help="Held-out digits written as PNG files for the sanity check.")
@click.option("--out", "out_dir", required=True, type=OUT_DIRECTORY, help="Output directory.")
def train_digits(labels, seed, epochs, test_images, out_dir) -> None:
    """Train the digits CNN on scikit-learn's handwritten digits (the data randomisation test's models)."""
    from unitscope.saliency import digits

    try:
        record = digits.train_digits(out_dir, labels, seed, epochs or digits.EPOCHS, test_images)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(digits.describe(record), err=True)
    click.echo(str(out_dir))


COMMANDS: list[click.Command] = [saliency, sanity_check, train_digits]
