"""The data randomisation test on real handwritten digits: scikit-learn's 1,797 digits (offline, in its wheel)
standing in for Adebayo et al.'s MNIST, and a small CNN trained on their true or on permuted labels.

The 8×8 digits (16 gray levels) are upsampled bilinearly to 28×28, MNIST's size, and given as three equal
colour channels so that every saliency method, post-processing step and control treats them as any image.
Every fifth digit is held out (``index % 5 == 0``: 360 test, 1,437 training digits). The permuted labels are
one seeded permutation of the training labels; the model must fit them (its training accuracy is recorded).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from torch import nn

from unitscope.io import staged_directory, write_json, write_torch
from unitscope.models.registry import Anatomy, ModelEntry, register_model
from unitscope.progress import progress

SIZE = 28
HELD_OUT_EVERY = 5
CLASSES = [str(digit) for digit in range(10)]
LABELS = ("true", "permuted")
#: Adam steps: epochs over the 1,437 training digits, 64 per step. Enough to fit permuted labels (docs/saliency.md).
EPOCHS = 80
BATCH_SIZE = 64


def digits(size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All digits as uint8 RGB images (N, size, size, 3), their labels (N,), and which are held out (N,) bool."""
    from sklearn.datasets import load_digits

    data = load_digits()
    small = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    large = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    gray = (large[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    held_out = np.arange(len(gray)) % HELD_OUT_EVERY == 0
    return np.repeat(gray[..., None], 3, axis=3), data.target.astype(np.int64), held_out


class DigitsCNN(nn.Module):
    """conv 3×3 (32) → max-pool → conv 3×3 (64) → max-pool → fully connected 256 → 10 classes."""

    def __init__(self, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU())
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU())
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Sequential(nn.Linear(64 * (SIZE // 4) ** 2, 256), nn.ReLU())
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.fc2(self.fc1(x.flatten(1)))


@register_model("digits-cnn")
def digits_cnn() -> ModelEntry:
    """The digits CNN; trained weights come as ``file:final.pt --arch digits-cnn`` (``unitscope train-digits``)."""
    return ModelEntry(build=lambda state_dict: DigitsCNN(), normalize="none", anatomy=Anatomy("conv2"))


def _inputs(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    predicted = torch.cat([model(_inputs(images[i : i + 256])).argmax(1) for i in range(0, len(images), 256)])
    return float((predicted.numpy() == labels).mean())


def train_digits(out_dir: str | Path, labels: str = "true", seed: int = 0, epochs: int = EPOCHS,
                 test_images: int = 20) -> dict[str, Any]:
    """Train the digits CNN on the training digits' ``labels`` (``true`` or ``permuted``) with Adam (lr 1e-3, 64
    digits per step) and write ``out_dir``: ``final.pt`` (``state_dict`` with ``labels``, ``seed``, ``epochs``,
    ``train_accuracy``, ``test_accuracy`` and ``classes``), ``training.json`` and ``test-images/``, the first
    ``test_images`` held-out digits as PNG files. The test accuracy is against the true labels."""
    if labels not in LABELS:
        raise ValueError(f"--labels must be one of {', '.join(LABELS)}, got {labels!r}")
    if epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {epochs}")
    images, targets, held_out = digits()
    train_images, train_targets = images[~held_out], targets[~held_out]
    if labels == "permuted":
        train_targets = train_targets[np.random.default_rng(seed).permutation(len(train_targets))]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(seed)
        inputs, truth = _inputs(train_images), torch.from_numpy(train_targets)
        for _ in progress(range(epochs), desc=f"train digits-cnn ({labels} labels)", unit="epoch"):
            model.train()
            for rows in torch.randperm(len(inputs), generator=generator).split(BATCH_SIZE):
                loss = F.cross_entropy(model(inputs[rows]), truth[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    record = {"labels": labels, "seed": seed, "threads": torch.get_num_threads(), "epochs": epochs, "classes": CLASSES,
              "train_accuracy": accuracy(model, train_images, train_targets),
              "test_accuracy": accuracy(model, images[held_out], targets[held_out]),
              "train_images": int(len(train_images)), "test_images": int(held_out.sum())}
    out_dir = Path(out_dir)
    with staged_directory(out_dir) as staged:
        write_torch({"state_dict": model.state_dict(), **record}, staged / "final.pt")
        write_json(record, staged / "training.json")
        (staged / "test-images").mkdir()
        for index in np.flatnonzero(held_out)[:test_images]:
            PILImage.fromarray(images[index]).save(staged / "test-images" / f"{index:04d}-{targets[index]}.png")
    return record


def describe(record: Mapping[str, Any]) -> str:
    return (f"digits-cnn on {record['labels']} labels: train accuracy {record['train_accuracy']:.3f}, "
            f"test accuracy {record['test_accuracy']:.3f}")
