"""ProbeCNN: the small scene classifier the pipeline trains on the probe set (``probecnn`` spec).

Four blocks ``conv1``…``conv4``, each ``nn.Sequential(conv, BatchNorm, ReLU)`` so that a block's name is
its post-ReLU output (the layer to dissect); max-pools sit between blocks as ``pool1``…``pool3``.
At 224 px the maps are 56, 28, 14 and 7 pixels wide (conv4 like ResNet's layer4); about 0.4 M parameters
and 0.06 GMAC per image, so it trains in minutes on a laptop CPU.

The conditions of Zhou et al. (TPAMI 2018, Sec. 4) are options of the architecture (:class:`Architecture`):
without batch norm (the convolutions then have biases), with dropout before the classifier, and with conv4
two or four times as wide. A checkpoint's architecture is read back from its weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from unitscope.models.registry import Anatomy, ModelEntry, register_model

#: Output classes of an untrained ``probecnn`` built without a checkpoint to size its head.
DEFAULT_CLASSES = 10
WIDTHS = (32, 64, 128, 256)
LAYERS = ("conv1", "conv2", "conv3", "conv4")


@dataclass(frozen=True)
class Architecture:
    """A ProbeCNN variant: batch norm in every block, dropout probability before ``fc``, conv4's width as a
    multiple of :data:`WIDTHS`' last."""

    batchnorm: bool = True
    dropout: float = 0.0
    width: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.width < 1:
            raise ValueError(f"width must be a positive multiple, got {self.width}")

    @property
    def widths(self) -> tuple[int, ...]:
        return (*WIDTHS[:-1], WIDTHS[-1] * self.width)


def _block(in_channels: int, out_channels: int, kernel_size: int, stride: int, batchnorm: bool) -> nn.Sequential:
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=not batchnorm
    )
    norm = [nn.BatchNorm2d(out_channels)] if batchnorm else []
    return nn.Sequential(conv, *norm, nn.ReLU(inplace=True))


class ProbeCNN(nn.Module):
    """conv1 (7×7, stride 4) → pool → conv2 → pool → conv3 → pool → conv4 → global average → dropout → fc."""

    def __init__(self, num_classes: int = DEFAULT_CLASSES, architecture: Architecture = Architecture()) -> None:
        super().__init__()
        w1, w2, w3, w4 = architecture.widths
        bn = architecture.batchnorm
        self.conv1 = _block(3, w1, 7, 4, bn)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = _block(w1, w2, 3, 1, bn)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = _block(w2, w3, 3, 1, bn)
        self.pool3 = nn.MaxPool2d(2)
        self.conv4 = _block(w3, w4, 3, 1, bn)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(architecture.dropout)
        self.fc = nn.Linear(w4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.pool3(self.conv3(x))
        x = self.avgpool(self.conv4(x))
        return self.fc(self.dropout(torch.flatten(x, 1)))


def architecture_of(state_dict: Mapping[str, torch.Tensor]) -> Architecture:
    """The architecture a ProbeCNN state_dict was saved from (dropout, which has no weights, reads as 0).

    A state_dict without conv4's weights reads as the default; loading it then names the keys that differ.
    """
    conv4 = state_dict.get("conv4.0.weight")
    if conv4 is None:
        return Architecture()
    width, extra = divmod(conv4.shape[0], WIDTHS[-1])
    if extra or width < 1:
        raise ValueError(f"not a ProbeCNN state_dict: conv4 has {conv4.shape[0]} channels, not a multiple of {WIDTHS[-1]}")
    return Architecture(batchnorm="conv1.1.running_mean" in state_dict, width=width)


def _build(state_dict: Mapping[str, torch.Tensor] | None) -> ProbeCNN:
    """A ProbeCNN shaped like the checkpoint (classes, batch norm, conv4 width), or the default one."""
    if state_dict is None or "fc.weight" not in state_dict:
        return ProbeCNN()
    return ProbeCNN(num_classes=state_dict["fc.weight"].shape[0], architecture=architecture_of(state_dict))


@register_model("probecnn")
def probecnn() -> ModelEntry:
    """The pipeline's small CNN; trained weights come as ``file:checkpoint-N.pt --arch probecnn``."""
    return ModelEntry(build=_build, anatomy=Anatomy("conv4"))
