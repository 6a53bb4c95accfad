"""Checksums that identify what produced a result: a whole dataset directory, a model's weights.

:func:`directory_sha256` hashes every file of a directory (a Broden dataset: images, label PNGs, CSVs).
Hashing all of Broden takes minutes, so each file's digest is cached under the cache directory
(``$UNITSCOPE_CACHE/checksums``), keyed by the directory and reused while the file's size and modification
time are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from unitscope.download import sha256_of
from unitscope.cache import cache_dir
from unitscope.io import write_json


def directory_sha256(root: str | Path) -> dict[str, object]:
    """``{"files": n, "bytes": total, "sha256": digest}`` over every non-hidden file under ``root``.

    The digest is the sha256 of the lines ``<sha256 of the file>  <path relative to root>``, sorted by path
    (the format of ``sha256sum``), so it does not depend on where the directory lies.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    cache_path = cache_dir() / "checksums" / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]}.json"
    try:
        cached = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cached = {}
    entries: dict[str, list] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath, name)
            relative = path.relative_to(root).as_posix()
            stat = path.stat()
            known = cached.get(relative)
            if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
                entries[relative] = known
            else:
                entries[relative] = [stat.st_size, stat.st_mtime_ns, sha256_of(path)]
            total += stat.st_size
    if entries != cached:
        try:
            write_json(entries, cache_path)
        except OSError:  # a read-only cache only costs the next run the hashing again
            pass
    digest = hashlib.sha256()
    for relative in sorted(entries):
        digest.update(f"{entries[relative][2]}  {relative}\n".encode())
    return {"files": len(entries), "bytes": total, "sha256": digest.hexdigest()}


def weights_sha256(state_dict: Mapping[str, object]) -> str:
    """sha256 of a model's parameters and buffers: names, dtypes, shapes and bytes, in name order.

    It identifies the weights whatever file or function they came from (a checkpoint, a wheel, a hub).
    """
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
