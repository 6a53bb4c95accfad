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


def _affine(
    mean: tuple[float, ...], std: tuple[float, ...] | float, scale: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    def normalize(images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images of shape (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
        return (images.to(torch.float32) / scale - m) / s

    return normalize


def normalizer(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 ``(B, 3, H, W)`` RGB → float32 on the same device.

    ``imagenet``: torchvision mean/std on [0, 1]; ``caffe``: ``(x − CAFFE_MEAN_RGB) / 57.12`` on 0–255
    (NetDissect-Lite); ``none``: [0, 1].
    """
    if kind == "imagenet":
        return _affine(IMAGENET_MEAN, IMAGENET_STD, 255.0)
    if kind == "caffe":
        return _affine(CAFFE_MEAN_RGB, CAFFE_SCALE, 1.0)
    if kind == "none":
        return _affine((0.0, 0.0, 0.0), 1.0, 255.0)
    raise ValueError(f"unknown normalisation {kind!r}; expected one of {', '.join(NORMALIZATIONS)}")
