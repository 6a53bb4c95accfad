"""A tiny CNN for the workflow test's `python:` model spec (python:tests.configs.tiny_model:build)."""

from __future__ import annotations

from torch import nn


def build() -> nn.Module:
    """Two conv blocks initialised at random (unitscope seeds the RNG): enough to exercise a user-supplied model."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )
