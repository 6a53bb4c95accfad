"""A real single-node SLURM cluster on this machine, for the workflow's cluster test (docs/workflow.md).

munged with a test key, then slurmctld and slurmd in the foreground, one partition with every CPU that
`slurmd -C` finds, on loopback ports that are free. The node declares at least the memory the caller asks for
(the largest request of the profile), more than `slurmd -C` finds if need be (`config_overrides`): memory is
not a consumable resource here (`CR_CPU`), only a limit each job's request must fit under.

No accounting database: the executor plugin reads job states with `squeue --states=all`, which reports finished
jobs for `MinJobAge` (a day here). Without it `sacct` cannot name the node a NODE_FAIL job ran on, so the plugin
does not exclude the cluster's only node from the retry (with accounting it would).

The config goes to SLURM's default path, /etc/slurm/slurm.conf, rather than into $SLURM_CONF:
snakemake-executor-plugin-slurm-jobstep (0.6.1) removes the SLURM_* variables (all but a few job ids),
SLURM_CONF included, before the `srun` that runs each job, so a cluster found through $SLURM_CONF fails inside
the job. A slurm.conf this module did not write is never touched. Everything is stopped and removed on exit,
whatever happened; a file left by a killed test (marked) is replaced by the next one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# A test cluster of unitscope (tests/slurm_cluster.py); removed when the test ends."
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun", "scancel", "scontrol", "sinfo")
PACKAGES = "slurmctld slurmd slurm-client munge"  # what `make slurm` installs
PARTITION = "unitscope"


class ClusterError(RuntimeError):
    """The cluster's daemons did not come up, or the cluster did not do what a test asked of it."""


def unavailable() -> str | None:
    """Why a cluster cannot start on this machine, or None."""
    missing = [name for name in PROGRAMS if shutil.which(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed (Debian: apt-get install {PACKAGES}; `make test` does it as root)"
    if os.geteuid() != 0:
        return "slurmd launches jobs as root: run the test as root"
    if SLURM_CONF.exists() and MARK not in SLURM_CONF.read_text(errors="replace"):
        return f"{SLURM_CONF} belongs to this machine's own SLURM: the test cluster leaves it alone"
    return None


def _free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that are free now (all bound at once, so none repeats)."""
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def _node_fields(memory_mb: int) -> dict[str, str]:
    """`slurmd -C`'s description of this machine (CPUs, sockets, cores, threads, memory), as a node on loopback
    with at least ``memory_mb``."""
    found = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    fields = dict(item.split("=", 1) for item in found.split())
    fields["RealMemory"] = str(max(int(fields["RealMemory"]), memory_mb))
    fields["NodeAddr"] = "127.0.0.1"
    return fields


def _config(directory: Path, node: dict[str, str]) -> str:
    controller, daemon = _free_ports(2)
    return "\n".join([
        MARK,
        "ClusterName=unitscope-test",
        f"SlurmctldHost={node['NodeName']}(127.0.0.1)",
        f"SlurmctldPort={controller}",
        f"SlurmdPort={daemon}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={directory}/munge/munge.socket",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={directory}/state",
        f"SlurmdSpoolDir={directory}/spool",
        f"SlurmctldPidFile={directory}/slurmctld.pid",
        f"SlurmdPidFile={directory}/slurmd.pid",
        f"SlurmctldLogFile={directory}/log/slurmctld.log",
        f"SlurmdLogFile={directory}/log/slurmd.log",
        "SlurmdParameters=config_overrides",  # the node may declare more memory than it has (see above)
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "MinJobAge=86400",
        "KillWait=5",
        "ReturnToService=1",  # a node taken down (fail_node) stays down until it is resumed
        " ".join(f"{key}={value}" for key, value in node.items()),
        f"PartitionName={PARTITION} Nodes={node['NodeName']} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _squeue(*options: str) -> str:
    return subprocess.run(["squeue", "--noheader", *options], capture_output=True, text=True).stdout.strip()


@dataclass(frozen=True)
class Cluster:
    """The running cluster: its one node, and where the daemons log."""

    node: str
    logs: Path

    def fail_node(self, alive: Callable[[], bool], timeout: float = 600) -> set[str]:
        """Take the node down as soon as a job runs on it, as a failing node does (slurmctld ends the jobs running
        on it NODE_FAIL while it handles the request), then bring it back; the ids of those jobs. Tried again on
        the next job where the one seen running ended first; ``alive()`` false (the submitting Snakemake ended)
        or ``timeout`` seconds raise :class:`ClusterError`."""
        deadline = time.monotonic() + timeout
        while alive() and time.monotonic() < deadline:
            if not _squeue("--states=RUNNING"):
                time.sleep(0.2)
                continue
            subprocess.run(["scontrol", "update", f"NodeName={self.node}", "State=DOWN", "Reason=unitscope-test"],
                           check=True)
            states = dict(line.split() for line in _squeue("--states=all", "--format=%i %T").splitlines())
            subprocess.run(["scontrol", "update", f"NodeName={self.node}", "State=RESUME"], check=True)
            if failed := {job for job, state in states.items() if state == "NODE_FAIL"}:
                return failed
        raise ClusterError("no job was running on the test cluster's node to fail it: "
                           + ("the submitting process ended" if not alive() else f"none within {timeout:.0f} s"))


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for_idle_node(daemons: list[subprocess.Popen], directory: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(daemon.poll() is not None for daemon in daemons):
            break
        if subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True).stdout.strip() == "idle":
            return
        time.sleep(0.5)
    logs = "".join(f"\n--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                   for log in sorted((directory / "log").glob("*")))
    raise ClusterError(f"the test cluster's node did not come up within {timeout:.0f} s:{logs}")


def _cancel_jobs(timeout: float = 60) -> None:
    """Cancel every job of the partition and wait until SLURM has killed their processes (KillWait 5 s)."""
    subprocess.run(["scancel", f"--partition={PARTITION}"], capture_output=True, timeout=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _squeue("--states=PENDING,RUNNING,COMPLETING"):
        time.sleep(0.5)


@contextmanager
def slurm_cluster(directory: Path, memory_mb: int = 0) -> Iterator[Cluster]:
    """Start the cluster with its state, spool and logs in ``directory`` and a node of at least ``memory_mb``."""
    for name in ("munge", "state", "spool", "log"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    (directory / "munge").chmod(0o711)  # munged refuses a socket directory others can write to
    key = directory / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    node = _node_fields(memory_mb)
    daemons: list[subprocess.Popen] = []
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(_config(directory, node))
    try:
        commands = {
            "munged": ["munged", "--foreground", "--force", f"--socket={directory}/munge/munge.socket",
                       f"--key-file={key}", f"--pid-file={directory}/munge/munged.pid",
                       f"--seed-file={directory}/munge/munged.seed", f"--log-file={directory}/log/munged.log"],
            "slurmctld": ["slurmctld", "-D", "-i"],
            "slurmd": ["slurmd", "-D"],
        }
        for name, command in commands.items():
            with open(directory / "log" / f"{name}.out", "w") as out:
                daemons.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
            if name == "munged":
                deadline = time.monotonic() + 10
                while not (directory / "munge/munge.socket").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
        _wait_for_idle_node(daemons, directory)
        yield Cluster(node["NodeName"], directory / "log")
    finally:
        if len(daemons) > 1 and daemons[1].poll() is None:  # slurmctld still answers: end what is left of the jobs
            _cancel_jobs()
        for daemon in reversed(daemons):
            _stop(daemon)
        SLURM_CONF.unlink(missing_ok=True)
