"""The saliency methods on captum against hand-computed attributions of tiny models (captum's test style)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unitscope.hooks import LayerError
from unitscope.saliency.maps import diverging, grayscale
from unitscope.saliency.methods import Explainer, seed_of
from unitscope.saliency.rectifiers import RectifierError
from unitscope.settings import SALIENCY_METHODS, SaliencySettings

GRADIENT_METHODS = ("gradient", "gradient-input", "integrated-gradients", "smoothgrad")


class Linear(nn.Module):
    """logits = W · flatten(x) + b over 2×3×3 inputs and 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(18, 4)
        generator = torch.Generator().manual_seed(1)
        self.fc.weight.data = torch.randn(4, 18, generator=generator)
        self.fc.bias.data = torch.randn(4, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def settings(*methods: str, **changes) -> SaliencySettings:
    return SaliencySettings(methods=methods, **changes)


def test_gradient_methods_of_a_linear_model_are_its_weights() -> None:
    """∂logit_c/∂x = W_c; x ⊙ W_c; IG from x₀ is (x − x₀) ⊙ W_c exactly with zero completeness error; SmoothGrad
    of a constant gradient is that gradient."""
    model = Linear()
    x = torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(2))
    baseline = torch.full((1, 2, 3, 3), -0.5)
    targets = torch.tensor([0, 3, 1])
    explanation = Explainer(model, baseline, settings=settings(*GRADIENT_METHODS, smoothgrad_samples=5)).explain(
        x, targets)
    weights = model.fc.weight.data[targets].reshape(3, 2, 3, 3)
    torch.testing.assert_close(explanation.maps["gradient"], weights)
    torch.testing.assert_close(explanation.maps["gradient-input"], x * weights)
    torch.testing.assert_close(explanation.maps["integrated-gradients"], (x - baseline) * weights)
    torch.testing.assert_close(explanation.maps["smoothgrad"], weights)
    logits = model(x).gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(explanation.difference, logits - model(baseline)[0, targets])
    assert explanation.completeness.abs().max() < 1e-4


