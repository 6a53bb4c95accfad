"""Checks of a workflow config that need the package: models, layers, device, local files (docs/workflow.md).

The Snakefile runs :func:`check_config` when it is parsed (``snakemake -n`` included), so a misspelt layer
fails in seconds, naming the config key, instead of minutes later in a job log. Registered architectures
are built and run on torch's ``meta`` device: no weights are loaded or initialised, nothing is downloaded,
nothing is computed. ``python:`` specs are called as they are. The same forward pass gives each layer's size,
from which the workflow plans its activation caches (:func:`unitscope.pipeline.plan_caches`).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path


@dataclass
class ConfigCheck:
    """What :func:`check_config` found: ``(config key, message)`` problems, and the values per image of
    every configured layer that could be checked (``{model: {layer: units × h × w}}``)."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    layer_values: dict[str, dict[str, int]] = field(default_factory=dict)


class _Problem(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.key, self.message = key, message


def device_problem(config: Mapping) -> tuple[str, str] | None:
    """``("device", message)`` when the config asks for CUDA and this machine has none.

    Only for jobs that run on this machine: on a cluster the submitting node need not have a GPU.
    """
    if config.get("device") != "cuda":
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return "device", "cuda, but CUDA is not available here; use auto or cpu"


def check_config(config: Mapping) -> ConfigCheck:
    """Check the models, layers and local files of an (already schema-valid) config."""
    check = ConfigCheck()
    for name, dataset in config.get("datasets", {}).items():
        if dataset.get("zip") and not Path(dataset["zip"]).is_file():
            check.problems.append((f"datasets.{name}.zip", f"{dataset['zip']} does not exist"))
    for name, entry in config.get("models", {}).items():
        try:
            check.layer_values[name] = _layer_values(name, entry, image_size(config, entry))
        except _Problem as problem:
            check.problems.append((problem.key, problem.message))
    return check


def image_size(config: Mapping, entry: Mapping) -> int:
    """The side of the images a model is dissected on, where the config says it (else 224)."""
    datasets = config.get("datasets", {})
    name = entry.get("dataset") or (next(iter(datasets)) if len(datasets) == 1 else None)
    dataset = datasets.get(name, {})
    if dataset.get("source") == "path":
        index = Path(dataset["path"]) / "index.csv"
        with open(index, newline="", encoding="utf-8") as handle:  # exists: the workflow checked it
            row = next(csv.DictReader(handle), None)
        return int(row["ih"]) if row and str(row.get("ih", "")).isdigit() else 224
    return int(dataset.get("size") or dataset.get("variant") or 224)


def _layer_values(name: str, entry: Mapping, size: int) -> dict[str, int]:
    """Values per image of each configured layer; a :class:`_Problem` names what cannot run."""
    from unitscope.activations import layer_sizes
    from unitscope.hooks import LayerError, resolve_layers

    spec, arch = entry["spec"], entry.get("arch")
    key = f"models.{name}.spec"
    try:
        if spec.startswith("file:"):
            if not Path(spec.removeprefix("file:")).is_file():
                raise _Problem(key, f"{spec.removeprefix('file:')} does not exist")
            if not arch:
                raise _Problem(f"models.{name}.arch", f"required with spec {spec!r}: the architecture, e.g. probecnn")
            key, module = f"models.{name}.arch", _architecture(arch)
        elif arch is not None:
            raise _Problem(f"models.{name}.arch", f"applies to file: specs only, not to {spec!r}")
        else:
            module = _architecture(spec, entry.get("train"))
    except ValueError as error:
        raise _Problem(key, str(error)) from None
    try:
        resolve_layers(module, entry["layers"])
        # one forward pass finds layers called several times, or not at all, and gives their sizes
        return layer_sizes(module, entry["layers"], (size, size))
    except LayerError as error:
        raise _Problem(f"models.{name}.layers", str(error)) from None
    except Exception:  # noqa: BLE001 - an operation the meta device lacks, an input size the model refuses, a user
        return {}  # model's own error: the size stays unknown and the model's first job reports the problem


def _architecture(spec: str, train: Mapping | None = None):
    """The module a spec names, without weights where the registry builds it (on the meta device); a model the
    pipeline trains (``train``) in the architecture it trains."""
    import torch

    from unitscope.models.registry import load_model, resolve_entry

    if train is not None:
        from unitscope.models.probecnn import Architecture, ProbeCNN

        options = {option.name: train[option.name] for option in fields(Architecture) if option.name in train}
        with torch.device("meta"):
            return ProbeCNN(architecture=Architecture(**options))

    if spec.startswith("python:"):
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # as the workflow's jobs import it (PYTHONPATH includes the cwd)
        return load_model(spec).module
    entry, _ = resolve_entry(spec)
    with torch.device("meta"):
        return entry.build(None)
