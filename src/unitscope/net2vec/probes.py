"""Net2Vec's probes (Fong & Vedaldi, CVPR 2018): concepts as weighted combinations of a layer's binarised units.

Segmentation: M_c(x) = σ(bilinear-upsample(Σ_k w_{c,k} · 1[A_k(x) > T_k] + b_c)), trained with the class-weighted
loss −[α_c · y log M + (1 − α_c)(1 − y) log(1 − M)] (α_c = 1 − the fraction of the training pixels that are c),
summed over an image's pixels and averaged over images, by SGD with momentum; every concept of the layer is one
row of one weight matrix, trained together. Classification: presence of c in x from the mean over positions of the
same weighted map, σ(Σ_k w_{c,k} · mean(1[A_k(x) > T_k]) + b_c), trained on balanced classes (positives weighted
by negatives / positives).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F


def segmentation_logits(binary: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                        size: tuple[int, int]) -> torch.Tensor:
    """(B, C, sh, sw) logits of every concept from binarised units (B, K, h, w), weights (C, K) and biases (C,)."""
    maps = torch.einsum("bkhw,ck->bchw", binary, weight) + bias[None, :, None, None]
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def class_weighted_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The loss of logits (B, C, ...) against boolean targets, α (C,) on the positives, summed over each image's
    pixels and concepts, averaged over images."""
    shape = (-1,) + (1,) * (logits.dim() - 2)
    a = alpha.to(logits.dtype).reshape(shape)
    # BCE with weight 1 − α and positive weight α / (1 − α) is α·y·softplus(−z) + (1 − α)(1 − y)·softplus(z), fused
    loss = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), weight=1 - a, pos_weight=a / (1 - a),
                                              reduction="sum")
    return loss / len(logits)


def train_segmentation(batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]], units: int,
                       alpha: torch.Tensor, size: tuple[int, int], epochs: int, lr: float,
                       momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (C, K) and biases (C,) of the segmentation probes, from zero; ``batches(epoch)`` yields (binary units
    (B, K, h, w) float, targets (B, C, sh, sw) bool)."""
    start = (torch.zeros(len(alpha), units), torch.zeros(len(alpha)), None)
    return _fit(batches, [start], alpha, size, epochs, lr, momentum)[0]


def retrain_top_units(batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]], weight: torch.Tensor,
                      bias: torch.Tensor, ks: Sequence[int], alpha: torch.Tensor, size: tuple[int, int], epochs: int,
                      lr: float, momentum: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each k of ``ks``, the probes restricted to each concept's k largest |w| units and trained again from
    those weights (:func:`top_units`) and the biases, the other weights held at zero; all k on the same batches.
    The loss is convex in the weights, so the start only decides how fast the restricted optimum is reached."""
    starts = [(weight * mask, bias, mask) for mask in (top_mask(weight, k) for k in ks)]
    return _fit(batches, starts, alpha, size, epochs, lr, momentum)


def _fit(batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
         starts: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]], alpha: torch.Tensor,
         size: tuple[int, int], epochs: int, lr: float, momentum: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Probes (weight, bias, support: the weights that may change, None for all) trained by SGD with momentum on
    the same batches, each step of each probe on its own."""
    probes = []
    for weight, bias, support in starts:
        weight, bias = weight.clone().requires_grad_(), bias.clone().requires_grad_()
        probes.append((weight, bias, support, torch.optim.SGD([weight, bias], lr=lr, momentum=momentum)))
    for epoch in range(epochs):
        for binary, targets in batches(epoch):
            for weight, bias, support, optimizer in probes:
                optimizer.zero_grad()
                kept = weight if support is None else weight * support
                class_weighted_loss(segmentation_logits(binary, kept, bias, size), targets, alpha).backward()
                optimizer.step()
    return [(weight.detach(), bias.detach()) for weight, bias, _, _ in probes]


def train_classification(features: torch.Tensor, labels: torch.Tensor, epochs: int, lr: float,
                         momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (C, K) and biases (C,) of presence probes on pooled binarised units (N, K) with labels (N, C) bool,
    each concept's positives weighted by its negatives / positives (balanced), full-batch SGD with momentum."""
    concepts, units = labels.shape[1], features.shape[1]
    positives = labels.sum(dim=0).clamp(min=1).float()
    balance = (len(labels) - labels.sum(dim=0)).float() / positives
    weight = torch.zeros(concepts, units, requires_grad=True)
    bias = torch.zeros(concepts, requires_grad=True)
    optimizer = torch.optim.SGD([weight, bias], lr=lr, momentum=momentum)
    for _ in range(epochs):
        optimizer.zero_grad()
        logits = features @ weight.T + bias
        F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=balance).backward()
        optimizer.step()
    return weight.detach(), bias.detach()


def units_carrying(weight: torch.Tensor, fraction: float = 0.9) -> torch.Tensor:
    """(C,) how many of each concept's units, largest |w| first, carry ``fraction`` of its Σ|w|."""
    magnitudes = weight.abs().sort(dim=1, descending=True).values
    total = magnitudes.sum(dim=1, keepdim=True)
    reached = magnitudes.cumsum(dim=1) >= fraction * total - 1e-12 * total
    return reached.float().argmax(dim=1) + 1


def top_mask(weight: torch.Tensor, k: int) -> torch.Tensor:
    """(C, K) bool: each concept's ``k`` largest |w| (ties by unit order; all units where ``k`` reaches them)."""
    keep = torch.zeros_like(weight, dtype=torch.bool)
    return keep.scatter_(1, weight.abs().topk(min(k, weight.shape[1]), dim=1).indices, True)


def top_units(weight: torch.Tensor, k: int) -> torch.Tensor:
    """The weights with only each concept's ``k`` largest |w| kept (the others zero)."""
    return weight * top_mask(weight, k)


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Average precision of every column of ``scores`` (N, M) against boolean ``labels`` (N, M), as scikit-learn's
    ``average_precision_score`` computes it (tied scores form one threshold); NaN where a column has no positive."""
    order = scores.argsort(dim=0, descending=True, stable=True)
    ranked, hits = scores.gather(0, order), labels.gather(0, order).double()
    true_positives = hits.cumsum(dim=0)
    precision = true_positives / torch.arange(1, len(scores) + 1, dtype=torch.float64)[:, None]
    last = torch.ones_like(ranked, dtype=torch.bool)  # the last item of each group of tied scores
    last[:-1] = ranked[1:] != ranked[:-1]
    position = torch.where(last, torch.arange(len(scores))[:, None], len(scores))
    group_end = position.flip(0).cummin(dim=0).values.flip(0)  # the end of each item's group of ties
    at_end = precision.gather(0, group_end.clamp(max=len(scores) - 1))
    positives = hits.sum(dim=0)
    return torch.where(positives > 0, (hits * at_end).sum(dim=0) / positives.clamp(min=1), torch.nan)
