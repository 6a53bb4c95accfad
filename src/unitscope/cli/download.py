"""unitscope CLI commands: ``download`` (datasets and weights fetched from the web)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from unitscope.settings import BRODEN_VARIANTS


def _sha256(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise click.BadParameter("expected 64 hexadecimal digits")
    return value.lower() if value else None


@click.group()
def download() -> None:
    """Download datasets and weights (checksummed, resumable)."""


@download.command("broden")
@click.option(
    "--variant", required=True, type=click.Choice([str(v) for v in BRODEN_VARIANTS]),
    help="Image size: 227 for Caffe AlexNet-style models, 224 for the others, 384 for visualisation.",
)
@click.option(
    "--dest", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Directory that receives broden1_<S>/.",
)
@click.option(
    "--mirror", "mirrors", multiple=True, metavar="URL",
    help="Mirror tried before the official host (repeatable): the zip's URL, or a base URL holding broden1_<S>.zip.",
)
@click.option(
    "--from-zip", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use a zip downloaded elsewhere instead of downloading.",
)
@click.option("--sha256", callback=_sha256, metavar="HEX", help="Require the zip to have this sha256.")
def broden(variant: str, dest: Path, mirrors: tuple[str, ...], from_zip: Path | None, sha256: str | None) -> None:
    """Download Broden and extract it to DEST/broden1_<S>.

    Prints the dataset's path. The zip is verified, extracted into a temporary directory and renamed into
    place when complete; an existing complete dataset is left as it is.
    """
    from unitscope.broden.download import ArchiveError, fetch_broden
    from unitscope.download import ChecksumError, DownloadError

    if from_zip is not None and mirrors:
        raise click.UsageError("give either --from-zip or --mirror, not both")
    try:
        path = fetch_broden(int(variant), dest, mirrors, from_zip, sha256=sha256)
    except (DownloadError, ChecksumError, ArchiveError, FileExistsError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(path)


COMMANDS: list[click.Command] = [download]
