"""Images being optimised, as Lucid parameterises them: a Fourier spectrum scaled by 1/frequency with
decorrelated colour and a sigmoid (Olah et al. 2017; lucid/optvis/param), or plain pixels (Yosinski et al. 2015).

Each image of a batch draws its initial values from its own seed, so an image does not depend on which others
share its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

#: Lucid's square root of ImageNet's colour covariance (``color_correlation_svd_sqrt``).
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02],
                                       [0.27, 0.00, -0.05],
                                       [0.27, -0.09, 0.03]], dtype=np.float32)
#: Lucid's spectrum initialisation σ, and the constant its images are divided by ("reduces saturation").
SPECTRUM_SD = 0.01
SPECTRUM_DIVISOR = 4.0
#: Yosinski et al.'s start (``mean_plus_rand``): the mean image plus N(0, 10) on the 0–255 scale.
PIXEL_INIT_SD = 10.0


def fft_frequencies(height: int, width: int) -> np.ndarray:
    """The frequency of each entry of a real 2-D FFT of a (height, width) image, as Lucid's ``rfft2d_freqs``:
    an odd width keeps one more column, which the inverse transform then cuts off."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[: width // 2 + (2 if width % 2 else 1)]
    return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> np.ndarray:
    """Lucid's scaling of the spectrum: 1 / max(f, 1 / max(height, width)) ** decay_power."""
    return 1.0 / np.maximum(fft_frequencies(height, width), 1.0 / max(height, width)) ** decay_power


def _normal(shape: Sequence[int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator)


class FourierImage(nn.Module):
    """A batch of RGB images in [0, 1], (B, 3, size, size), parameterised by Lucid's scaled Fourier spectrum
    with decorrelated colour; image ``i`` is initialised from ``seeds[i]``."""

    def __init__(self, size: int, seeds: Sequence[int], decorrelate: bool = True) -> None:
        super().__init__()
        self.size, self.decorrelate = size, decorrelate
        freqs = fft_frequencies(size, size)
        self.spectrum = nn.Parameter(torch.stack([_normal((3, *freqs.shape, 2), s) * SPECTRUM_SD for s in seeds]))
        self.register_buffer("scale", torch.from_numpy(spectrum_scale(size, size)).float()[None, None, ..., None])
        normalized = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
        self.register_buffer("color", torch.from_numpy(normalized.copy()))

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex((self.scale * self.spectrum).contiguous())
        image = torch.fft.irfftn(spectrum, s=(self.size, self.size), norm="ortho") / SPECTRUM_DIVISOR
        if self.decorrelate:
            image = (self.color @ image.flatten(2)).view_as(image)  # Lucid: pixels (N, 3) @ color.T
        return torch.sigmoid(image)


class PixelImage(nn.Module):
    """A batch of RGB images, (B, 3, size, size), as plain pixels on the 0–255 scale around ``mean`` (0–255),
    Yosinski et al.'s parameterisation; :meth:`forward` gives them clipped to [0, 1]."""

    def __init__(self, size: int, seeds: Sequence[int], mean: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.pixels = nn.Parameter(torch.stack([_normal((3, size, size), s) * PIXEL_INIT_SD for s in seeds]))

    def clip(self) -> None:
        """Crop the pixels to 0–255 (Yosinski et al. do so before every step)."""
        with torch.no_grad():
            self.pixels.copy_(torch.clamp(self.pixels + self.mean, 0.0, 255.0) - self.mean)

    def forward(self) -> torch.Tensor:
        return torch.clamp(self.pixels + self.mean, 0.0, 255.0) / 255.0
