"""Private scratch directories beside results, named after their process so that a killed run's are found.

A scratch directory ``.unitscope-<host>-<pid>-<random>`` holds work in progress (staged result files, a
temporary activation cache) until it is moved into place. A run killed with SIGKILL or by a power loss
cannot remove it; the next run in the same directory does (:func:`remove_stale`) once that process is gone
from this host. Directories of other hosts (a shared cluster filesystem) are left alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

PREFIX = ".unitscope-"


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale(parent: Path) -> list[Path]:
    """Remove the scratch directories in ``parent`` whose process on this host has ended; return them."""
    removed = []
    host = _host()
    for path in sorted(parent.glob(f"{PREFIX}*")):
        owner_host, _, rest = path.name.removeprefix(PREFIX).partition("-")
        pid_text = rest.partition("-")[0]
        if owner_host != host or not pid_text.isdigit() or not path.is_dir():
            continue
        if int(pid_text) != os.getpid() and not _alive(int(pid_text)):
            print(f"unitscope: removing {path}, left behind by an interrupted run (process {pid_text})", file=sys.stderr)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def make_scratch(parent: Path) -> Path:
    """A new scratch directory in ``parent`` (after removing stale ones); the caller removes it."""
    remove_stale(parent)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f"{PREFIX}{_host()}-{os.getpid()}-"))
