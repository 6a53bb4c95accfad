"""How much memory this process may use: the machine's, or less where a cgroup limits it (a SLURM job's `--mem`)."""

from __future__ import annotations

import os
from pathlib import Path

#: The limit files of cgroup v2 and v1, as mounted in a process's own view (a SLURM job with task/cgroup sees its own).
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def memory_limit(limits: tuple[Path, ...] = CGROUP_LIMITS) -> int:
    """Bytes of memory this process may use: the physical memory, or a smaller cgroup limit."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in limits:
        try:
            value = path.read_text().strip()
        except OSError:
            continue
        if value.isdigit():  # "max" (v2) or an unreadable file: no limit from here
            limit = min(limit, int(value))
    return limit
