"""How much memory this process may use: the machine's, or less where its cgroup limits it (a SLURM job's `--mem`
where SLURM enforces it with cgroups, a container's limit)."""

from __future__ import annotations

import os
from pathlib import Path


def memory_limit(cgroups: Path = Path("/proc/self/cgroup"), mount: Path = Path("/sys/fs/cgroup")) -> int:
    """Bytes of memory this process may use: the physical memory, or the smallest limit of its memory cgroup and
    that cgroup's ancestors (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``; as ``cgroups`` names them)."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        lines = cgroups.read_text().splitlines()
    except OSError:
        return limit
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            base, name = mount, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = mount / "memory", "memory.limit_in_bytes"
        else:
            continue
        directory = base / path.lstrip("/")
        while True:
            try:
                value = (directory / name).read_text().strip()
            except OSError:  # not in this mount namespace's view, or no limit file at this level
                value = ""
            if value.isdigit():  # v2 "max": no limit at this level
                limit = min(limit, int(value))
            if directory == base or base not in directory.parents:
                break
            directory = directory.parent
    return limit
