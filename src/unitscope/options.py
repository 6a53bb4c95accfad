"""click options shared by the commands that run models (device, shards, workers, ...); values from ``unitscope.settings``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from unitscope.settings import NORMALIZATIONS, Shard, parse_shard, resolve_device

if TYPE_CHECKING:
    import torch


#: The type of every ``--out`` result directory: a path that is a file is refused when the command line is parsed.
OUT_DIRECTORY = click.Path(file_okay=False, path_type=Path)


class ShardType(click.ParamType):
    """click parameter type for ``--shard I/N``."""

    name = "I/N"

    def convert(self, value, param, ctx) -> Shard:
        if isinstance(value, Shard):
            return value
        try:
            return parse_shard(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


class DeviceType(click.ParamType):
    """click parameter type for ``--device auto|cpu|cuda`` that resolves to a ``torch.device``."""

    name = "auto|cpu|cuda"

    def convert(self, value, param, ctx) -> torch.device:
        if not isinstance(value, str):  # already a torch.device
            return value
        try:
            return resolve_device(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


device_option = click.option(
    "--device", type=DeviceType(), default="auto", show_default=True, help="Where to run the model."
)
workers_option = click.option(
    "--workers",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Worker processes decoding images and label maps (0: in the main process). Changes no result.",
)
normalize_option = click.option(
    "--normalize",
    type=click.Choice(NORMALIZATIONS),
    default=None,
    help="Input normalisation (default: the model's own, usually imagenet).",
)
shard_option = click.option(
    "--shard", type=ShardType(), default=None, help="Process only image shard I of N (contiguous ranges)."
)


def _split_categories(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("give at least one category, e.g. object,part", ctx=ctx, param=param)
    return names


def _parse_tags(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} must be KEY=VALUE", ctx=ctx, param=param)
        tags[key] = text
    return tags


tag_option = click.option(
    "--tag", "tags", multiple=True, callback=_parse_tags,
    help="KEY=VALUE recorded in meta.json (series, weights, iteration, quantile); repeat for several.",
)

categories_option = click.option(
    "--categories",
    default=None,
    callback=_split_categories,
    help="Comma-separated Broden categories to use (default: all in category.csv).",
)
