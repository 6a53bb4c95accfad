"""``unitscope visualize`` (activation maximisation of a layer's units, DeconvNet views of their top images) and
``unitscope invert`` (network inversion of a model's layers; docs/cli.md)."""

from __future__ import annotations

from pathlib import Path

import click

from unitscope.options import OUT_DIRECTORY, device_option, normalize_option
from unitscope.settings import INVERSION_DEFAULTS, VISUALIZATION_METHODS, VISUALIZE_DEFAULTS

D = VISUALIZE_DEFAULTS


@click.command()
@click.option("--model", "model_spec", required=True, help="Model spec (docs/cli.md, Model specs).")
@click.option("--arch", default=None, help="Architecture spec for a file:PATH model.")
@click.option("--layer", default=None, help="Layer whose units to visualise (default: the --dissection's layer).")
@click.option("--unit", "units", multiple=True, type=click.IntRange(1),
              help="Unit to visualise, 1-based as the dissection tables; repeat (default: the --dissection's "
                   "detectors, best IoU first).")
@click.option("--dissection", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A dissection result of the layer (results/dissect/<run>/<layer>): its detectors are the default "
                   "units, and its highest activation of each unit over the dataset is recorded beside ours.")
@click.option("--max-units", type=click.IntRange(1), default=None, help="Visualise only the first N units.")
@click.option("--top-images", type=click.IntRange(0), default=0, show_default=True,
              help="Also project each unit's strongest activation on its first N top images of the --dissection back "
                   "to the pixels (DeconvNet and guided backprop), cropped to where it reaches.")
@click.option("--dataset", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The dissected dataset (Broden format), whose images --top-images reads.")
@click.option("--objective", type=click.Choice(["channel", "neuron"]), default="channel", show_default=True,
              help="The unit's mean activation over its map, or its centre neuron.")
@click.option("--post-activation", is_flag=True,
              help="Optimise the layer's output itself, not its pre-activation (the input of its final ReLU/ReLU6).")
@click.option("--method", "methods", multiple=True, type=click.Choice(VISUALIZATION_METHODS),
              help="lucid (Fourier image, transforms) or pixel (Yosinski et al.); repeat (default: lucid).")
@click.option("--size", type=click.IntRange(8), default=D.size, show_default=True, help="Side of Lucid's image.")
@click.option("--input-size", type=click.IntRange(8), default=D.input_size, show_default=True,
              help="Side the model sees: Lucid's transformed canvas is resized to it; the pixel method's images have it.")
@click.option("--steps", type=click.IntRange(1), default=D.steps, show_default=True, help="Lucid's Adam steps.")
@click.option("--pixel-steps", type=click.IntRange(1), default=D.pixel_steps, show_default=True,
              help="The pixel method's gradient steps.")
@click.option("--copies", type=click.IntRange(1), default=D.copies, show_default=True,
              help="Images per unit (Lucid's diversity term keeps them apart).")
@click.option("--diversity", type=click.FloatRange(0), default=D.diversity, show_default=True,
              help="Weight of the diversity term between a unit's copies.")
@click.option("--batch-size", type=click.IntRange(1), default=D.batch_size, show_default=True,
              help="Images optimised together (changes images through float rounding only, which Adam's steps "
                   "amplify: docs/visualize.md).")
@click.option("--seed", type=click.IntRange(0), default=D.seed, show_default=True,
              help="Seed of the initial images and transforms.")
@normalize_option
@device_option
@click.option("--out", "out_dir", required=True, type=OUT_DIRECTORY, help="Result directory.")
def visualize(model_spec, arch, layer, units, dissection, max_units, top_images, dataset, objective, post_activation, methods, size, input_size, steps,
              pixel_steps, copies, diversity, batch_size, seed, normalize, device, out_dir) -> None:
    """Activation maximisation: the image each unit of a layer prefers (Lucid's recipe; Yosinski et al.'s)."""
    from unitscope.models import load_model
    from unitscope.settings import VisualizeSettings
    from unitscope.dissect.result import Dissected
    from unitscope.visualize.run import visualize_units

    settings = VisualizeSettings(methods=tuple(methods) or D.methods, pre_activation=not post_activation, size=size, input_size=input_size, steps=steps,
                                 pixel_steps=pixel_steps, copies=copies, diversity=diversity, batch_size=batch_size,
                                 seed=seed)
    try:
        settings.validate()
        dissected = Dissected.read(dissection) if dissection else None
        layer = layer or (dissected.meta["layer"] if dissected else None)
        if layer is None:
            raise ValueError("--layer is needed without --dissection")
        if dissected and dissected.meta["layer"] != layer:
            raise ValueError(f"--dissection {dissection} dissected layer {dissected.meta['layer']!r}, not {layer!r}")
        chosen = list(dict.fromkeys(units)) or (dissected.detectors if dissected else [])
        model = load_model(model_spec, arch)
        written = visualize_units(model, layer, chosen[:max_units], out_dir, settings, normalize or (
            dissected.meta.get("normalize") if dissected else None), objective, device, dissected, top_images, dataset)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(str(written))


@click.command()
@click.option("--model", "model_spec", required=True, help="Model spec (docs/cli.md, Model specs).")
@click.option("--arch", default=None, help="Architecture spec for a file:PATH model.")
@click.option("--layer", "layers", multiple=True, required=True, help="Layer to invert; repeat (shown in depth order).")
@click.option("--image", "images", multiple=True, required=True,
              help="Image file, folder, Broden dataset (its val images) or builtin:NAME; repeat.")
@click.option("--max-images", type=click.IntRange(1), default=None, help="Invert only the first N images.")
@click.option("--size", type=click.IntRange(8), default=224, show_default=True, help="Side of the square images.")
@click.option("--steps", type=click.IntRange(1), default=INVERSION_DEFAULTS.steps, show_default=True,
              help="Gradient steps (the learning rate drops ×0.1 after a quarter and after three quarters).")
@click.option("--seed", type=click.IntRange(0), default=INVERSION_DEFAULTS.seed, show_default=True,
              help="Seed of the starting noise.")
@click.option("--name", default=None, help="The model's name in the report (default: the spec's).")
@normalize_option
@device_option
@click.option("--out", "out_dir", required=True, type=OUT_DIRECTORY, help="Result directory.")
def invert(model_spec, arch, layers, images, max_images, size, steps, seed, name, normalize, device, out_dir) -> None:
    """Network inversion (Mahendran & Vedaldi 2015): what each layer keeps of a few images."""
    import dataclasses

    from unitscope.models import load_model
    from unitscope.saliency.images import load_images
    from unitscope.visualize.run import invert_layers

    settings = dataclasses.replace(INVERSION_DEFAULTS, steps=steps, seed=seed)
    try:
        settings.validate()
        loaded = load_images(images, size, max_images)
        model = load_model(model_spec, arch)
        written = invert_layers(model, layers, loaded, out_dir, settings, normalize, device, name)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(str(written))


COMMANDS = [visualize, invert]
