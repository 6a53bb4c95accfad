"""ProbeCNN: the small scene classifier the pipeline trains on the probe set (``probecnn`` spec).

Four blocks ``conv1``…``conv4``, each ``nn.Sequential(conv, BatchNorm, ReLU)`` so that a block's name is
its post-ReLU output (the layer to dissect); max-pools sit between blocks as ``pool1``…``pool3``.
At 224 px the maps are 56, 28, 14 and 7 pixels wide (conv4 like ResNet's layer4); about 0.4 M parameters
and 0.06 GMAC per image, so it trains in minutes on a laptop CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unitscope.models.registry import ModelEntry, register_model

#: Output classes of an untrained ``probecnn`` built without a checkpoint to size its head.
DEFAULT_CLASSES = 10
WIDTHS = (32, 64, 128, 256)
LAYERS = ("conv1", "conv2", "conv3", "conv4")


def _block(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ProbeCNN(nn.Module):
    """conv1 (7×7, stride 4) → pool → conv2 → pool → conv3 → pool → conv4 → global average → fc."""

    def __init__(self, num_classes: int = DEFAULT_CLASSES, widths: Sequence[int] = WIDTHS) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.conv1 = _block(3, w1, 7, stride=4)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = _block(w1, w2, 3)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = _block(w2, w3, 3)
        self.pool3 = nn.MaxPool2d(2)
        self.conv4 = _block(w3, w4, 3)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.pool3(self.conv3(x))
        x = self.avgpool(self.conv4(x))
        return self.fc(torch.flatten(x, 1))


def _build(state_dict: Mapping[str, torch.Tensor] | None) -> ProbeCNN:
    """A ProbeCNN whose head matches the checkpoint's class count (or :data:`DEFAULT_CLASSES`)."""
    if state_dict is not None and "fc.weight" in state_dict:
        return ProbeCNN(num_classes=state_dict["fc.weight"].shape[0])
    return ProbeCNN()


@register_model("probecnn")
def probecnn() -> ModelEntry:
    """The pipeline's small CNN; trained weights come as ``file:checkpoint-N.pt --arch probecnn``."""
    return ModelEntry(build=_build)
