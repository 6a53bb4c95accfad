"""Provenance of a result set: what produced it, from which data, with which code (docs/outputs.md).

The workflow writes one ``provenance.json`` beside its results::

    python -m unitscope.provenance --config config/config.yaml --dataset probe=data/probe \
        --results results/dissect/probecnn/conv4 --checkpoints results/models/probecnn --out provenance.json

``--config -`` reads the (effective) config as YAML or JSON from standard input. The record identifies
everything: the lock file and every installed package, the code (git), the config and seeds, each dataset
(index and whole-content checksums), each result's model weights (``weights_sha256`` of its ``meta.json``)
and each training checkpoint file.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import yaml

from unitscope import __version__
from unitscope.download import sha256_of
from unitscope.checksums import directory_sha256
from unitscope.environment import LOCK_FILE, installed_packages, lock_differences, read_lock
from unitscope.io import write_json

#: Distributions whose versions decide the numbers (all installed ones are listed under ``environment``).
PACKAGES = ("torch", "torchvision", "numpy", "pandas", "pillow", "scipy", "snakemake")


def package_versions() -> dict[str, str | None]:
    """Python, unitscope and the installed version of every package in :data:`PACKAGES` (``None`` if absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "unitscope": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(directory: str | Path = ".") -> dict[str, object]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the git work tree holding ``directory``."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=directory, capture_output=True, text=True, check=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def dataset_record(dataset_dir: str | Path) -> dict[str, object]:
    """A dataset as given (``path``), the sha256 of its ``index.csv`` (as ``meta.json`` records it) and of
    its whole content (every image and label file, :func:`unitscope.checksums.directory_sha256`)."""
    path = Path(dataset_dir) / "index.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {dataset_dir} is not a Broden-format directory")
    content = directory_sha256(dataset_dir)
    return {"path": str(dataset_dir), "index_sha256": sha256_of(path), "content_sha256": content["sha256"],
            "files": content["files"], "bytes": content["bytes"]}


def environment_record(lock: str | Path = LOCK_FILE) -> dict[str, object]:
    """The lock file's sha256, every installed distribution, and the ones that differ from the lock."""
    installed = installed_packages()
    record: dict[str, object] = {"lock_file": str(lock), "lock_sha256": None, "differs_from_lock": None}
    if Path(lock).is_file():
        record["lock_sha256"] = sha256_of(lock)
        record["differs_from_lock"] = lock_differences(read_lock(lock), installed)
    return {**record, "packages": installed}


def weights_record(results: Sequence[str | Path], checkpoints: Sequence[str | Path]) -> dict[str, object]:
    """Model weights behind the results: per result directory (each given one, or each found below a given
    root, as the report finds them) its ``model_spec`` and ``weights_sha256`` (from its ``meta.json``), and the
    sha256 of every checkpoint file (``*.pt``) in the given directories."""
    from unitscope.report.collect import result_directories

    models: dict[str, dict[str, str | None]] = {}
    by_kind, _ = result_directories(results)
    for directory in sorted(d for directories in by_kind.values() for d in directories):
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        models[str(directory)] = {"model_spec": meta.get("model_spec"), "weights_sha256": meta.get("weights_sha256")}
    files = {str(path): sha256_of(path) for directory in checkpoints for path in sorted(Path(directory).glob("*.pt"))}
    return {"results": dict(sorted(models.items())), "checkpoints": files}


def find_seeds(config: Mapping, prefix: str = "") -> dict[str, int | list[int]]:
    """Every ``seed`` value (and ``seeds`` list) in the config, keyed by its dotted path
    (``datasets.probe.seed``, ``models.probecnn.train.seeds``)."""
    seeds: dict[str, int | list[int]] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            seeds.update(find_seeds(value, f"{path}."))
        elif key in ("seed", "seeds") or key.endswith("_seed"):
            seeds[path] = value
    return seeds


def device_info() -> dict[str, object]:
    """The accelerator visible to torch where provenance is collected."""
    import torch

    info: dict[str, object] = {
        "torch_build": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def collect_provenance(
    config: Mapping,
    datasets: Mapping[str, str | Path],
    results: Sequence[str | Path] = (),
    checkpoints: Sequence[str | Path] = (),
    lock: str | Path = LOCK_FILE,
) -> dict:
    """The provenance record of a result set made with ``config`` from the named dataset directories."""
    return {
        "unitscope_version": __version__,
        "versions": package_versions(),
        "environment": environment_record(lock),
        "git": git_state(),
        "config": json.loads(json.dumps(config)),
        "datasets": {name: dataset_record(path) for name, path in datasets.items()},
        "weights": weights_record(results, checkpoints),
        "seeds": find_seeds(config),
        "device": {"configured": config.get("device"), **device_info()},
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _dataset_argument(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--dataset {text!r}: expected NAME=DIR")
    return name, path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unitscope.provenance", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="config file (YAML or JSON); '-' reads standard input")
    parser.add_argument("--dataset", action="append", default=[], type=_dataset_argument, metavar="NAME=DIR")
    parser.add_argument("--results", action="append", default=[], metavar="DIR", help="a result directory")
    parser.add_argument("--checkpoints", action="append", default=[], metavar="DIR", help="a directory of *.pt")
    parser.add_argument("--lock", default=LOCK_FILE, help="the lock file the environment was installed from")
    parser.add_argument("--out", required=True, help="where to write provenance.json")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.config == "-" else Path(args.config).read_text(encoding="utf-8")
        config = yaml.safe_load(text)
        if not isinstance(config, Mapping):
            raise ValueError(f"--config {args.config}: not a mapping of config keys")
        record = collect_provenance(config, dict(args.dataset), args.results, args.checkpoints, args.lock)
        write_json(record, Path(args.out))
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
