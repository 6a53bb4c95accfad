"""Writing files and directories so that a reader never sees half of one, also after a kill (one module for all).

- :func:`write_atomic` and the ``write_*`` helpers write a file under a temporary sibling name and rename it.
- :func:`staged_directory` builds a directory in a sibling ``.<name>.partial-<host>-<pid>`` and moves it into
  place (replacing an older one) only when the block succeeds; :func:`publish_directory` is that last step.
- :func:`make_scratch` gives a private scratch directory ``.unitscope-<host>-<pid>-<random>`` for work in
  progress inside a result directory.

Staging names carry their host and process, so that the next run removes what a process killed with SIGKILL or
by a power loss left behind (:func:`remove_stale`, with a message), once that process is gone from this host;
directories of other hosts (a shared cluster filesystem) are left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PREFIX = ".unitscope-"


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp)`` to a temporary sibling, then rename onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide shared results from the user's group
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(text: str, path: Path) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(data: object, path: Path) -> None:
    write_text(json.dumps(data, indent=2) + "\n", path)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_torch(obj: object, path: Path) -> None:
    """``torch.save`` through a file object: the archive's records are then named ``archive/``, not after the
    temporary file, so the same object gives the same bytes in every run."""
    import torch

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)

    write_atomic(path, save)


def write_npy(array: np.ndarray, path: Path) -> None:
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    write_atomic(path, write)


def write_npz(arrays: dict[str, np.ndarray], path: Path, compressed: bool = False) -> None:
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            (np.savez_compressed if compressed else np.savez)(handle, **arrays)

    write_atomic(path, write)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def _owner(name: str, prefix: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a staging name ``<prefix><host>-<pid>[-...]``, or ``None``."""
    host, _, rest = name.removeprefix(prefix).partition("-")
    pid = rest.partition("-")[0]
    return (host, int(pid)) if name.startswith(prefix) and pid.isdigit() else None


def remove_stale(parent: Path, prefix: str = PREFIX) -> list[Path]:
    """Remove the staging directories ``<prefix>*`` in ``parent`` whose process on this host has ended."""
    removed = []
    for path in sorted(parent.glob(f"{prefix}*")):
        owner = _owner(path.name, prefix)
        if owner is None or owner[0] != _host() or not path.is_dir():
            continue
        if owner[1] != os.getpid() and not _alive(owner[1]):
            print(f"unitscope: removing {path}, left behind by an interrupted run (process {owner[1]})", file=sys.stderr)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def make_scratch(parent: Path) -> Path:
    """A new scratch directory in ``parent`` (after removing stale ones); the caller removes it."""
    remove_stale(parent)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f"{PREFIX}{_host()}-{os.getpid()}-"))


def publish_directory(staged: Path, target: Path) -> None:
    """Move a finished directory into place, replacing an older one (moved aside first, so that ``target`` is
    missing only between two renames)."""
    if not target.exists():
        staged.rename(target)
        return
    remove_stale(target.parent, f".{target.name}.old-")  # moved aside by a run killed between two renames
    old = target.with_name(f".{target.name}.old-{_host()}-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    target.rename(old)
    staged.rename(target)
    shutil.rmtree(old)


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty sibling directory to build ``target`` in; it becomes ``target`` when the block succeeds
    and is removed when it raises. Stale siblings of killed runs are removed first; a file at ``target`` is refused."""
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file, not a result directory: give another path")
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.partial-"
    remove_stale(target.parent, prefix)
    staged = target.with_name(f"{prefix}{_host()}-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    try:
        yield staged
        publish_directory(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
