"""What the Snakemake workflow needs from the package besides the commands it runs (workflow/rules/common.smk)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


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
