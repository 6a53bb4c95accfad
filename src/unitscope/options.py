"""Options shared by the commands that run models: device choice and image shards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")
#: Defaults of ``unitscope train-probecnn``: SGD steps and images per step.
TRAIN_ITERATIONS = 128
TRAIN_BATCH_SIZE = 32
#: Presence rules of the category-conditional activation count (implemented in ``unitscope.tally``).
PRESENCE_RULES = ("image", "mask")
#: Input normalisations a model can be given (implemented in ``unitscope.models.normalize``).
NORMALIZATIONS = ("imagenet", "caffe", "none")


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without CUDA is an error; ``cuda:N`` is accepted."""
    import torch  # deferred: the CLI should start without loading torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available here; use --device cpu or auto")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count`` contiguous image ranges."""

    index: int
    count: int

    def range(self, n_images: int, align: int = 1) -> range:
        """Images ``index·N//count … (index+1)·N//count``, each boundary rounded down to a multiple of ``align``:
        contiguous, disjoint, covering ``0…N``.

        With ``align`` = the batch size, a shard's batches are exactly the unsharded run's batches, so the
        forward pass sees the same images together and gives the same float bits (docs/engine.md, Exactness).
        """
        if align < 1:
            raise ValueError(f"shard alignment must be at least 1, got {align}")

        def boundary(i: int) -> int:
            return n_images if i == self.count else i * n_images // self.count // align * align

        return range(boundary(self.index), boundary(self.index + 1))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """Parse ``I/N`` (0 ≤ I < N)."""
    index, sep, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        shard = None
    if not sep or shard is None or not 0 <= shard.index < shard.count:
        raise ValueError(f"shard {text!r} must be I/N with 0 <= I < N, e.g. 0/4")
    return shard


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


categories_option = click.option(
    "--categories",
    default=None,
    callback=_split_categories,
    help="Comma-separated Broden categories to use (default: all in category.csv).",
)
