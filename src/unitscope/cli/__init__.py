"""The ``unitscope`` command line: one click group, commands defined per topic module."""

from __future__ import annotations

import os
import sys

import click

from unitscope import __version__
from unitscope.cli import dimension, download, engine, explain, models, probe, report, saliency, summary, visualize


#: Exit statuses of a command stopped by Ctrl-C (128 + SIGINT) or by a closed pipe (128 + SIGPIPE).
INTERRUPTED = 130
BROKEN_PIPE = 141


class _Commands(click.Group):
    """The command group: Ctrl-C exits 130, and an I/O error is one line naming the file, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None
        except BrokenPipeError:  # the reader of stdout left (`unitscope layers ... | head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(BROKEN_PIPE) from None
        except OSError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unitscope")
def main() -> None:
    """Network Dissection: what the hidden units of vision networks detect."""


for module in (probe, download, models, engine, dimension, saliency, visualize, explain, summary, report):
    for command in module.COMMANDS:
        main.add_command(command)
