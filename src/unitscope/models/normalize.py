"""Input normalisations (spec §2.2): uint8 RGB batches to the float tensors a model expects."""

from __future__ import annotations

from collections.abc import Callable

import torch

from unitscope.settings import NORMALIZATIONS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: NetDissect's Caffe BGR mean (109.5388, 118.6897, 124.6901) in RGB order, on 0–255 values.
CAFFE_MEAN_RGB = (124.6901, 118.6897, 109.5388)
#: NetDissect(-Lite) divides by 255 · 0.224 after subtracting the Caffe mean.
CAFFE_SCALE = 255 * 0.224


#: kind -> (mean, std, scale): the model's input is (pixels / scale − mean) / std, pixels on 0–255.
_AFFINE: dict[str, tuple[tuple[float, ...], tuple[float, ...] | float, float]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD, 255.0),
    "caffe": (CAFFE_MEAN_RGB, CAFFE_SCALE, 1.0),
    "none": ((0.0, 0.0, 0.0), 1.0, 255.0),
}


def _parameters(kind: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, float]:
    if kind not in _AFFINE:
        raise ValueError(f"unknown normalisation {kind!r}; expected one of {', '.join(NORMALIZATIONS)}")
    mean, std, scale = _AFFINE[kind]
    return (torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1),
            torch.as_tensor(std, dtype=torch.float32, device=device).view(-1, 1, 1), scale)


def normalizer(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 ``(B, 3, H, W)`` RGB → float32 on the same device.

    ``imagenet``: torchvision mean/std on [0, 1]; ``caffe``: ``(x − CAFFE_MEAN_RGB) / 57.12`` on 0–255
    (NetDissect-Lite); ``none``: [0, 1].
    """
    _parameters(kind, torch.device("cpu"))

    def normalize(images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images of shape (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        mean, std, scale = _parameters(kind, images.device)
        return (images.to(torch.float32) / scale - mean) / std

    return normalize


def float_normalizer(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Float ``(B, 3, H, W)`` RGB on [0, 1] → the model's input, differentiable (images being optimised)."""
    _parameters(kind, torch.device("cpu"))

    def normalize(images: torch.Tensor) -> torch.Tensor:
        mean, std, scale = _parameters(kind, images.device)
        return (images * (255.0 / scale) - mean) / std

    return normalize



def pixel_mean(kind: str) -> tuple[float, ...]:
    """The RGB pixel (0–255) that the normalisation maps to zero: the mean image of Yosinski et al.'s start."""
    _parameters(kind, torch.device("cpu"))
    mean, _, scale = _AFFINE[kind]
    return tuple(m * scale for m in mean)
