"""Model-parameter randomisation (Adebayo et al., NeurIPS 2018): cascading and independent, block by block.

The blocks of a model come from its :class:`~unitscope.models.registry.Anatomy`, ordered top-down by when they
first run in a forward pass (a module that never runs, such as Inception's auxiliary classifier in eval mode, is
no block). *Cascading* randomisation re-initialises the blocks one after another from the logits down, keeping
what it did: stage k has blocks 1..k random. *Independent* randomisation re-initialises one block at a time in a
fresh copy. Each block is re-initialised by its layers' own ``reset_parameters()`` under a seed derived from the
run's seed and the block's top-down position, so a block gets the same random weights in both tests and in
either direction. Batch-norm running statistics are kept, as in the original (their TensorFlow code re-initialised
trainable variables only); ``reset_statistics`` resets them too.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from unitscope.hooks import run_once
from unitscope.models.registry import Anatomy
from unitscope.saliency.methods import seed_of

from unitscope.settings import RANDOMIZATION_ORDERS as ORDERS
from unitscope.settings import RANDOMIZATION_TESTS as TESTS

Test = Literal["cascading", "independent"]


class RandomizationError(ValueError):
    """A model whose blocks cannot be listed or re-initialised; the message says which module and why."""


@dataclass(frozen=True)
class Block:
    """A unit of randomisation: a name (a module's, or a group's) and the top-level or container modules in it."""

    name: str
    modules: tuple[str, ...]


def _candidates(model: nn.Module, anatomy: Anatomy) -> list[Block]:
    children = dict(model.named_children())
    named = dict(model.named_modules())
    for name in [*anatomy.containers, *(m for group in anatomy.groups.values() for m in group)]:
        if name not in named:
            raise RandomizationError(f"{type(model).__name__} has no module {name!r}, which its anatomy names as a "
                                     "randomisation block")
    grouped = {member: group for group, members in anatomy.groups.items() for member in members}
    candidates, seen = [], set()
    for name in children:
        if name in anatomy.containers:
            candidates += [Block(f"{name}.{child}", (f"{name}.{child}",)) for child, _ in named[name].named_children()]
        elif name in grouped:
            if grouped[name] not in seen:
                seen.add(grouped[name])
                candidates.append(Block(grouped[name], tuple(anatomy.groups[grouped[name]])))
        else:
            candidates.append(Block(name, (name,)))
    return candidates


def randomization_blocks(model: nn.Module, anatomy: Anatomy, example: torch.Tensor) -> list[Block]:
    """The model's blocks with parameters that run on ``example``, top-down (the last to run first)."""
    named = dict(model.named_modules())
    candidates = [block for block in _candidates(model, anatomy)
                  if any(True for name in block.modules for _ in named[name].parameters())]
    first_call: dict[str, int] = {}

    def recorder(block: str):
        def record(_module: nn.Module, _inputs: object) -> None:
            first_call.setdefault(block, len(first_call))

        return record

    run_once(model, example, pre=[(named[name], recorder(block.name)) for block in candidates for name in block.modules])
    ran = sorted((block for block in candidates if block.name in first_call), key=lambda b: first_call[b.name])
    if not ran:
        raise RandomizationError(f"{type(model).__name__} has no block with parameters that runs: nothing to randomise")
    return ran[::-1]


def reinitialize(model: nn.Module, block: Block, seed: int, reset_statistics: bool = False) -> None:
    """Re-initialise every layer with parameters in ``block`` by its ``reset_parameters()``, under ``seed``; batch
    norm keeps its running statistics unless ``reset_statistics``."""
    named = dict(model.named_modules())
    layers = [(f"{root}.{sub}" if sub else root, module) for root in block.modules
              for sub, module in named[root].named_modules() if any(True for _ in module.parameters(recurse=False))]
    for name, module in layers:
        if not callable(getattr(module, "reset_parameters", None)):
            raise RandomizationError(f"layer {name!r} ({type(module).__name__}) of block {block.name!r} has parameters "
                                     "but no reset_parameters(): it cannot be re-initialised")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for _name, module in layers:
            kept = {key: buffer.clone() for key, buffer in module.named_buffers(recurse=False)}
            module.reset_parameters()
            if not reset_statistics and hasattr(module, "reset_running_stats"):
                for key, buffer in kept.items():
                    getattr(module, key).copy_(buffer)


@dataclass(frozen=True)
class Stage:
    """One randomised model: the test, the block randomised last (cascading) or alone (independent), and the
    seeds its blocks were re-initialised with (``{block: seed}``)."""

    test: Test
    block: str
    model: nn.Module
    seeds: dict[str, int]


def stages(model: nn.Module, blocks: Sequence[Block], test: Test, seed: int, order: str = "top-down",
           reset_statistics: bool = False) -> Iterator[Stage]:
    """The randomised models of ``test`` over ``blocks`` (top-down, as :func:`randomization_blocks` gives them),
    taken in ``order``. Cascading randomises one copy further at each stage: use a stage before asking for the
    next."""
    if test not in TESTS:
        raise ValueError(f"unknown randomisation test {test!r}; expected one of {', '.join(TESTS)}")
    if order not in ORDERS:
        raise ValueError(f"unknown randomisation order {order!r}; expected one of {', '.join(ORDERS)}")
    positions = list(enumerate(blocks))
    if order == "bottom-up":
        positions.reverse()
    cascade, seeds = copy.deepcopy(model) if test == "cascading" else None, {}
    for position, block in positions:
        target = cascade if cascade is not None else copy.deepcopy(model)
        block_seed = seed_of(seed, "block", position)
        reinitialize(target, block, block_seed, reset_statistics)
        seeds = {**seeds, block.name: block_seed} if cascade is not None else {block.name: block_seed}
        yield Stage(test, block.name, target.eval(), seeds)
