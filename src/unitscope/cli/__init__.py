"""The ``unitscope`` command line: one click group, commands defined per topic module."""

from __future__ import annotations

import click

from unitscope import __version__
from unitscope.cli import download, engine, models, probe, report, summary


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unitscope")
def main() -> None:
    """Network Dissection: what the hidden units of vision networks detect."""


for module in (probe, download, models, engine, summary, report):
    for command in module.COMMANDS:
        main.add_command(command)
