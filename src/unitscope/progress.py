"""Progress of long work: a tqdm bar on a terminal, periodic log lines with rate and ETA otherwise.

Snakemake job logs and cluster logs are not terminals; there a bar would be one endless line of carriage
returns, so :func:`progress` prints a line every ``$UNITSCOPE_PROGRESS_SECONDS`` seconds (default 30)
and one when the work ends, e.g. ``tally: 1200/3000 img (40%), 85.2 img/s, elapsed 00:14, ETA 00:21``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

#: Environment variable: seconds between progress lines when stderr is not a terminal.
INTERVAL_ENV = "UNITSCOPE_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0
LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {rate_fmt}, elapsed {elapsed}, ETA {remaining}"
LOG_FORMAT_UNKNOWN_TOTAL = "{desc}: {n_fmt} {unit}, {rate_fmt}, elapsed {elapsed}"

T = TypeVar("T")


class LogProgress(tqdm):
    """tqdm that writes whole lines (no carriage returns), at most one per ``mininterval``, and a final one."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self.n == 0 and not getattr(self, "_closing", False):
            return True  # no line before any work is done
        self.fp.write((msg or self.__str__()) + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if self.disable:
            return
        self._closing = True
        if self.n != getattr(self, "last_print_n", None):
            self.display()
        self.disable = True  # tqdm's own close would print again
        with self._lock:
            self._decr_instances(self)


def _interval() -> float:
    text = os.environ.get(INTERVAL_ENV)
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"${INTERVAL_ENV}={text!r}: expected a number of seconds") from None
    return max(value, 0.0)


def progress(
    iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str, unit: str = "it", **options
) -> tqdm:
    """A progress bar over ``iterable`` (or updated by hand): tqdm on a terminal, :class:`LogProgress` lines
    on stderr otherwise. ``options`` go to tqdm (``initial``, ``unit_scale``, ``unit_divisor``)."""
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, **options)
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return LogProgress(
        iterable, total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=_interval(), miniters=1,
        bar_format=LOG_FORMAT if total else LOG_FORMAT_UNKNOWN_TOTAL, **options,
    )
