"""Network inversion (Mahendran & Vedaldi, "Understanding Deep Image Representations by Inverting Them", CVPR
2015): the image whose representation at a layer is closest to a given image's, under natural-image priors. What
it still shows is what the layer keeps of the image.

The objective and its optimiser are those of the authors' code (deep-goggle ``invert_nn.m`` with the settings of
``experiment_cnn.m``), on the image as their Caffe networks take it (0–255 values minus the mean pixel; the model's own normalisation
follows):
E(x) = ‖Φ(x) − Φ₀‖² / ‖Φ₀‖² + (λ_TV/2 · TV_β(x) + λ_α/2 · Σ x^α) / B², with α = 6, λ_α = 8·10⁻¹⁰, β = 2, λ_TV
1, 10 or 100 for a layer in the first, second or last third of the network; B the average norm of natural images
(here the photographs that install with scikit-image and scikit-learn); x starts as Gaussian noise scaled to norm
B and follows gradient descent on B²·E with momentum 0.9, the learning rate 0.004 dropped ×0.1 after a quarter of
the steps and again after three quarters (100, 200, 100 of 400), the momentum reset at each drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from unitscope.hooks import LayerRef, Trace, resolve_layers, run_once
from unitscope.models.normalize import IMAGENET_MEAN, float_normalizer
from unitscope.settings import InversionSettings

#: λ_TV of a layer in the first, second and last third of the network (by the order its modules run).
TV_WEIGHTS = (1.0, 10.0, 100.0)
#: The centre of the priors: natural images' mean pixel on the 0–255 scale (ImageNet's; Caffe's is within 6 of it).
MEAN_PIXEL = tuple(255 * m for m in IMAGENET_MEAN)


@dataclass
class Inverted:
    """Reconstructions (N, 3, H, W) on [0, 1], each one's relative feature error ‖Φ(x) − Φ₀‖² / ‖Φ₀‖² (N,), the
    fraction of the authors' learning rate it was reached with (N,: 1, or less after a divergence) and its
    :data:`STATUSES` entry."""

    images: torch.Tensor
    error: torch.Tensor
    lr_scale: torch.Tensor
    status: list[str]


def total_variation(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Σ over pixels and channels of ((x[i, j+1] − x[i, j])² + (x[i+1, j] − x[i, j])²)^(β/2) per image (N,), the
    differences past the last row and column taken as 0 (``invert_nn.m``'s ``tv``)."""
    right = torch.nn.functional.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    down = torch.nn.functional.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    squared = right.square() + down.square()
    return (squared if beta == 2 else squared.pow(beta / 2)).flatten(1).sum(1)


def layer_depths(model: nn.Module, layers: Sequence[str], example: torch.Tensor) -> dict[str, float]:
    """Each layer's depth in (0, 1]: where its module call (``name:k``: the k-th; a container: its last leaf call)
    falls among all module calls of a forward pass on ``example``."""
    leaves = {module: name for name, module in model.named_modules() if name and not list(module.children())}
    order: list[nn.Module] = []
    run_once(model, example, forward=[(module, lambda m, i, o: order.append(m)) for module in leaves])
    depths = {}
    for layer, target in zip(layers, resolve_layers(model, layers), strict=True):
        call = LayerRef.parse(layer).call
        inside = {module for module in target.modules() if module in leaves} or {target}
        positions = [i for i, module in enumerate(order) if module in inside]
        if call is not None and target in leaves and call < len(positions):
            positions = [positions[call]]
        depths[layer] = (positions[-1] + 1) / len(order) if positions else 1.0
    return depths


def tv_weight(depth: float) -> float:
    """λ_TV of a layer at ``depth`` (:func:`layer_depths`): 1, 10 or 100 in the first, second or last third."""
    return TV_WEIGHTS[min(int(depth * 3 - 1e-9), 2)]


def natural_image_norm(images: torch.Tensor) -> float:
    """B: the mean norm of natural images (N, 3, H, W) on [0, 1], on the 0–255 scale minus :data:`MEAN_PIXEL`."""
    mean = torch.tensor(MEAN_PIXEL).view(1, 3, 1, 1)
    return float((images * 255 - mean).flatten(1).norm(dim=1).mean())


