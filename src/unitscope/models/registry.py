"""Model specs (``docs/cli.md``, "Model specs") and the registry that resolves them.

In the style of timm, every loadable model is one registered function. A spec names it as
``[family:]name[@weights]``: ``torchvision:resnet18@imagenet``, ``places365:resnet18``,
``efficientnet-lite0``, ``probecnn``. Two spec forms load models from outside the registry:
``python:MODULE:CALLABLE`` (any callable returning an ``nn.Module``) and ``file:PATH`` with
``arch=SPEC`` (a local state_dict loaded into the architecture of a registered spec).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from unitscope.checksums import weights_sha256
from unitscope.models.checkpoint import load_state_dict_into, read_checkpoint

#: Seed used to initialise every untrained architecture, so "untrained" means the same weights everywhere.
INIT_SEED = 0

SPEC_FORMS = (
    "torchvision:NAME",
    "torchvision:NAME@imagenet",
    "places365:NAME",
    "efficientnet-lite0",
    "efficientnet-lite0@imagenet",
    "probecnn",
    "digits-cnn",
    "python:MODULE:CALLABLE",
    "file:PATH (with --arch SPEC)",
)


#: Families with more names than this are not listed in full in error messages.
_LISTED_NAMES = 12


class ModelSpecError(ValueError):
    """A model spec that cannot be resolved; the message says what is valid."""


@dataclass(frozen=True)
class Anatomy:
    """Where the saliency methods and their sanity checks look in an architecture (docs/saliency.md).

    ``feature_layer`` is the last convolutional feature layer: Grad-CAM's default layer (``None``: the user names
    one). The sanity checks randomise the model block by block, top-down: a block is a top-level module with
    parameters, a child of one of the ``containers`` (ResNet's ``layer4.1``), or a group of top-level modules
    named in ``groups`` (a stem convolution and its batch norm).
    """

    feature_layer: str | None = None
    containers: tuple[str, ...] = ()
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: how to build its architecture and which weights it can load.

    ``build(state_dict)`` returns the randomly initialised architecture (the caller seeds the RNG);
    ``state_dict`` is the checkpoint about to be loaded (or ``None``), for architectures whose head
    size follows the checkpoint. ``weights`` maps a weight tag (``imagenet``, ``places365``) to a
    function that loads those weights into the built module; ``default_weights`` is the tag used
    when the spec names none (``None``: untrained).
    """

    build: Callable[[Mapping[str, torch.Tensor] | None], nn.Module]
    weights: Mapping[str, Callable[[nn.Module], None]] = field(default_factory=dict)
    default_weights: str | None = None
    normalize: str = "imagenet"
    anatomy: Anatomy = Anatomy()


@dataclass
class LoadedModel:
    """A model ready for dissection: ``module`` is in eval mode on the CPU."""

    module: nn.Module
    spec: str
    name: str
    default_normalize: str
    checkpoint: dict | None = None  # a file: spec's record (read_checkpoint): iteration, seed, val_accuracy…
    anatomy: Anatomy = Anatomy()
    classes: list[str] | None = None  # the name of each output class, where the weights say

    def weights_sha256(self) -> str:
        """Checksum of the module's parameters and buffers (:func:`unitscope.checksums.weights_sha256`)."""
        return weights_sha256(self.module.state_dict())


_MODELS: dict[str, Callable[[], ModelEntry]] = {}
_FAMILIES: dict[str, tuple[Callable[[], list[str]], Callable[[str], ModelEntry]]] = {}
#: The modules that register the shipped models, by spec name or family, imported when a spec first needs
#: them: torchvision takes a second to import, which a ``python:`` or ``probecnn`` spec should not pay.
_PROVIDERS = {
    "probecnn": "unitscope.models.probecnn",
    "efficientnet-lite0": "unitscope.models.zoo",
    "torchvision": "unitscope.models.zoo",
    "places365": "unitscope.models.places365",
    "digits-cnn": "unitscope.saliency.digits",
}


def _import_providers(name: str | None = None) -> None:
    """Import the module registering ``name`` (a spec name or family), or every provider."""
    modules = {_PROVIDERS[name]} if name in _PROVIDERS else set() if name else set(_PROVIDERS.values())
    for module in sorted(modules):
        importlib.import_module(module)


def register_model(name: str) -> Callable[[Callable[[], ModelEntry]], Callable[[], ModelEntry]]:
    """Decorator: register a function returning the :class:`ModelEntry` of the spec ``name``."""

    def decorate(function: Callable[[], ModelEntry]) -> Callable[[], ModelEntry]:
        _MODELS[name] = function
        return function

    return decorate


def register_family(family: str, names: Callable[[], list[str]], entry: Callable[[str], ModelEntry]) -> None:
    """Register a family of specs ``family:NAME``; ``names()`` lists the valid NAMEs."""
    _FAMILIES[family] = (names, entry)


def list_models() -> list[str]:
    """Every registered spec name (without weight tags), families expanded."""
    _import_providers()
    names = list(_MODELS)
    for family, (family_names, _) in _FAMILIES.items():
        names += [f"{family}:{name}" for name in family_names()]
    return sorted(names)


def _close_matches(word: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=5, cutoff=0.5)
    return f" Did you mean {', '.join(matches)}?" if matches else ""


def resolve_entry(spec: str) -> tuple[ModelEntry, str | None]:
    """The registry entry of a ``[family:]name[@weights]`` spec and the weight tag it asks for."""
    base, _, tag = spec.partition("@")
    family, sep, name = base.partition(":")
    _import_providers(family if sep else base)
    if sep:
        if family not in _FAMILIES:
            raise ModelSpecError(
                f"unknown model spec {spec!r}: no model family {family!r}; valid forms: {', '.join(SPEC_FORMS)}"
            )
        names_of, entry_of = _FAMILIES[family]
        valid = names_of()
        if name not in valid:
            listing = ", ".join(valid) if len(valid) <= _LISTED_NAMES else f"{len(valid)} names, e.g. {valid[0]}"
            raise ModelSpecError(
                f"unknown model {name!r} in spec {spec!r} ({family} models: {listing})." + _close_matches(name, valid)
            )
        entry = entry_of(name)
    elif base in _MODELS:
        entry = _MODELS[base]()
    else:
        raise ModelSpecError(
            f"unknown model spec {spec!r}; valid forms: {', '.join(SPEC_FORMS)}." + _close_matches(base, list_models())
        )
    weights = tag or entry.default_weights
    if tag and tag not in entry.weights:
        offered = ", ".join(f"{base}@{t}" for t in entry.weights) or "none (untrained only)"
        raise ModelSpecError(f"model spec {spec!r}: unknown weights {tag!r}; weights offered: {offered}")
    return entry, weights


def build_untrained(entry: ModelEntry, state_dict: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """Build an entry's architecture, initialised from :data:`INIT_SEED` without touching the global RNG."""
    return _seeded(lambda: entry.build(state_dict))


def _seeded(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with torch's RNG seeded from :data:`INIT_SEED` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        return build()


def _short_name(spec: str) -> str:
    """``torchvision:resnet18@imagenet`` → ``resnet18``."""
    return spec.partition("@")[0].split(":", 1)[-1]


def _load_python(spec: str) -> nn.Module:
    target = spec.removeprefix("python:")
    module_name, sep, attribute = target.rpartition(":")
    if not sep or not module_name or not attribute:
        raise ModelSpecError(f"model spec {spec!r}: expected python:MODULE:CALLABLE, e.g. python:mypkg.nets:build")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        hint = ""
        if isinstance(error, ModuleNotFoundError) and module_name.startswith(error.name or "\0"):
            hint = "; it must be importable: install it, or run with PYTHONPATH=. from the directory that holds it"
        raise ModelSpecError(f"model spec {spec!r}: cannot import module {module_name!r} ({error}){hint}") from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise ModelSpecError(
            f"model spec {spec!r}: module {module_name!r} has no callable {attribute!r}."
            + _close_matches(attribute, public)
        )
    try:
        model = factory()
    except Exception as error:
        raise ModelSpecError(f"model spec {spec!r}: {attribute}() raised {type(error).__name__}: {error}") from error
    if not isinstance(model, nn.Module):
        raise ModelSpecError(
            f"model spec {spec!r}: {attribute}() returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _load_file(spec: str, arch: str | None) -> tuple[nn.Module, str, str, dict, Anatomy]:
    path = Path(spec.removeprefix("file:"))
    if not arch:
        raise ModelSpecError(
            f"model spec {spec!r} needs --arch SPEC naming the architecture, e.g. --arch torchvision:resnet18"
        )
    if arch.startswith(("file:", "python:")):
        raise ModelSpecError(
            f"--arch {arch!r}: the architecture must be a registered model spec, not {arch.split(':')[0]}:"
        )
    entry, _ = resolve_entry(arch)
    state_dict, record = read_checkpoint(path)
    module = build_untrained(entry, state_dict)
    load_state_dict_into(module, state_dict, source=str(path))
    return module, f"{_short_name(arch)} [{path.name}]", entry.normalize, record, entry.anatomy


def load_model(spec: str, arch: str | None = None) -> LoadedModel:
    """Load the model a spec names (see :data:`SPEC_FORMS`), in eval mode on the CPU.

    ``arch`` is required for ``file:PATH`` specs and rejected for others.
    """
    if arch is not None and not spec.startswith("file:"):
        raise ModelSpecError(f"--arch is only used with file:PATH specs, not with {spec!r}")
    record, anatomy = None, Anatomy()
    if spec.startswith("python:"):  # seeded too: weights a callable initialises at random are the same every time
        module, name, normalize = _seeded(lambda: _load_python(spec)), spec.removeprefix("python:"), "imagenet"
    elif spec.startswith("file:"):
        module, name, normalize, record, anatomy = _load_file(spec, arch)
    else:
        entry, weights = resolve_entry(spec)
        module = build_untrained(entry)
        if weights is not None:
            entry.weights[weights](module)
        name, normalize, anatomy = f"{_short_name(spec)} ({weights or 'untrained'})", entry.normalize, entry.anatomy
    return LoadedModel(module=module.eval().cpu(), spec=spec, name=name, default_normalize=normalize,
                       checkpoint=record or None, anatomy=anatomy, classes=_class_names(spec, record))


def _class_names(spec: str, record: dict | None) -> list[str] | None:
    """The class names a checkpoint records (ProbeCNN's scene classes), or ImageNet's for ``@imagenet`` weights."""
    if record and isinstance(record.get("classes"), list):
        return [str(name) for name in record["classes"]]
    if spec.endswith("@imagenet"):
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        return list(_IMAGENET_CATEGORIES)
    return None
