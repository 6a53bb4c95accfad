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
@click.option("--json", "as_json", is_flag=True, help="Print the summary.json dict instead of a table.")
def summarize_command(tally: Path, iou_threshold: float, as_json: bool) -> None:
    """Count detectors and unique detectors (both conventions) in TALLY (a NetDissect tally.csv)."""
    from unitscope.summary import TallyFormatError, read_tally, summarize

    try:
        summary = summarize(read_tally(tally), iou_threshold)
    except TallyFormatError as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


def format_summary(summary: dict) -> str:
    """A plain-text table of a summary dict: one row per category, then the total."""
    header = ("category", "k-detectors", "top-label detectors", "unique top-label", "unique per-category")
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
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple) -> str:
        padded = (str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded)

    lines = [
        f"{summary['units']} units; detector: best IoU > {summary['iou_threshold']:g}.",
        "k-detectors: units whose best IoU within category k passes (a unit can count in several).",
        "top-label detectors: detectors whose top category is k.",
        "unique per-category 'all' is the sum over categories (the CVPR chart's convention).",
        "",
        line(header),
        *(line(row) for row in rows),
    ]
    return "\n".join(lines)


COMMANDS = [summarize_command]
