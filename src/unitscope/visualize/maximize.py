"""Activation maximisation, batched: one forward/backward pass serves a whole batch of objectives (one image
each), every image optimised independently of the others (own seeds, own transformations; Adam is elementwise).

``lucid``: Lucid's recipe (Olah et al. 2017): a Fourier-parameterised image with decorrelated colour and a
sigmoid, Adam (lr 0.05, 512 steps), transformation robustness at every step (:mod:`.transforms`), the canvas
resized to the model's input size as Lucent does for small images. ``pixel``: Yosinski et al. (2015), the
regularisers of their third (most used) setting: plain pixels on the 0–255 scale, L2 decay 1e-4, a Gaussian blur
(σ 1 px) every 4 steps, pixels cropped to 0–255 before each step, 1000 steps of gradient ascent. Its constant
learning rate (100) is tied to CaffeNet's input scale (mean-subtracted 0–255 values, no division), so the step
size comes from their toolbox's ``progress`` policy instead (their settings 1 and 4): lr = min(max_lr, 2 / |g|²),
the step under which the objective would rise by 2 if it were linear.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unitscope.hooks import Trace
from unitscope.models.normalize import float_normalizer, pixel_mean
from unitscope.settings import VISUALIZATION_METHODS, VisualizeSettings
from unitscope.visualize.objectives import Objective, values
from unitscope.visualize.parameterization import FourierImage, PixelImage
from unitscope.visualize.transforms import PAD, PAD_VALUE, transform

#: Scipy's ``gaussian_filter`` default extent: the kernel reaches 4 σ.
BLUR_TRUNCATE = 4.0


@dataclass
class Maximized:
    """A batch's optimised images (B, 3, S, S) on [0, 1] and each one's objective on it (B,), untransformed."""

    images: torch.Tensor
    objective: torch.Tensor


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel of (B, C, H, W) blurred as ``scipy.ndimage.gaussian_filter(sigma, mode="reflect")``: a
    separable kernel to 4 σ, edges mirrored including the edge pixel."""
    radius = int(BLUR_TRUNCATE * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype).to(images.device)
    channels = images.shape[1]
    out = images
    for dim in (2, 3):
        size = out.shape[dim]
        index = torch.arange(-radius, size + radius, device=images.device)
        index = torch.where(index < 0, -index - 1, torch.where(index >= size, 2 * size - index - 1, index))
        padded = out.index_select(dim, index)
        shape = (1, 1, 2 * radius + 1, 1) if dim == 2 else (1, 1, 1, 2 * radius + 1)
        out = F.conv2d(padded, kernel.view(shape).expand(channels, *shape[1:]), groups=channels)
    return out


class Forward:
    """The model from an image on [0, 1] to the objective's layer (or its output for a ``None`` layer), cut
    after that layer; images are resized to ``input_size`` first (bilinear, ``None``: as they are). The first
    call runs once more without gradients, so that every pass that counts stops at the layer (and no in-place
    operation after it changes the retained output)."""

    def __init__(self, model: nn.Module, layer: str | None, normalize: str, input_size: int | None) -> None:
        self.model, self.layer, self.input_size = model, layer, input_size
        self.normalize = float_normalizer(normalize)
        self.trace = Trace(model, [layer], grad=True, stop=True) if layer else None
        self._warm = False

    def __enter__(self) -> Forward:
        if self.trace:
            self.trace.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.trace:
            self.trace.__exit__(*exc_info)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.input_size and images.shape[-1] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=True)
        inputs = self.normalize(images)
        if not self.trace:
            return self.model(inputs)
        if not self._warm:
            with torch.no_grad():
                self.trace(inputs[:1].detach())
            self._warm = True
        return self.trace(inputs)[self.layer]


