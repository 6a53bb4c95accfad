"""``unitscope summarize``: detector and unique-detector counts of one tally.csv."""

from __future__ import annotations

import json
from pathlib import Path

import click

from unitscope.settings import DISSECT_DEFAULTS


@click.command("summarize")
@click.argument("tally", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--iou-threshold",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=DISSECT_DEFAULTS.iou_threshold,
    show_default=True,
    help="A unit is a detector when its best IoU is strictly greater than this.",
)
@click.option("--null", "null_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="null.csv of a permutation null (default: the one beside TALLY, if any): also count significant "
                   "detectors.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary.json dict instead of a table.")
def summarize_command(tally: Path, iou_threshold: float, null_path: Path | None, as_json: bool) -> None:
    """Count detectors and unique detectors (both conventions) in TALLY (a NetDissect tally.csv); with a
    permutation null's null.csv, also those whose IoU beats their label's null level."""
    from unitscope.summary import TallyFormatError, read_null_levels, read_tally, summarize, tally_categories

    if null_path is None and (tally.parent / "null.csv").is_file():
        null_path = tally.parent / "null.csv"
    try:
        levels = None
        if null_path is not None:
            try:
                levels = read_null_levels(null_path)
            except ValueError as error:
                raise click.BadParameter(str(error), param_hint="--null") from None
        frame = read_tally(tally)
        if levels is not None:
            labels = {str(v) for k in tally_categories(frame) for v in frame[f"{k}-label"]} - {""}
            unknown = sorted(labels - set(levels))
            if unknown:
                raise click.BadParameter(f"{null_path} has no null level for label {unknown[0]!r} of {tally}; give "
                                         "the null.csv of the same dissection", param_hint="--null")
        summary = summarize(frame, iou_threshold, levels=levels)
    except TallyFormatError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(format_summary(summary))
    if "significant" in summary:
        click.echo(f"\nSignificant: the IoU also beats its label's null level in {null_path}.\n")
        click.echo(format_summary({**summary, **summary["significant"]}, header=False))


def format_summary(summary: dict, header: bool = True) -> str:
    """A plain-text table of a summary dict: one row per category, then the total (``header``: with the
    explanation lines first)."""
    titles = ("category", "k-detectors", "top-label detectors", "unique top-label", "unique per-category")
    rows = [
        (
            k,
            summary["detectors_per_category"][k],
            summary["top_label_detectors_per_category"][k],
            summary["unique_top_label"]["per_category"][k],
            summary["unique_per_category"]["per_category"][k],
        )
        for k in summary["detectors_per_category"]
    ]
    rows.append(
        (
            "all",
            summary["detectors"],
            summary["detectors"],
            summary["unique_top_label"]["all"],
            summary["unique_per_category"]["all"],
        )
    )
    widths = [max(len(str(row[i])) for row in [titles, *rows]) for i in range(len(titles))]

    def line(cells: tuple) -> str:
        padded = (str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded)

    lines = [
        f"{summary['units']} units; detector: best IoU > {summary['iou_threshold']:g}.",
        "k-detectors: units whose best IoU within category k passes (a unit can count in several).",
        "top-label detectors: detectors whose top category is k.",
        "unique per-category 'all' is the sum over categories (the CVPR chart's convention).",
        "",
    ] if header else []
    return "\n".join([*lines, line(titles), *(line(row) for row in rows)])


COMMANDS = [summarize_command]
