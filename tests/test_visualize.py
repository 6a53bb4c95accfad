"""Activation maximisation (unitscope.visualize) on tiny hand-built models whose optimum is known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from unitscope.hooks import LayerError
from unitscope.saliency.images import load_images
from unitscope.settings import InversionSettings, VisualizeSettings
from unitscope.visualize.inversion import (
    MEAN_PIXEL,
    _schedule,
    invert,
    layer_depths,
    natural_image_norm,
    total_variation,
    tv_weight,
)
from unitscope.visualize.maximize import diversity, gaussian_blur, maximize
from unitscope.visualize.objectives import Objective, check, values
from unitscope.saliency.rectifiers import RectifierError
from unitscope.visualize.parameterization import (
    COLOR_CORRELATION_SVD_SQRT,
    FourierImage,
    fft_frequencies,
    spectrum_scale,
)
from unitscope.visualize.projections import PROJECTIONS, project, support_box
from unitscope.visualize.transforms import PAD, PAD_VALUE, affine, draw, transform

FAST = VisualizeSettings(size=16, input_size=None, steps=512, pixel_steps=200)


class ColorUnit(nn.Module):
    """One 1×1 convolution: unit 0 = red − green − blue (a red detector), unit 1 = blue − red − green."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, -1, -1], [-1, -1, 1]]).view(2, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FilterUnit(nn.Module):
    """One 7×7 linear filter with no nonlinearity (a vertical edge, bright on the left and dark on the right,
    smooth enough to survive Yosinski et al.'s blur): its centre neuron is the dot product with the filter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 7, bias=False)
        ramp = torch.cos(torch.arange(7) * torch.pi / 6).expand(7, 7)  # 1 at the left edge, −1 at the right
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([ramp, ramp, ramp])[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_fft_frequencies_and_scaling_are_lucids():
    for h, w in ((8, 8), (6, 7), (5, 4)):
        freqs = fft_frequencies(h, w)
        assert freqs.shape == (h, w // 2 + (2 if w % 2 else 1))
        fy, fx = np.fft.fftfreq(h), np.fft.fftfreq(w)
        for i in range(h):
            for j in range(freqs.shape[1]):
                assert freqs[i, j] == pytest.approx(np.hypot(fy[i], fx[j]))
    scale = spectrum_scale(8, 8)
    assert scale[0, 0] == 8  # the DC term: 1 / (1 / max(h, w))
    assert scale[0, 1] == pytest.approx(8)  # f = 1/8 is the floor itself
    assert scale[0, 2] == pytest.approx(4)  # f = 2/8
    assert scale[1, 1] == pytest.approx(1 / np.hypot(1 / 8, 1 / 8))


def test_fourier_image_of_a_constant_spectrum():
    image = FourierImage(8, seeds=[0], decorrelate=False)
    with torch.no_grad():
        image.spectrum.zero_()
        image.spectrum[0, :, 0, 0, 0] = torch.tensor([1.0, 0.0, -2.0])
    # DC a · scale 8, inverse orthonormal FFT: a · 8 / sqrt(64) = a everywhere; ÷ 4; sigmoid
    expected = torch.sigmoid(torch.tensor([1.0, 0.0, -2.0]) / 4)
    assert torch.allclose(image()[0], expected.view(3, 1, 1).expand(3, 8, 8), atol=1e-6)


def test_decorrelated_colour_is_lucids():
    image = FourierImage(8, seeds=[0, 1])
    plain = FourierImage(8, seeds=[0, 1], decorrelate=False)
    raw = torch.logit(plain().detach()).permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    # lucid/optvis/param/color.py: t_flat @ (svd_sqrt / max column norm).T, per pixel
    svd_sqrt = COLOR_CORRELATION_SVD_SQRT.astype(np.float64)
    expected = raw @ (svd_sqrt / np.linalg.norm(svd_sqrt, axis=0).max()).T
    got = torch.logit(image().detach().double()).permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    assert np.allclose(got, expected, atol=1e-5)


def test_fourier_images_are_seeded_per_image():
    a, b = FourierImage(16, seeds=[3, 4]), FourierImage(16, seeds=[4])
    assert torch.equal(a.spectrum[1], b.spectrum[0])
    assert not torch.equal(a.spectrum[0], a.spectrum[1])
    assert float(a.spectrum.detach().std()) == pytest.approx(0.01, rel=0.1)


def test_transforms_keep_sizes_are_seeded_and_compose_exactly():
    images = 0.25 + 0.5 * torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    out = transform(images, [np.random.default_rng(1), np.random.default_rng(2)])
    assert out.shape == (2, 3, 20 + 2 * PAD, 20 + 2 * PAD)
    assert float(out.min()) >= float(images.min()) - 1e-5  # nothing black comes in from outside the canvas
    again = transform(images, [np.random.default_rng(1), np.random.default_rng(2)])
    assert torch.equal(out, again)
    assert not torch.equal(out, transform(images, [np.random.default_rng(5), np.random.default_rng(2)]))
    padded = torch.nn.functional.pad(images, [PAD] * 4, value=PAD_VALUE)
    side = padded.shape[-1]
    grid = lambda params: torch.nn.functional.affine_grid(  # noqa: E731
        affine(params, side)[None].expand(2, 2, 3), list(padded.shape), align_corners=False)
    sample = lambda params: torch.nn.functional.grid_sample(  # noqa: E731
        padded, grid(params), padding_mode="border", align_corners=False)
    # transform() samples the unpadded image: the same as sampling the grey-padded canvas, grey beyond it
    for i, seed in enumerate((1, 2)):
        assert torch.allclose(out[i], sample(draw(np.random.default_rng(seed)))[i], atol=1e-5)
    assert torch.allclose(sample((0, 0, 1.0, 0.0, 0, 0)), padded, atol=1e-5)
    shifted = sample((3, 2, 1.0, 0.0, 1, 0))  # content moves right by 3 + 1 and down by 2
    assert torch.allclose(shifted[..., 2:, 4:], padded[..., :-2, :-4], atol=1e-5)
    # the uncovered band repeats the grey border (the grid_sample border mode samples the edge)
    assert torch.allclose(shifted[..., :2, :], torch.full_like(shifted[..., :2, :], PAD_VALUE), atol=1e-5)
    draws = [draw(np.random.default_rng(seed)) for seed in range(200)]
    assert {d[0] for d in draws} == set(range(-4, 4)) and {d[4] for d in draws} == set(range(-2, 2))  # centred
    turned = sample((0, 0, 1.0, 90.0, 0, 0))
    assert torch.allclose(turned, torch.rot90(padded, 1, dims=(2, 3)), atol=1e-4)


def test_gaussian_blur_is_scipys():
    images = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for sigma in (0.5, 1.0, 2.0):
        expected = np.stack([[scipy.ndimage.gaussian_filter(c, sigma, mode="reflect") for c in image]
                             for image in images.numpy()])
        assert np.allclose(gaussian_blur(images, sigma).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("method", ["lucid", "pixel"])
def test_a_colour_unit_gets_an_image_of_its_colour(method):
    settings = dataclasses.replace(FAST, methods=(method,))
    result = maximize(ColorUnit(), "conv", [Objective("channel", 0), Objective("channel", 1)], "none", settings,
                      seeds=[0, 1], method=method)
    red, blue = result.images.mean(dim=(2, 3))
    assert red[0] > 0.6 and red[1] < 0.2 and red[2] < 0.2
    assert blue[2] > 0.6 and blue[0] < 0.2 and blue[1] < 0.2


@pytest.mark.parametrize("method", ["lucid", "pixel"])
def test_a_linear_filter_unit_gets_an_image_correlated_with_its_filter(method):
    model = FilterUnit()
    # Lucid's jitter (up to 11 px) would average a 7×7 random filter away: this checks the parameterisation
    settings = dataclasses.replace(FAST, methods=(method,), size=7, input_size=None, transforms=False)
    result = maximize(model, "conv", [Objective("neuron", 0)], "none", settings, seeds=[0], method=method)
    image = result.images[0]
    weights = model.conv.weight[0].detach()
    correlation = np.corrcoef(image.flatten().numpy(), weights.flatten().numpy())[0, 1]
    assert correlation > 0.7
    assert float(result.objective[0]) == pytest.approx(float((image * weights).sum()), rel=1e-4)


def test_batched_images_equal_one_at_a_time():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU())
    torch.manual_seed(0)
    for module in model:
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight)
    settings = dataclasses.replace(FAST, steps=20)
    objectives = [Objective("channel", 1), Objective("neuron", 3), Objective("channel", 4)]
    batched = maximize(model, "3", objectives, "none", settings, seeds=[7, 8, 9])
    for i, objective in enumerate(objectives):
        alone = maximize(model, "3", [objective], "none", settings, seeds=[7 + i])
        assert torch.allclose(batched.images[i], alone.images[0], atol=1e-5)
    again = maximize(model, "3", objectives, "none", settings, seeds=[7, 8, 9])
    assert torch.equal(batched.images, again.images)
    assert all(parameter.grad is None for parameter in model.parameters())  # the model is left as it was


def test_diversity_of_identical_and_orthogonal_copies():
    same = torch.ones(2, 3, 4, 4)
    assert float(diversity(same, [[0, 1]])) == pytest.approx(1.0)
    apart = torch.zeros(2, 2, 1, 1)
    apart[0, 0], apart[1, 1] = 1, 1
    assert float(diversity(apart, [[0, 1]])) == 0.0
    assert float(diversity(same, [[0], [1]])) == 0.0


def test_objective_values_by_hand():
    output = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    found = values([Objective("channel", 1), Objective("direction", vector=(1.0, 0.0, -1.0))], output)
    assert found[0] == output[0, 1].mean()
    assert found[1] == (output[1, 0] - output[1, 2]).mean()
    found = values([Objective("neuron", 2), Objective("neuron", 0, position=(0, 1))], output)
    assert found[0] == output[0, 2, 1, 1] and found[1] == output[1, 0, 0, 1]
    assert values([Objective("logit", 2)], torch.tensor([[0.0, 1.0, 5.0]]))[0] == 5.0


def test_bad_objectives_and_settings_get_one_line_errors():
    with pytest.raises(LayerError, match="no spatial maps.*channel objective"):
        check([Objective("neuron", 0)], (10,), "fc")
    with pytest.raises(LayerError, match="index 12 is out of range; 'conv' has 4 units"):
        check([Objective("channel", 12)], (4, 3, 3), "conv")
    with pytest.raises(LayerError, match="direction of length 2"):
        check([Objective("direction", vector=(1.0, 2.0))], (4, 3, 3), "conv")
    with pytest.raises(ValueError, match="--steps must be at least 1, got 0"):
        VisualizeSettings(steps=0).validate()
    with pytest.raises(ValueError, match="--method 'deepdream' is not one of lucid, pixel"):
        VisualizeSettings(methods=("deepdream",)).validate()


# --- DeconvNet and guided projections of real images --------------------------------------------------------


def test_the_deconvnet_projection_of_one_convolution_is_its_transposed_convolution():
    model = nn.Sequential(nn.Conv2d(3, 2, 3, bias=False), nn.ReLU())
    torch.manual_seed(0)
    nn.init.normal_(model[0].weight)
    inputs = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = model(inputs)
    for method in PROJECTIONS:
        projected = project(model, "1", [1, 0], inputs, method)
        for i, unit in enumerate((1, 0)):
            value = output[i, unit].max()
            row, column = divmod(int(output[i, unit].argmax()), output.shape[-1])
            expected = torch.zeros(3, 9, 9)
            expected[:, row:row + 3, column:column + 3] = value * model[0].weight[unit].detach()
            assert torch.allclose(projected.maps[i], expected, atol=1e-5), method
            assert projected.activation[i] == value and projected.position[i].tolist() == [row, column]


def test_projections_differ_by_rule_and_do_not_depend_on_the_batch():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.ReLU6())
    torch.manual_seed(0)
    inputs = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    deconv = project(model, "3", [0, 1, 2], inputs, "deconvnet")
    guided = project(model, "3", [0, 1, 2], inputs, "guided-backprop")
    assert not torch.allclose(deconv.maps, guided.maps)
    alone = project(model, "3", [1], inputs[1:2], "deconvnet")
    assert torch.allclose(alone.maps[0], deconv.maps[1], atol=1e-6)


def test_projections_refuse_functional_rectifiers_and_flat_layers():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            return torch.nn.functional.relu(self.conv(x))

    with pytest.raises(RectifierError, match="no nn.ReLU or nn.ReLU6 module"):
        project(Functional(), "conv", [0], torch.randn(1, 3, 8, 8), "deconvnet")
    flat = nn.Sequential(nn.Flatten(), nn.Linear(12, 2), nn.ReLU())
    with pytest.raises(ValueError, match="needs spatial maps"):
        project(flat, "2", [0], torch.randn(1, 3, 2, 2), "guided-backprop")


def test_support_box_is_a_square_around_the_nonzero_pixels():
    maps = np.zeros((3, 20, 30))
    maps[1, 4:7, 10:18] = 1.0
    assert support_box(maps, (0, 0), 4) == (1, 10, 9, 18)  # 8 × 8 around rows 4–6, columns 10–17
    assert support_box(np.zeros((3, 20, 30)), (19, 29), 6) == (14, 24, 20, 30)  # empty: around, clipped
    assert support_box(maps, (0, 0), 40) == (0, 4, 20, 24)  # never more than the image, centred on the support


# --- network inversion ------------------------------------------------------------------------------------------


def test_inverting_an_invertible_linear_layer_recovers_the_image():
    model = nn.Sequential(nn.Conv2d(3, 3, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.2, 0.1], [0.1, 1.0, 0.3], [0.2, -0.1, 1.0]]).view(3, 3, 1, 1))
    images = torch.from_numpy(np.stack([i.pixels for i in load_images(["builtin:chelsea", "builtin:coffee"], 16)]))
    images = images.permute(0, 3, 1, 2).float() / 255
    settings = InversionSettings(steps=1000, lambda_alpha=0.0)  # the priors off: the exact inverse is the optimum
    result = invert(model, "0", images, "imagenet", settings, natural_image_norm(images), [0, 1], lambda_tv=0.0)
    assert float((result.images - images).abs().max()) < 1e-3 and float(result.error.max()) < 1e-6
    with_priors = invert(model, "0", images, "imagenet", InversionSettings(steps=100), natural_image_norm(images),
                         [0, 1], lambda_tv=1.0)
    assert float(with_priors.error.max()) < 0.2  # the priors pull it away from the exact inverse, not far
    assert with_priors.lr_scale.tolist() == [1.0, 1.0] and with_priors.status == ["converged", "converged"]
    # a step size that diverges: each image restarts with half the rate until it converges
    restarted = invert(model, "0", images, "imagenet", InversionSettings(steps=100, lr=1.0),
                       natural_image_norm(images), [0, 1], lambda_tv=1.0)
    assert (restarted.lr_scale < 1).all() and float(restarted.error.max()) < 0.2
    dead = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())  # all zero on every image: the error is undefined
    with torch.no_grad():
        dead[0].weight.zero_()
        dead[0].bias.fill_(-1.0)
    undefined = invert(dead, "1", images, "imagenet", InversionSettings(steps=4), natural_image_norm(images), [0, 1],
                       lambda_tv=1.0)
    assert undefined.error.isnan().all() and undefined.status == ["zero", "zero"]
    assert torch.allclose(undefined.images, torch.tensor(MEAN_PIXEL).view(1, 3, 1, 1).expand_as(images) / 255)


def test_inversion_priors_schedule_and_depths_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [3.0, 1.0]]]])
    # right differences (1, 0 | −2, 0), down differences (3, 0 | 0, 0): per pixel 1 + 9, 0, 4 + 0, 0
    assert total_variation(x, 2.0).tolist() == [14.0]
    assert total_variation(x, 1.0).tolist() == [pytest.approx(10 ** 0.5 + 2)]
    images = torch.zeros(2, 3, 2, 2)
    mean = torch.tensor(MEAN_PIXEL)
    assert natural_image_norm(images) == pytest.approx(float(mean.square().sum() * 4) ** 0.5)
    schedule = _schedule(InversionSettings())
    assert schedule.count(0.004) == 100 and schedule.count(0.004 * 0.1) == 200 and len(schedule) == 400
    chain = nn.Sequential(*[nn.Conv2d(3, 3, 1) for _ in range(6)])
    depths = layer_depths(chain, ["1", "3", "5"], torch.zeros(1, 3, 4, 4))
    assert depths == {"1": pytest.approx(2 / 6), "3": pytest.approx(4 / 6), "5": 1.0}
    twice = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 1))
    twice.forward = lambda x: twice[1](twice[2](twice[1](twice[0](x))))  # the ReLU runs 2nd and 4th of 4 calls
    assert layer_depths(twice, ["1:0", "1:1"], torch.zeros(1, 3, 4, 4)) == {"1:0": 0.5, "1:1": 1.0}
    assert [tv_weight(d) for d in depths.values()] == [1.0, 10.0, 100.0]
