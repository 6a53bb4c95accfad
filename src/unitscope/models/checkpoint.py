"""Read checkpoints and load them strictly, with errors that say which keys do not fit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Keys under which training scripts commonly nest the state_dict.
NESTED_KEYS = ("state_dict", "model")
_SHOWN_KEYS = 8


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Remove a ``DataParallel``-style ``module.`` prefix from every key that has it."""
    return {key.removeprefix(prefix): value for key, value in state_dict.items()}


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state_dict in a checkpoint file (possibly under ``state_dict``/``model``), ``module.`` stripped, and
    the checkpoint's record: what the file says about itself beside the weights (its top-level numbers,
    strings and flat lists and mappings of them, e.g. ``iteration``, ``seed``, ``val_accuracy``, ``architecture``).

    Loaded with ``weights_only=True``: a checkpoint holding pickled code is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe pickles
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error
    record: dict[str, Any] = {}
    for key in NESTED_KEYS:
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping):
            record = {k: v for k, v in checkpoint.items() if _recordable(v)}
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(
            f"checkpoint {path} is not a state_dict (a mapping of names to tensors, optionally under "
            f"{' or '.join(repr(k) for k in NESTED_KEYS)})"
        )
    return strip_prefix(checkpoint), record


def _recordable(value: Any) -> bool:
    scalar = (bool, int, float, str)
    return isinstance(value, scalar) or (
        isinstance(value, Mapping) and bool(value) and all(isinstance(v, scalar) for v in value.values())
    ) or (isinstance(value, list) and bool(value) and all(isinstance(v, scalar) for v in value))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict of :func:`read_checkpoint`."""
    return read_checkpoint(path)[0]


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else "")


def load_state_dict_into(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with one clear error on any mismatch."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (checkpoint vs model): {_listing(mismatched)}")
    if problems:
        raise ValueError(
            f"checkpoint {source} does not fit the architecture {type(module).__name__}: "
            + "; ".join(problems)
            + ". Check --arch."
        )
    module.load_state_dict(state_dict, strict=True)
