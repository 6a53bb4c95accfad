"""Model specs, checkpoint loading, layer lookup and input normalisation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from realdata import real_data
from unitscope.models import (
    LayerError,
    ModelSpecError,
    layer_shapes,
    load_model,
    normalizer,
    resolve_layers,
)
from unitscope.models.places365 import _rename_densenet
from unitscope.models.probecnn import ProbeCNN



pytestmark = pytest.mark.usefixtures("one_thread")


def equal_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- spec parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("resnet18", "Did you mean places365:resnet18, torchvision:resnet18"),
        ("torchvision:resnt18", "Did you mean resnet18"),
        ("places365:resnet34", "places365 models: resnet18, resnet50, alexnet, densenet161, wideresnet18"),
        ("timm:resnet18", "no model family 'timm'"),
        ("efficientnet-lite0@places365", "weights offered: efficientnet-lite0@imagenet"),
        ("probecnn@imagenet", "none (untrained only)"),
        ("python:os", "expected python:MODULE:CALLABLE"),
        ("python:no_such_module_xyz:build", "cannot import module 'no_such_module_xyz'"),
        ("python:no_such_module_xyz:build", "run with PYTHONPATH=. from the directory that holds it"),
        ("python:json:loads", "model spec 'python:json:loads': loads() raised TypeError"),
        ("python:os:pathh", "has no callable 'pathh'"),
        ("python:os:getcwd", "returned str, not a torch.nn.Module"),
        ("file:model.pt", "needs --arch SPEC"),
    ],
)
def test_bad_specs_raise_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(ModelSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_model(spec)


def test_arch_only_with_file_specs() -> None:
    with pytest.raises(ModelSpecError, match="only used with file:PATH"):
        load_model("probecnn", arch="probecnn")
    with pytest.raises(ModelSpecError, match="registered model spec"):
        load_model("file:x.pt", arch="python:os:getcwd")


def test_untrained_torchvision_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    loaded = load_model("torchvision:squeezenet1_1")
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(0)
    reference = torchvision.models.squeezenet1_1()
    assert equal_state(loaded.module, reference)
    assert not loaded.module.training
    assert (loaded.spec, loaded.name, loaded.default_normalize) == (
        "torchvision:squeezenet1_1",
        "squeezenet1_1 (untrained)",
        "imagenet",
    )


def test_python_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_nets.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build():
                return nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU())
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_model("python:my_nets:build")
    assert isinstance(loaded.module[0], nn.Conv2d) and not loaded.module.training
    assert loaded.name == "my_nets:build"


# --- file: checkpoints ----------------------------------------------------------------------------------


def test_file_spec_strips_module_prefix_and_sizes_probecnn_head(tmp_path: Path) -> None:
    torch.manual_seed(7)
    trained = ProbeCNN(num_classes=7)
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}, "iteration": 3}, path)
    loaded = load_model(f"file:{path}", arch="probecnn")
    assert equal_state(loaded.module, trained)
    assert loaded.module.fc.out_features == 7
    assert loaded.name == "probecnn [ckpt.pt]"


def test_file_spec_plain_and_model_key(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = torchvision.models.squeezenet1_1()
    (plain, nested) = tmp_path / "plain.pth", tmp_path / "nested.pth"
    torch.save(net.state_dict(), plain)
    torch.save({"model": net.state_dict()}, nested)
    for path in (plain, nested):
        assert equal_state(load_model(f"file:{path}", arch="torchvision:squeezenet1_1").module, net)


def test_file_spec_mismatch_lists_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    state = ProbeCNN(num_classes=4).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["conv2.0.weight"]
    state["conv3.0.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        load_model(f"file:{path}", arch="probecnn")
    message = str(info.value)
    assert "missing keys: conv2.0.weight" in message
    assert "unexpected keys: extra.weight" in message
    assert "conv3.0.weight (1, 1, 1, 1) vs (128, 64, 3, 3)" in message


def test_file_spec_rejects_non_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="is not a state_dict"):
        load_model(f"file:{path}", arch="probecnn")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(f"file:{tmp_path / 'missing.pt'}", arch="probecnn")


# --- Places365 (loading path with a cached local file; nothing is downloaded) -------------------------


def test_places365_loads_cached_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNITSCOPE_CACHE", str(tmp_path))
    torch.manual_seed(5)
    reference = torchvision.models.resnet18(num_classes=365)
    (tmp_path / "models").mkdir()
    # The CSAIL layout: {"epoch", "arch", "state_dict" with DataParallel "module." prefixes, "best_prec1"}.
    checkpoint = {
        "epoch": 90,
        "arch": "resnet18",
        "best_prec1": 54.7,
        "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()},
    }
    torch.save(checkpoint, tmp_path / "models" / "resnet18_places365.pth.tar")
    loaded = load_model("places365:resnet18")
    assert equal_state(loaded.module, reference)
    assert loaded.name == "resnet18 (places365)"


def test_places365_densenet_keys_renamed() -> None:
    old = {
        "features.denseblock1.denselayer1.norm.1.weight": 1,
        "features.denseblock1.denselayer1.conv.2.weight": 2,
        "features.norm5.weight": 3,
        "classifier.weight": 4,
    }
    assert list(_rename_densenet(old)) == [
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock1.denselayer1.conv2.weight",
        "features.norm5.weight",
        "classifier.weight",
    ]


def test_wideresnet18_drops_the_stem_pool() -> None:
    # CSAIL's wideresnet18 is ResNet-18 without the stem max-pool: layer4 is /16 of the input, not /32.
    from unitscope.models.places365 import wideresnet18

    shapes = dict(layer_shapes(wideresnet18(), image_size=(64, 64)))
    assert shapes["layer4"] == (512, 4, 4) and shapes["layer1"] == (64, 32, 32) and shapes["fc"] == (365,)


# --- real weights -------------------------------------------------------------------------------------


def _center_crop(path: Path) -> torch.Tensor:
    """Resize the short side to 256 (bilinear), centre-crop 224: uint8 (1, 3, 224, 224)."""
    image = Image.open(path).convert("RGB")
    scale = 256 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    array = np.array(image.crop((left, top, left + 224, top + 224)))
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def test_efficientnet_lite0_imagenet_classifies_real_photos() -> None:
    # Expected classes from sanity-images/SOURCE.md and efficientnet-lite0-imagenet/SOURCE.md.
    model = load_model("efficientnet-lite0@imagenet").module
    to_input = normalizer("imagenet")
    expected = {
        "cat.jpg": {281, 282, 285},
        "spider.png": {72, 73, 74},
        "snake.png": {56, 60, 65},
        "cat_dog.png": {242, 243},
    }
    with torch.inference_mode():
        for name, classes in expected.items():
            probabilities = model(to_input(_center_crop(real_data(f"sanity-images/{name}")))).softmax(1)[0]
            assert int(probabilities.argmax()) in classes, name
            if name == "spider.png":  # published: 73 barn spider (0.67)
                assert int(probabilities.argmax()) == 73
                assert float(probabilities[73]) == pytest.approx(0.67, abs=0.01)


def test_efficientnet_lite0_untrained_is_seeded() -> None:
    a, b = load_model("efficientnet-lite0").module, load_model("efficientnet-lite0").module
    assert equal_state(a, b)
    assert not equal_state(a, load_model("efficientnet-lite0@imagenet").module)


# --- layers ---------------------------------------------------------------------------------------------


def tiny_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1),  # 10x12 -> 5x6
        nn.ReLU(),
        nn.Sequential(nn.MaxPool2d(2), nn.Flatten()),  # 5x6 -> 2x3 -> 24
        nn.Linear(24, 5),
    )


def test_layer_shapes_of_a_tiny_model() -> None:
    assert layer_shapes(tiny_model(), image_size=(10, 12)) == [
        ("0", (4, 5, 6)),
        ("1", (4, 5, 6)),
        ("2", (24,)),
        ("2.0", (4, 2, 3)),
        ("2.1", (24,)),
        ("3", (5,)),
    ]


def test_resolve_layers() -> None:
    model = load_model("probecnn").module
    assert resolve_layers(model, ["conv4", "conv1.0"]) == [model.conv4, model.conv1[0]]
    with pytest.raises(LayerError, match=r"no layer .conv5.\. Did you mean conv4, conv3, conv2, conv1"):
        resolve_layers(model, ["conv5"])
    with pytest.raises(LayerError, match="no layer ''"):
        resolve_layers(model, [""])


# --- normalisation --------------------------------------------------------------------------------------


def test_normalizers_against_hand_computed_values() -> None:
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    # imagenet: (x/255 - mean) / std with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)
    imagenet = [(0 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.225]
    # caffe (NetDissect-Lite): (x - (124.6901, 118.6897, 109.5388)) / (255 * 0.224)
    caffe = [-124.6901 / 57.12, (128 - 118.6897) / 57.12, (255 - 109.5388) / 57.12]
    for kind, values in (("imagenet", imagenet), ("caffe", caffe), ("none", [0.0, 128 / 255, 1.0])):
        out = normalizer(kind)(images)
        assert out.dtype == torch.float32
        assert out.flatten().tolist() == pytest.approx(values, abs=1e-6), kind
    assert caffe[0] == pytest.approx(-2.182950, abs=1e-6)  # one value written out in full


def test_normalizer_errors() -> None:
    with pytest.raises(ValueError, match="unknown normalisation 'bgr'"):
        normalizer("bgr")
    with pytest.raises(ValueError, match="expected uint8 images"):
        normalizer("imagenet")(torch.zeros(1, 3, 2, 2))


def test_python_models_initialised_at_random_are_the_same_every_time(tmp_path, monkeypatch) -> None:
    """A callable that builds random weights gives the same weights in every process (the workflow's
    extract and dissect jobs, a resumed run), and the global RNG is left as it was."""
    (tmp_path / "random_net.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Conv2d(3, 4, 3)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = load_model("python:random_net:build").module.weight.detach().clone()
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(456)
    assert torch.equal(load_model("python:random_net:build").module.weight, first)


def test_layers_know_their_last_operation(capsys) -> None:
    """Post-activation layers (a privileged basis) are told apart from linear ones (spec §3)."""
    from unitscope.models.layers import layer_info, warn_linear_layers

    probe = {info.name: info for info in layer_info(load_model("probecnn").module, (64, 64))}
    assert (probe["conv4"].last_operation, probe["conv4"].nonlinear) == ("ReLU", True)  # conv, BN, ReLU block
    assert (probe["conv4.0"].last_operation, probe["conv4.0"].nonlinear) == ("Conv2d", False)
    assert (probe["pool3"].last_operation, probe["pool3"].nonlinear) == ("MaxPool2d", True)  # per channel
    effnet = {info.name: info for info in layer_info(load_model("efficientnet-lite0").module, (64, 64))}
    # A block's output is its projection's batch norm (plus the residual): a linear bottleneck.
    assert (effnet["_blocks.10"].last_operation, effnet["_blocks.10"].nonlinear) == ("BatchNorm2d", False)
    assert (effnet["_blocks.10._swish:1"].last_operation, effnet["_blocks.10._swish:1"].nonlinear) == ("ReLU6", True)
    # A subclass of nn.Conv2d is the operation itself, not the padding module it calls first.
    assert effnet["_conv_head"].last_operation == "Conv2dStaticSamePadding" and not effnet["_conv_head"].nonlinear
    capsys.readouterr()
    linear = warn_linear_layers(load_model("efficientnet-lite0").module, ["_blocks.4", "_blocks.4._swish:1"], (64, 64))
    assert linear == ["_blocks.4"]
    err = capsys.readouterr().err
    assert "layer _blocks.4 ends in BatchNorm2d, a linear operation" in err and "_swish:1" not in err


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_torchvision_imagenet_weights_rescale_inputs_as_torchvision_does(name: str, monkeypatch) -> None:
    """torchvision builds Inception v3 and GoogLeNet with transform_input=True when it loads their ImageNet weights;
    the registry loads weights into an untrained build, so it must switch it on too (weights faked: offline)."""
    import torchvision
    from torchvision.models._api import WeightsEnum

    reference = torchvision.models.get_model(name, weights=None, init_weights=False)
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, **kwargs: {
        k: v for k, v in reference.state_dict().items()})
    from unitscope.models import load_model

    assert load_model(f"torchvision:{name}").module.transform_input is False
    trained = load_model(f"torchvision:{name}@imagenet").module
    assert trained.transform_input is True
