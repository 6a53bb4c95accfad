"""Train ProbeCNN on the probe set's scene classes, saving checkpoints along the way.

The run is deterministic given the seed on the CPU: seeded initialisation and data order, single-process
loading, ``torch.use_deterministic_algorithms``. The train split is held in memory as uint8 (the probe set
is small: 1,000 images at 224 px are 150 MB).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from unitscope.broden.loaders import image_loader
from unitscope.broden.reader import BrodenDataset
from unitscope.models.normalize import normalizer
from unitscope.models.probecnn import Architecture, ProbeCNN
from unitscope.settings import TRAIN_BATCH_SIZE, TRAIN_ITERATIONS
from unitscope.progress import progress
from unitscope.io import write_json, write_torch

PROBE_META = "probe.json"
TRAINING_LOG = "training.json"
NORMALIZE = "imagenet"
LAYOUT = torch.channels_last
#: What a network is trained on: the true scene labels, or one seeded permutation of them.
LABELS = ("true", "permuted")


def geometric_checkpoints(iterations: int) -> list[int]:
    """``0, 1, 2, 4, …`` up to and including ``iterations``."""
    points = [0] + [2**k for k in range(max(iterations, 1).bit_length()) if 2**k <= iterations]
    return sorted(set(points) | {iterations})


def checkpoint_name(iteration: int) -> str:
    return f"checkpoint-{iteration}.pt"


def scene_data(dataset: BrodenDataset, split: str, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``(N, 3, H, W)`` and class ids ``(N,)`` of the split's images that have a scene label."""
    class_of = {name: k for k, name in enumerate(classes)}
    names = dataset.labels["name"]
    rows, targets = [], []
    for i, row_split in enumerate(dataset.index["split"]):
        if row_split != split:
            continue
        scenes = dataset.segmentation(i).image_labels.tolist()
        if not scenes:
            continue
        name = names.loc[scenes[0]]
        if name not in class_of:
            shown = ", ".join(classes[:4]) + (", …" if len(classes) > 4 else "")
            raise ValueError(f"{dataset.image_path(i)}: scene label {name!r} is not one of the classes ({shown}); "
                             "give the dataset the classifier was trained on")
        rows.append(i)
        targets.append(class_of[name])
    if not rows:
        raise ValueError(f"{dataset.root}: no {split} images with a scene label")
    images = torch.cat([batch for _, batch in image_loader(dataset, rows, batch_size=64)])
    return images, torch.tensor(targets, dtype=torch.long)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled index batches (a fresh permutation per epoch, short last batches dropped)."""
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


_TO_INPUT = normalizer(NORMALIZE)


def _model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images as the model's normalised float input, channels-last."""
    return _TO_INPUT(images.to(device)).contiguous(memory_format=LAYOUT)