def diversity(output: torch.Tensor, groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """Lucid's diversity term within each group of images: the mean over an image of the summed cosine
    similarity of its Gram matrix (over the layer's units) to the others' (0 for groups of one)."""
    total = output.new_zeros(())
    flat = output.flatten(2) if output.ndim == 4 else output[:, :, None]
    for group in groups:
        if len(group) < 2:
            continue
        features = flat[list(group)]
        grams = features @ features.transpose(1, 2)
        grams = grams / grams.flatten(1).norm(dim=1).clamp_min(1e-10)[:, None, None]
        similarity = torch.einsum("iab,jab->ij", grams, grams)
        total = total + (similarity.sum() - similarity.diagonal().sum()) / len(group)
    return total


def _lucid(forward: Forward, objectives: Sequence[Objective], seeds: Sequence[int], groups, settings,
           step: Callable[[], None]) -> torch.Tensor:
    device = next(forward.model.parameters()).device
    image = FourierImage(settings.size, [int(np.random.SeedSequence([s, 0]).generate_state(1)[0]) for s in seeds])
    image = image.to(device)
    rngs = [np.random.default_rng([s, 1]) for s in seeds]
    optimizer = torch.optim.Adam(image.parameters(), lr=settings.lr)
    for _ in range(settings.steps):
        optimizer.zero_grad()
        output = forward(transform(image(), rngs) if settings.transforms else F.pad(image(), [PAD] * 4,
                                                                                      value=PAD_VALUE))
        loss = -values(objectives, output).sum()
        if settings.copies > 1:
            loss = loss + settings.diversity * diversity(output, groups)
        loss.backward(inputs=list(image.parameters()))  # no gradients of the model's weights
        optimizer.step()
        step()
    with torch.no_grad():
        return image()


def _pixel(forward: Forward, objectives: Sequence[Objective], seeds: Sequence[int], settings, normalize: str,
           size: int, step: Callable[[], None]) -> torch.Tensor:
    device = next(forward.model.parameters()).device
    image = PixelImage(size, seeds, pixel_mean(normalize)).to(device)
    for index in range(settings.pixel_steps):
        image.clip()
        objective = values(objectives, forward(image())).sum()
        (gradient,) = torch.autograd.grad(objective, image.pixels)
        if index < settings.pixel_steps - 1:  # as Yosinski et al.: no update after the last step's gradient
            with torch.no_grad():
                squared = gradient.flatten(1).square().sum(1).clamp_min(torch.finfo(gradient.dtype).tiny)
                lr = (settings.pixel_progress / squared).clamp(max=settings.pixel_max_lr).view(-1, 1, 1, 1)
                image.pixels.add_(lr * gradient).mul_(1 - settings.pixel_decay)
                if settings.blur_every and index % settings.blur_every == 0:
                    image.pixels.copy_(gaussian_blur(image.pixels, settings.blur_sigma))
        step()
    with torch.no_grad():
        return image()


def evaluate(forward: Forward, objectives: Sequence[Objective], images: torch.Tensor, pad: bool) -> torch.Tensor:
    """Each image's objective on it, untransformed (``pad``: with Lucid's grey border, as during optimisation)."""
    with torch.no_grad():
        return values(objectives, forward(F.pad(images, [PAD] * 4, value=PAD_VALUE) if pad else images))


def unit_peaks(model: nn.Module, layer: str, units: Sequence[int], images: torch.Tensor, normalize: str,
               input_size: int | None, pad: bool) -> torch.Tensor:
    """The highest activation of unit ``units[i]`` (0-based) of ``layer`` over image ``i`` (B,), untransformed."""
    with Forward(model, layer, normalize, input_size) as forward:
        with torch.no_grad():
            output = forward(F.pad(images, [PAD] * 4, value=PAD_VALUE) if pad else images)
    maps = output if output.ndim == 4 else output[:, :, None, None]
    return torch.stack([maps[i, unit].max() for i, unit in enumerate(units)])


def maximize(model: nn.Module, layer: str | None, objectives: Sequence[Objective], normalize: str,
             settings: VisualizeSettings, seeds: Sequence[int], method: str = "lucid",
             groups: Sequence[Sequence[int]] = (), step: Callable[[], None] = lambda: None) -> Maximized:
    """One image per objective maximising it (``seeds[i]`` seeds image ``i``), by ``method`` (``lucid`` or
    ``pixel``); ``groups`` lists the images that are copies of one objective (the diversity term)."""
    if method not in VISUALIZATION_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(VISUALIZATION_METHODS)}")
    with Forward(model, layer, normalize, settings.input_size) as forward:
        if method == "lucid":
            images = _lucid(forward, objectives, seeds, groups, settings, step)
        else:
            images = _pixel(forward, objectives, seeds, settings, normalize,
                            settings.input_size or settings.size, step)
        objective = evaluate(forward, objectives, images, pad=method == "lucid")
    return Maximized(images.detach(), objective)
