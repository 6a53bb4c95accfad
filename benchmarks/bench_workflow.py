"""Time the whole default workflow from a fresh clone: wall clock, CPU time, and wall clock per rule.

Usage: python benchmarks/bench_workflow.py [--cores 2] [--configfile config/config.yaml] [--tmp DIR]

Copies the workflow files into a scratch directory (as a fresh clone has them, no results), runs
``snakemake --cores N`` there, and reports the total wall-clock time, the CPU time of all jobs, and per
rule the number of jobs and the summed wall-clock time of its jobs (from Snakemake's log).
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "envs", "CITATION.cff", "tests/configs", "tests/data/sanity-images")
_STAMP = r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]"


def fresh_clone(target: Path) -> Path:
    """Copy what the workflow reads into ``target``."""
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def rule_times(log: str) -> dict[str, tuple[int, float]]:
    """``{rule: (jobs, summed wall seconds)}`` from a Snakemake log."""
    parse = lambda text: datetime.strptime(re.sub(" +", " ", text), "%a %b %d %H:%M:%S %Y")  # noqa: E731
    started = {}
    for stamp, rule, job in re.findall(_STAMP + r"\n(?:local)?rule (\w+):\n(?:.*\n)*?\s+jobid: (\d+)", log):
        started[job] = (rule, parse(stamp))
    totals: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for stamp, job in re.findall(_STAMP + r"\nFinished jobid: (\d+)", log):
        if job in started:
            rule, start = started[job]
            totals[rule][0] += 1
            totals[rule][1] += (parse(stamp) - start).total_seconds()
    return {rule: (jobs, seconds) for rule, (jobs, seconds) in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", default=None, help="default: the embedded config/config.yaml")
    parser.add_argument("--tmp", type=Path, default=None, help="scratch parent directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as scratch:
        clone = fresh_clone(Path(scratch))
        command = [sys.executable, "-m", "snakemake", "--cores", str(args.cores)]
        if args.configfile:
            command += ["--configfile", args.configfile]
        wall = time.perf_counter()
        done = subprocess.run(command, cwd=clone, capture_output=True, text=True)
        wall = time.perf_counter() - wall
        if done.returncode != 0:
            sys.exit(f"snakemake failed:\n{done.stderr[-4000:]}")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(f"wall clock: {wall:.0f} s; CPU time of all jobs: {usage.ru_utime + usage.ru_stime:.0f} s")
        print(f"{'rule':<16} {'jobs':>5} {'wall s (sum)':>13}")
        for rule, (jobs, seconds) in sorted(rule_times(done.stderr).items(), key=lambda item: -item[1][1]):
            print(f"{rule:<16} {jobs:>5} {seconds:>13.0f}")


if __name__ == "__main__":
    main()