class Cubic(nn.Module):
    """f(x) = Σ x³ / 3, whose gradient is x²: SmoothGrad's mean gradient is x² + σ² in expectation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x**3).flatten(1).sum(1, keepdim=True) / 3


def test_smoothgrad_noise_is_a_fraction_of_each_image_range() -> None:
    x = torch.stack([torch.linspace(-1.0, 1.0, 3 * 64 * 64).reshape(3, 64, 64),
                     torch.linspace(0.0, 4.0, 3 * 64 * 64).reshape(3, 64, 64)])
    explainer = Explainer(Cubic(), torch.zeros(1, 3, 64, 64), settings=settings("smoothgrad"))
    smooth = explainer.explain(x, torch.zeros(2, dtype=torch.long)).maps["smoothgrad"]
    variance = (smooth - x**2).mean(dim=(1, 2, 3))
    expected = torch.tensor([(0.15 * 2.0) ** 2, (0.15 * 4.0) ** 2])  # σ = 0.15 · (max − min), per image
    torch.testing.assert_close(variance, expected, rtol=0.02, atol=0)


def test_smoothgrad_noise_is_seeded_per_image_whatever_the_batches() -> None:
    model = Cubic()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    explainer = Explainer(model, torch.zeros(1, 3, 8, 8), settings=settings("smoothgrad", smoothgrad_samples=4))
    together = explainer.explain(x, torch.zeros(3, dtype=torch.long)).maps["smoothgrad"]
    last = explainer.explain(x[2:], torch.zeros(1, dtype=torch.long), first_index=2).maps["smoothgrad"]
    torch.testing.assert_close(together[2:], last, rtol=0, atol=0)
    for batch_size in (1, 3):  # the noisy copies of an image go through the model 1 or 3 at a time: the same noise
        other = Explainer(model, torch.zeros(1, 3, 8, 8), settings=settings("smoothgrad", "smoothgrad-ig",
                                                                           smoothgrad_samples=4, ig_steps=4,
                                                                           batch_size=batch_size))
        maps = other.explain(x, torch.zeros(3, dtype=torch.long)).maps
        torch.testing.assert_close(maps["smoothgrad"], together, rtol=1e-6, atol=1e-7)
        if batch_size == 1:
            reference = maps["smoothgrad-ig"]
    torch.testing.assert_close(maps["smoothgrad-ig"], reference, rtol=1e-6, atol=1e-7)
    assert len({seed_of(0, "smoothgrad", 1), seed_of(1, "smoothgrad", 0), seed_of(0, "block", 1)}) == 3


class OneConvGAP(nn.Module):
    """conv (2 → 3 channels, 3×3) → ReLU → global average → linear: Grad-CAM by hand is ReLU(Σ_k w_ck/(hw) A_k)."""

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(4)
        self.conv = nn.Conv2d(channels, 3, 3, padding=1)
        self.conv.weight.data = torch.randn(3, channels, 3, 3, generator=generator)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(3, 2)
        self.fc.weight.data = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def test_grad_cam_of_a_one_conv_gap_net_matches_the_hand_computed_map() -> None:
    model = OneConvGAP()
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(5))
    targets = torch.tensor([0, 1])
    maps = Explainer(model, torch.zeros(1, 2, 4, 4), "act", settings("grad-cam", "guided-backprop",
                                                                     "guided-grad-cam")).explain(x, targets).maps
    activations = F.relu(model.conv(x))
    alpha = model.fc.weight.data[targets] / 16  # ∂y_c/∂A_k(i, j) = w_ck / (h w), the same at every position
    cam = F.relu((alpha[:, :, None, None] * activations).sum(1, keepdim=True))
    torch.testing.assert_close(maps["grad-cam"], cam)  # upsampling 4×4 to 4×4 is the identity
    torch.testing.assert_close(maps["guided-grad-cam"], maps["guided-backprop"] * cam)
    assert maps["grad-cam"].shape == (2, 1, 4, 4)


def test_grad_cam_upsamples_bilinearly_at_a_strided_layer() -> None:
    model = OneConvGAP()
    model.conv.stride = (2, 2)
    x = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(6))
    cam = Explainer(model, torch.zeros(1, 2, 8, 8), "act", settings("grad-cam")).explain(x, torch.tensor([0]))
    activations = F.relu(model.conv(x))
    small = F.relu((model.fc.weight.data[0, :, None, None] / 16 * activations).sum(1, keepdim=True))
    torch.testing.assert_close(cam.maps["grad-cam"], F.interpolate(small, size=(8, 8), mode="bilinear"))


class CalledTwice(nn.Module):
    """One ReLU module called after each of two convolutions: Grad-CAM at ``act:0`` and ``act:1`` differ."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(7)
        self.conv1, self.conv2 = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        for conv in (self.conv1, self.conv2):
            conv.weight.data = torch.randn(conv.weight.shape, generator=generator)
        self.act = nn.ReLU()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv2(self.act(self.conv1(x)))).mean(dim=(2, 3)))


def test_grad_cam_takes_the_named_call_of_a_module_called_twice() -> None:
    model = CalledTwice()
    x = torch.randn(1, 1, 5, 5, generator=torch.Generator().manual_seed(8))
    target = torch.tensor([1])
    cams = {call: Explainer(model, torch.zeros(1, 1, 5, 5), f"act:{call}", settings("grad-cam")).explain(
        x, target).maps["grad-cam"] for call in (0, 1)}
    first = F.relu(model.conv1(x)).requires_grad_(True)
    second = F.relu(model.conv2(first))
    logit = model.fc(second.mean(dim=(2, 3)))[0, 1]
    grad_first, grad_second = torch.autograd.grad(logit, [first, second])
    for call, (acts, grads) in {0: (first, grad_first), 1: (second, grad_second)}.items():
        expected = F.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1, keepdim=True))
        torch.testing.assert_close(cams[call], expected.detach())
    assert not torch.allclose(cams[0], cams[1])
    with pytest.raises(LayerError, match="called more than once"):
        Explainer(model, torch.zeros(1, 1, 5, 5), "act", settings("grad-cam")).explain(x, target)


class FunctionalConv(OneConvGAP):
    """The one-conv net on RGB images rectifying with ``F.relu``, which no module hook reaches."""

    def __init__(self) -> None:
        super().__init__(channels=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean(dim=(2, 3)))