def _schedule(settings: InversionSettings) -> list[float]:
    first, second = round(settings.steps / 4), round(settings.steps * 3 / 4)
    return [settings.lr * (1.0 if t < first else 0.1 if t < second else 0.01) for t in range(settings.steps)]


#: How often an image whose objective diverged (a non-finite value) is restarted with half the learning rate.
RESTARTS = 6
#: ``converged``; ``diverged`` at every rate tried (the image is left grey); ``zero``: the layer's representation of
#: the image is all zero, so the relative error is undefined and nothing is optimised (the image is left grey).
STATUSES = ("converged", "diverged", "zero")


def invert(model: nn.Module, layer: str, images: torch.Tensor, normalize: str, settings: InversionSettings,
           norm: float, seeds: Sequence[int], lambda_tv: float) -> Inverted:
    """Reconstruct each of ``images`` (N, 3, H, W) on [0, 1] from its representation at ``layer``; image ``i``
    starts from noise drawn from ``seeds[i]``. ``norm`` is B; every image is optimised independently. The
    authors' step size is tuned to AlexNet: where it diverges on another network (the objective turns
    non-finite), that image starts again with half the learning rate, up to :data:`RESTARTS` times
    (``Inverted.lr_scale`` records the rate each image ended with)."""
    mean = torch.tensor(MEAN_PIXEL, device=images.device).view(1, 3, 1, 1)
    to_input = float_normalizer(normalize)
    model_input = lambda x: to_input((x + mean) / 255.0)  # noqa: E731
    with Trace(model, [layer], grad=True, stop=True) as trace:
        with torch.no_grad():
            target = trace(model_input(images * 255 - mean))[layer].detach().clone()
        noise = torch.stack([torch.randn(images.shape[1:], generator=torch.Generator().manual_seed(s))
                             for s in seeds]).to(images.device)
        start = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * norm
        result = torch.zeros_like(start)  # the mean pixel: grey where nothing converges
        error = torch.full((len(images),), float("nan"), device=images.device)
        scale = torch.ones(len(images), device=images.device)
        zero = target.flatten(1).abs().amax(1) == 0
        todo = torch.nonzero(~zero).flatten()
        for restart in range(RESTARTS + 1):
            if not len(todo):
                break
            x, final = _descend(lambda x: trace(model_input(x))[layer], target[todo], start[todo], settings, norm,
                                lambda_tv, 0.5**restart)
            finite = torch.isfinite(final)
            result[todo[finite]], error[todo[finite]] = x[finite], final[finite]
            scale[todo] = 0.5**restart
            todo = todo[~finite]
    status = ["zero" if z else "converged" if torch.isfinite(e) else "diverged" for z, e in zip(zero, error)]
    return Inverted(((result + mean) / 255.0).clamp(0, 1), error, scale, status)


def _descend(features, target: torch.Tensor, start: torch.Tensor, settings: InversionSettings, norm: float,
             lambda_tv: float, lr_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient descent with momentum on B² · E from ``start``; the final images and relative feature errors."""
    target_norm = target.flatten(1).square().sum(1)
    x = start.clone().requires_grad_(True)
    momentum, previous = torch.zeros_like(x), None
    for lr in _schedule(settings):
        lr *= lr_scale
        if lr != previous:
            momentum.zero_()  # as the authors: a sudden change of rate would overshoot with the old momentum
            previous = lr
        error = (features(x) - target).flatten(1).square().sum(1) / target_norm
        prior = (lambda_tv / 2 * total_variation(x, settings.tv_beta)
                 + settings.lambda_alpha / 2 * x.abs().pow(settings.alpha).flatten(1).sum(1)) / norm**2
        (gradient,) = torch.autograd.grad((norm**2 * (error + prior)).sum(), x)
        with torch.no_grad():
            momentum.mul_(settings.momentum).sub_(lr * gradient)
            x.add_(momentum)
    with torch.no_grad():
        final = (features(x) - target).flatten(1).square().sum(1) / target_norm
        final[~torch.isfinite(x).flatten(1).all(1)] = float("nan")
    return x.detach(), final


def ssim(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """Structural similarity of two RGB images (H, W, 3) uint8 (scikit-image, ``data_range=255``)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(original, reconstruction, channel_axis=2, data_range=255))