@torch.inference_mode()
def evaluate(
    model: ProbeCNN, images: torch.Tensor, targets: torch.Tensor, batch_size: int, device: torch.device
) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on uint8 images."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(_model_input(images[start : start + batch_size], device))
        correct += int((logits.argmax(1).cpu() == targets[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / len(images)


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def train_probecnn(
    dataset_dir: str | Path,
    out_dir: str | Path,
    iterations: int = TRAIN_ITERATIONS,
    seed: int = 0,
    checkpoints: Sequence[int] | None = None,
    batch_size: int = TRAIN_BATCH_SIZE,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    architecture: Architecture = Architecture(),
    device: torch.device | str = "cpu",
    labels: str = "true",
) -> dict[str, Any]:
    """Train a ProbeCNN of ``architecture`` for ``iterations`` SGD steps on the scenes of ``dataset_dir/probe.json``.

    Writes ``checkpoint-<k>.pt`` after ``k`` steps for each ``k`` in ``checkpoints`` (default
    :func:`geometric_checkpoints`; 0 is the initialisation), ``final.pt`` and ``training.json``; each
    checkpoint holds ``state_dict``, ``iteration``, ``seed``, ``classes``, ``val_accuracy`` (top-1 on the
    held-out ``val`` split), ``iterations``, ``batch_size``, ``architecture`` and ``labels``, and the last one
    ``train_accuracy`` (top-1 on the labels it was trained on). ``labels="permuted"`` trains on one seeded
    permutation of the training labels (the data randomisation test of docs/saliency.md). SGD with
    Nesterov momentum and a cosine learning-rate decay, no augmentation (random flips made no difference
    on the probe set: ``benchmarks/README.md``). Returns the training log written to ``training.json``.
    """
    dataset_dir, out_dir, device = Path(dataset_dir), Path(out_dir), torch.device(device)
    checkpoints = sorted(set(geometric_checkpoints(iterations) if checkpoints is None else checkpoints))
    if checkpoints and not 0 <= checkpoints[0] <= checkpoints[-1] <= iterations:
        raise ValueError(f"checkpoints must lie in 0..{iterations} (the number of iterations), got {checkpoints}")
    meta_path = dataset_dir / PROBE_META
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} not found: train-probecnn needs a probe dataset (unitscope probe-dataset)"
        )
    classes = json.loads(meta_path.read_text()).get("scene_classes")
    if not classes:
        raise ValueError(f"{meta_path} lists no scene_classes: nothing to train on")
    dataset = BrodenDataset(dataset_dir, categories=["scene"])
    train_images, train_targets = scene_data(dataset, "train", classes)
    val_images, val_targets = scene_data(dataset, "val", classes)
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}")
    if labels == "permuted":
        train_targets = train_targets[torch.randperm(len(train_targets), generator=torch.Generator().manual_seed(seed))]
    out_dir.mkdir(parents=True, exist_ok=True)

    with torch.random.fork_rng(devices=[]), _deterministic(device.type == "cpu"):
        torch.manual_seed(seed)
        # channels-last convolutions: 1.2–1.4× less CPU time per step here (benchmarks/README.md, ProbeCNN training)
        model = ProbeCNN(num_classes=len(classes), architecture=architecture).to(device, memory_format=LAYOUT)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * k / max(iterations, 1)))
        )
        losses: list[float] = []
        records: list[dict[str, Any]] = []
        final: dict[str, float] = {}

        def checkpoint(iteration: int) -> None:
            accuracy = evaluate(model, val_images, val_targets, 2 * batch_size, device)
            since = losses[records[-1]["iteration"] if records else 0 : iteration]
            records.append(
                {
                    "iteration": iteration,
                    "train_loss": sum(since) / len(since) if since else None,
                    "val_accuracy": accuracy,
                }
            )
            state = {k: v.cpu().contiguous() for k, v in model.state_dict().items()}  # saved in the default layout
            payload = {
                "state_dict": state,
                "iteration": iteration,
                "seed": seed,
                "classes": classes,
                "val_accuracy": accuracy,
                "iterations": iterations,
                "batch_size": batch_size,
                "architecture": asdict(architecture),
                "labels": labels,
            }
            if iteration == iterations:
                payload["train_accuracy"] = final["train_accuracy"] = evaluate(
                    model, train_images, train_targets, 2 * batch_size, device)
            if iteration in checkpoints:
                write_torch(payload, out_dir / checkpoint_name(iteration))
            if iteration == iterations:
                write_torch(payload, out_dir / "final.pt")

        model.train()
        if 0 in checkpoints or iterations == 0:
            checkpoint(0)
        batches = _batches(len(train_images), batch_size, generator)
        for iteration in progress(range(1, iterations + 1), desc="train probecnn", unit="step"):
            rows = next(batches)
            loss = F.cross_entropy(model(_model_input(train_images[rows], device)), train_targets[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if iteration in checkpoints or iteration == iterations:
                checkpoint(iteration)

    log = {
        "seed": seed,
        "threads": torch.get_num_threads(),
        "iterations": iterations,
        "batch_size": batch_size,
        "architecture": asdict(architecture),
        "classes": classes,
        "train_images": len(train_images),
        "val_images": len(val_images),
        "normalize": NORMALIZE,
        "labels": labels,
        "final_val_accuracy": records[-1]["val_accuracy"],
        "final_train_accuracy": final["train_accuracy"],
        "checkpoints": records,
        "train_loss": losses,
    }
    write_json(log, out_dir / TRAINING_LOG)
    return log