def test_guided_and_deconv_maps_differ_from_the_gradient_and_functional_relus_are_refused() -> None:
    model = OneConvGAP()
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(9))
    maps = Explainer(model, torch.zeros(1, 2, 4, 4), settings=settings("gradient", "guided-backprop", "deconvnet")
                     ).explain(x, torch.tensor([0])).maps
    assert not torch.allclose(maps["gradient"], maps["guided-backprop"])
    assert not torch.allclose(maps["guided-backprop"], maps["deconvnet"])
    functional, rgb = FunctionalConv(), torch.randn(1, 3, 4, 4)
    for method in ("guided-backprop", "deconvnet", "guided-grad-cam"):
        explainer = Explainer(functional, torch.zeros(1, 3, 4, 4), "conv", settings(method))
        with pytest.raises(RectifierError, match="rectifies with functions"):
            explainer.explain(rgb, torch.tensor([0]))
    plain = Explainer(functional, torch.zeros(1, 3, 4, 4), settings=settings("gradient")).explain(rgb, torch.tensor([0]))
    assert plain.maps["gradient"].shape == rgb.shape  # methods without the rule still explain it


def test_grad_cam_needs_a_convolutional_layer() -> None:
    with pytest.raises(LayerError, match="need a convolutional layer: give --layer"):
        Explainer(OneConvGAP(), torch.zeros(1, 2, 4, 4), settings=settings("grad-cam"))
    explainer = Explainer(OneConvGAP(), torch.zeros(1, 2, 4, 4), "fc", settings("grad-cam"))
    with pytest.raises(LayerError, match=r"layer 'fc' gives outputs of shape \(1, 2\).*Grad-CAM cannot use it"):
        explainer.explain(torch.zeros(1, 2, 4, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="unknown saliency method 'lime'"):
        Explainer(OneConvGAP(), torch.zeros(1, 2, 4, 4), settings=settings("lime"))


def test_integrated_gradients_of_a_cubic_and_the_reported_completeness_error() -> None:
    """IG of Σ x³/3 from 0 is x³/3 exactly (50-point Gauss–Legendre integrates x² exactly); on a ReLU network the
    reported error is Σ IG − (F(x) − F(x₀))."""
    from unitscope.models.probecnn import ProbeCNN

    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(10))
    cubic = Explainer(Cubic(), torch.zeros(1, 3, 8, 8), settings=settings("integrated-gradients")).explain(
        x, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(cubic.maps["integrated-gradients"], x**3 / 3)
    assert cubic.completeness.abs().max() < 1e-4
    torch.manual_seed(0)
    model = ProbeCNN(num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(10))
    explanation = Explainer(model, torch.full((1, 3, 64, 64), -2.0), settings=settings("integrated-gradients")).explain(
        x, torch.tensor([0, 2]))
    sums = explanation.maps["integrated-gradients"].sum(dim=(1, 2, 3))
    torch.testing.assert_close(sums - explanation.difference, explanation.completeness, atol=1e-6, rtol=1e-3)


def test_every_method_runs_on_efficientnet_lite0_at_its_head() -> None:
    from unitscope.models import load_model

    model = load_model("efficientnet-lite0@imagenet").module
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(11))
    explainer = Explainer(model, torch.zeros(1, 3, 64, 64), "_swish:1",
                          settings(*SALIENCY_METHODS, smoothgrad_samples=2, ig_steps=3))
    maps = explainer.explain(x, explainer.predict(x)).maps
    assert list(maps) == list(SALIENCY_METHODS)
    assert all(m.shape == ((1, 1, 64, 64) if name == "grad-cam" else x.shape) for name, m in maps.items())
    assert not torch.allclose(maps["gradient"], maps["guided-backprop"])


def test_grayscale_and_diverging_post_processing() -> None:
    raw = np.zeros((3, 10, 10))
    raw[0] = np.arange(100).reshape(10, 10)
    raw[1] = -np.arange(100).reshape(10, 10)  # Σ|·| = 2 · index, signed Σ = 0
    gray = grayscale(raw)
    p99 = np.percentile(2 * np.arange(100), 99)
    np.testing.assert_allclose(gray.ravel(), np.clip(2 * np.arange(100) / p99, 0, 1), rtol=1e-6)
    assert gray.max() == 1.0 and gray.min() == 0.0
    assert not diverging(raw).any()  # the channels cancel
    signed = np.linspace(-3, 1, 100).reshape(1, 10, 10)
    span = np.percentile(np.abs(signed), 99)
    np.testing.assert_allclose(diverging(signed), np.clip(signed[0] / span, -1, 1), rtol=1e-6)
    assert not grayscale(np.full((3, 4, 4), 2.0)).any()
    sparse = np.zeros((1, 10, 10))
    sparse[0, 0, 0] = 5.0  # 99 % of the map at its minimum: scaled by the maximum
    assert grayscale(sparse)[0, 0] == 1.0 and grayscale(sparse).sum() == 1.0
