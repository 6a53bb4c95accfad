"""CSAIL Places365 checkpoints (``places365:NAME``): torchvision architectures with 365 scene classes."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torchvision
from torch import nn

from unitscope.models.checkpoint import load_state_dict_into, read_state_dict
from unitscope.models.hub import fetch_weights
from unitscope.models.registry import ModelEntry, register_family
from unitscope.models.zoo import torchvision_anatomy

URL = "http://places2.csail.mit.edu/models_places365/{arch}_places365.pth.tar"
CLASSES = 365
#: sha256 of each checkpoint where known (None: computed and reported at first download).
SHA256: dict[str, str | None] = {
    "resnet18": None,
    "resnet50": None,
    "alexnet": None,
    "densenet161": None,
    "wideresnet18": None,
}
# Old DenseNet checkpoints name ``norm.1`` what torchvision now names ``norm1`` (same as torchvision's fix).
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def wideresnet18(num_classes: int = CLASSES) -> nn.Module:
    """CSAIL's ``wideresnet18``: ResNet-18 without the stem max-pool (layer4 maps are 14×14 at 224 px).

    Parameter names match torchvision's ResNet-18, so the checkpoint loads into it directly.
    """
    model = torchvision.models.resnet18(num_classes=num_classes)
    model.maxpool = nn.Identity()
    return model


def _build(arch: str) -> nn.Module:
    if arch == "wideresnet18":
        return wideresnet18()
    return torchvision.models.get_model(arch, weights=None, num_classes=CLASSES)


def _rename_densenet(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {_DENSENET_OLD_KEY.sub(lambda m: m.group(1) + m.group(2), k): v for k, v in state_dict.items()}


def _loader(arch: str):
    def load(module: nn.Module) -> None:
        path = fetch_weights([URL.format(arch=arch)], f"{arch}_places365.pth.tar", SHA256[arch])
        load_state_dict_into(module, _rename_densenet(read_state_dict(path)), source=str(path))

    return load


def _entry(arch: str) -> ModelEntry:
    return ModelEntry(
        build=lambda state_dict: _build(arch),
        weights={"places365": _loader(arch)},
        default_weights="places365",
        anatomy=torchvision_anatomy(arch),
    )


register_family("places365", lambda: list(SHA256), _entry)
