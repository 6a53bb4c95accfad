"""Time the whole default workflow from a fresh clone: wall clock, CPU time, and per rule wall clock and memory.

Usage: python benchmarks/bench_workflow.py [--cores 2] [--configfile config/config.yaml] [--tmp DIR]

Copies the workflow files into a scratch directory (as a fresh clone has them, no results), runs
``snakemake --cores N`` there, and reports the total wall-clock time, the CPU time of all jobs, and per
rule the number of jobs, the summed wall-clock time of its jobs (from Snakemake's log) and the largest
resident memory of one of its jobs (sampled every 0.2 s: what the SLURM profile's `mem_mb` must hold).
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
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


def sample_memory(pid: int, stop: threading.Event, peaks: dict[str, int], interval: float = 0.2) -> None:
    """Until ``stop``: every ``interval`` s, the resident memory of each running job (the shell Snakemake starts
    for it, which sends its output to ``logs/<rule>...``, and all that shell's descendants, summed: an upper
    bound where loader processes share pages), kept as the largest per rule in ``peaks``."""
    import psutil  # a dependency of Snakemake

    while not stop.wait(interval):
        try:
            shells = psutil.Process(pid).children()
        except psutil.NoSuchProcess:
            return
        for shell in shells:
            try:
                rule = re.search(r"> logs/(\w+)[/.]", " ".join(shell.cmdline()))
                if rule:
                    rss = sum(p.memory_info().rss for p in [shell, *shell.children(recursive=True)])
                    peaks[rule.group(1)] = max(peaks.get(rule.group(1), 0), rss)
            except psutil.Error:  # the job ended while it was measured
                continue


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
        with open(Path(scratch) / "snakemake.log", "w+") as log:
            run = subprocess.Popen(command, cwd=clone, stdout=subprocess.DEVNULL, stderr=log, text=True)
            peaks: dict[str, int] = {}
            stop = threading.Event()
            sampler = threading.Thread(target=sample_memory, args=(run.pid, stop, peaks))
            sampler.start()
            run.wait()
            stop.set()
            sampler.join()
            log.seek(0)
            stderr = log.read()
        wall = time.perf_counter() - wall
        if run.returncode != 0:
            sys.exit(f"snakemake failed:\n{stderr[-4000:]}")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(f"wall clock: {wall:.0f} s; CPU time of all jobs: {usage.ru_utime + usage.ru_stime:.0f} s")
        print(f"{'rule':<16} {'jobs':>5} {'wall s (sum)':>13} {'peak RSS of a job':>18}")
        for rule, (jobs, seconds) in sorted(rule_times(stderr).items(), key=lambda item: -item[1][1]):
            peak = f"{peaks[rule] / 2**20:.0f} MiB" if rule in peaks else "not sampled"
            print(f"{rule:<16} {jobs:>5} {seconds:>13.0f} {peak:>18}")


if __name__ == "__main__":
    main()
