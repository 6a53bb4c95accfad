"""Net2Vec's sparsity sweep truncated against retrained (``unitscope net2vec --sparsity-epochs N``): the mean val IoU
(Net2Vec's protocol) of each concept's probe kept to its k largest weights, and of the same probe trained N more
epochs on those units, for several N, with the seconds each retraining took.

    python benchmarks/bench_net2vec_sparsity.py --dataset data/probe --dissection results/dissect/probecnn/conv4
        --model file:results/models/probecnn/checkpoint-256.pt --arch probecnn [--epochs 10] [--k 1 4 16]
        [--sparsity-epochs 1 3 10]

Run it in a finished default run. It does what the command does (one pass over the images, the full probes trained
``--epochs`` epochs with the command's defaults otherwise), then retrains the restricted probes once per N.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unitscope.broden.reader import BrodenDataset
from unitscope.dissect.result import Dissected
from unitscope.models import load_model
from unitscope.net2vec.probes import retrain_top_units, segmentation_logits, top_units, train_segmentation
from unitscope.net2vec.run import gather
from unitscope.settings import NET2VEC_DEFAULTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--dissection", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--arch")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--sparsity-epochs", type=int, nargs="+", default=[1, 3, 10])
    args = parser.parse_args()
    settings = NET2VEC_DEFAULTS
    dissected = Dissected.read(args.dissection)
    data = gather(BrodenDataset(args.dataset), load_model(args.model, args.arch), dissected, device="cpu")
    train, val = np.flatnonzero(data.train), np.flatnonzero(~data.train)
    keep = np.flatnonzero(data.concept_pixels[train].sum(axis=0) > 0)
    pixels = data.label_size[0] * data.label_size[1]
    alpha = torch.as_tensor(1 - data.concept_pixels[train][:, keep].sum(axis=0) / (len(train) * pixels),
                            dtype=torch.float32)

    def batches(epoch: int):
        order = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(settings.seed + epoch))]
        for _, binary, targets in data.batches(order, settings.step_images):
            yield binary, targets[:, keep]

    def mean_iou(probes: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
        hits, area = np.zeros((len(probes), len(keep))), np.zeros((len(probes), len(keep)))
        truth = data.concept_pixels[val][:, keep].sum(axis=0)
        for rows, binary, targets in data.batches(val, settings.step_images):
            targets = targets[:, keep]
            for p, (weight, bias) in enumerate(probes):
                with torch.no_grad():
                    masks = segmentation_logits(binary, weight, bias, data.label_size) > 0
                hits[p] += (masks & targets).sum(dim=(0, 2, 3)).numpy()
                area[p] += (masks.flatten(2).sum(dim=2).numpy() * data.contains[rows][:, keep]).sum(axis=0)
        scored = truth > 0
        return [float((h[scored] / (a[scored] + truth[scored] - h[scored])).mean()) for h, a in zip(hits, area)]

    weight, bias = train_segmentation(batches, data.units.shape[1], alpha, data.label_size, args.epochs, settings.lr,
                                      settings.momentum)
    print(f"full probe ({args.epochs} epochs): mean val IoU {mean_iou([(weight, bias)])[0]:.3f}")
    print("| k | truncated | " + " | ".join(f"retrained {n} epochs" for n in args.sparsity_epochs) + " |")
    columns = [mean_iou([(top_units(weight, k), bias) for k in args.k])]
    seconds = []
    for n in args.sparsity_epochs:
        start = time.perf_counter()
        retrained = retrain_top_units(batches, weight, bias, args.k, alpha, data.label_size, n, settings.lr,
                                      settings.momentum)
        seconds.append(time.perf_counter() - start)
        columns.append(mean_iou(retrained))
    for i, k in enumerate(args.k):
        print(f"| {k} | " + " | ".join(f"{column[i]:.3f}" for column in columns) + " |")
    print("retraining seconds: " + ", ".join(f"{n} epochs {s:.0f} s" for n, s in zip(args.sparsity_epochs, seconds)))


if __name__ == "__main__":
    main()
