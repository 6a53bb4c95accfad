"""``unitscope report``: render dissection results into a static, offline report site."""

from __future__ import annotations

from pathlib import Path

import click

from unitscope.options import OUT_DIRECTORY


@click.command("report")
@click.option("--results", "results", multiple=True, required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A dissection result directory (holds meta.json), or a directory searched recursively for them. "
                   "Repeatable; only these results are shown.")
@click.option("--provenance", "provenance", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="provenance.json to show (besides those found below --results). Repeatable.")
@click.option("--dataset", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The Broden-format dataset the results were computed on (images for the strips).")
@click.option("--out", required=True, type=OUT_DIRECTORY,
              help="Site directory to write (replaced atomically when complete).")
@click.option("--reference", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of published NetDissect tally CSVs (and semantics_cvpr_release.mat) to show next to ours.")
@click.option("--citation", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CITATION.cff shown on the provenance page [default: ./CITATION.cff if present].")
@click.option("--tile-size", type=click.IntRange(16, 1024),
              help="Height in pixels of each image in the strips [default: half the image height].")
@click.option("--workers", type=click.IntRange(1), help="Processes rendering strips [default: CPU count].")
def report(results: tuple[Path, ...], provenance: tuple[Path, ...], dataset: Path, out: Path,
           reference: Path | None, citation: Path | None, tile_size: int | None, workers: int | None) -> None:
    """Render a static report site (index, layers, units, concepts, comparisons) from RESULTS."""
    from unitscope.broden.reader import BrodenFormatError
    from unitscope.report.collect import ReportInputError
    from unitscope.report.site import build_site
    from unitscope.summary import TallyFormatError

    if citation is None and Path("CITATION.cff").is_file():
        citation = Path("CITATION.cff")
    try:
        site = build_site(results, dataset, out, reference=reference, citation=citation,
                          tile_height=tile_size, workers=workers, provenance=provenance)
    except (ReportInputError, BrodenFormatError, TallyFormatError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"wrote {site / 'index.html'}")


COMMANDS: list[click.Command] = [report]
