"""Checks of a workflow config that need the package: models, layers, device, local files (docs/workflow.md).

The Snakefile runs :func:`config_problems` when it is parsed (``snakemake -n`` included), so a misspelt
layer or ``device: cuda`` on a machine without CUDA fails in seconds, naming the config key, instead of
minutes later in a job log. Registered architectures are built on torch's ``meta`` device: no weights
are loaded or initialised, nothing is downloaded. ``python:`` specs are called as they are.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path


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


def config_problems(config: Mapping) -> list[tuple[str, str]]:
    """``[(config key, message), ...]`` for the models, layers and local files of an (already schema-valid)
    config that cannot run."""
    problems: list[tuple[str, str]] = []
    for name, dataset in config.get("datasets", {}).items():
        if dataset.get("zip") and not Path(dataset["zip"]).is_file():
            problems.append((f"datasets.{name}.zip", f"{dataset['zip']} does not exist"))
    for name, entry in config.get("models", {}).items():
        problems += _model_problems(name, entry, _image_size(config, entry))
    return problems


def _image_size(config: Mapping, entry: Mapping) -> int:
    """The side of the images a model is dissected on, where the config says it (else 224)."""
    datasets = config.get("datasets", {})
    name = entry.get("dataset") or (next(iter(datasets)) if len(datasets) == 1 else None)
    dataset = datasets.get(name, {})
    return int(dataset.get("size") or dataset.get("variant") or 224)


def _model_problems(name: str, entry: Mapping, image_size: int) -> list[tuple[str, str]]:
    import torch

    from unitscope.hooks import LayerError, Trace, resolve_layers

    spec, arch = entry["spec"], entry.get("arch")
    key = f"models.{name}.spec"
    try:
        if spec.startswith("file:"):
            if not Path(spec.removeprefix("file:")).is_file():
                return [(key, f"{spec.removeprefix('file:')} does not exist")]
            if not arch:
                return [(f"models.{name}.arch", f"required with spec {spec!r}: the architecture, e.g. probecnn")]
            key, module = f"models.{name}.arch", _architecture(arch)
        elif arch is not None:
            return [(f"models.{name}.arch", f"applies to file: specs only, not to {spec!r}")]
        else:
            module = _architecture(spec)
    except ValueError as error:
        return [(key, str(error))]
    try:
        resolve_layers(module, entry["layers"])
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        try:  # one forward pass (free on the meta device) finds layers called several times, or not at all
            with Trace(module.eval(), entry["layers"]) as trace, torch.inference_mode():
                trace(torch.zeros(1, 3, image_size, image_size, device=device))
        except (RuntimeError, NotImplementedError):
            pass  # an operation the meta device lacks, or an input size the model refuses: its first job will tell
    except LayerError as error:
        return [(f"models.{name}.layers", str(error))]
    return []


def _architecture(spec: str):
    """The module a spec names, without weights where the registry builds it (on the meta device)."""
    import torch

    from unitscope.models.registry import load_model, resolve_entry

    if spec.startswith("python:"):
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # as the workflow's jobs import it (PYTHONPATH includes the cwd)
        return load_model(spec).module
    entry, _ = resolve_entry(spec)
    with torch.device("meta"):
        return entry.build(None)
