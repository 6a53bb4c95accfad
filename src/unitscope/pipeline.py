"""What the Snakemake workflow needs from the package besides the commands it runs (workflow/rules/common.smk):
the jobs' environment, and the plan of its activation caches (docs/workflow.md, Disk)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from unitscope.probe import DEFAULT_IMAGES
from unitscope.settings import BRODEN_IMAGES


def prepare_job_environment(workdir: str | Path) -> None:
    """Set up the environment the workflow's shell jobs inherit.

    The ``unitscope`` that belongs to the Python running Snakemake comes first on ``PATH`` (a virtual
    environment need not be activated; a conda env activated by ``--sdm conda`` is prepended later and
    wins), and ``workdir`` is on ``PYTHONPATH``, so ``python:MODULE:CALLABLE`` specs import from it too (as
    ``python -m`` would).
    """
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "unitscope").exists():
        os.environ["PATH"] = os.pathsep.join(filter(None, [str(bin_dir), os.environ.get("PATH")]))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(workdir), os.environ.get("PYTHONPATH")]))


def dataset_images(dataset: Mapping, max_images: int | None) -> int | None:
    """Images a configured dataset gives a run (``None`` where that is unknown before it exists)."""
    if dataset["source"] == "probe":
        count = dataset.get("images", DEFAULT_IMAGES)
    elif dataset["source"] == "broden":
        count = BRODEN_IMAGES
    else:
        index = Path(dataset["path"]) / "index.csv"
        if not index.is_file():
            return None
        with open(index, "rb") as handle:
            count = max(sum(1 for _ in handle) - 1, 0)
    return count if max_images is None else min(count, max_images)


def plan_caches(needs: Mapping[str, int | None], policy: str, budget_bytes: float) -> dict[str, bool]:
    """Which sources write their activation cache to disk (``True``) rather than recompute the forward pass.

    ``needs``: bytes of each source's cache (``None``: unknown). ``disk``: all; ``recompute``: none; ``auto``:
    the smallest first while their total fits the budget (as if every cache existed at once, which the
    workflow's parallel jobs allow), and the unknown ones (the old default: they are small models of the
    user's own).
    """
    if policy in ("disk", "recompute"):
        return {name: policy == "disk" for name in needs}
    plan = {name: True for name, need in needs.items() if need is None}
    total = 0
    for name, need in sorted(((n, b) for n, b in needs.items() if b is not None), key=lambda item: (item[1], item[0])):
        plan[name] = total + need <= budget_bytes
        total += need if plan[name] else 0
    return {name: plan[name] for name in needs}
