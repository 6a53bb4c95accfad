"""unitscope CLI commands: ``probe-dataset`` (the procedural probe set in Broden format)."""

from __future__ import annotations

from pathlib import Path

import click

from unitscope.options import OUT_DIRECTORY
from unitscope.probe import DEFAULT_IMAGES, DEFAULT_SIZE, MIN_SIZE


@click.command("probe-dataset")
@click.option(
    "--out", required=True, type=OUT_DIRECTORY, help="New directory for the dataset (must not exist)."
)
@click.option("--images", default=DEFAULT_IMAGES, show_default=True, type=click.IntRange(min=1), help="Number of images.")
@click.option(
    "--size",
    default=DEFAULT_SIZE,
    show_default=True,
    type=click.IntRange(min=MIN_SIZE),
    help="Image size in pixels (label maps are half).",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Random seed; the same seed gives byte-identical files."
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="Processes drawing in parallel (default: all CPUs); the output does not depend on it.",
)
def probe_dataset(out: Path, images: int, size: int, seed: int, workers: int | None) -> None:
    """Draw the procedural probe set (scenes with objects, parts, materials, colours; textures) into OUT.

    The result is a complete Broden-format directory plus probe.json; prints its path.
    """
    from unitscope.probe.generate import generate

    if out.exists():
        raise click.BadParameter(f"{out} already exists; remove it or choose another directory", param_hint="--out")
    try:
        path = generate(out, images, size, seed, workers)
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(path)


COMMANDS: list[click.Command] = [probe_dataset]
