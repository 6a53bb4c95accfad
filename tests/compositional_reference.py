"""Compositional explanations the straightforward way: dense boolean masks over the whole dataset, one NumPy
evaluation per candidate formula. The reference the tests compare the engine's search with, and the baseline of
benchmarks/bench_compositional.py."""

from __future__ import annotations

import numpy as np

OPERATORS = ("or", "and", "and not")


def concept_masks(dataset, images: int | None = None) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Every counted label's pixels over the dataset, (N, sh, sw) bool: its pixels in any layer, and the whole
    image for an image-level label; and, per label, the images where it is an image-level label, (N,) bool."""
    primary = np.asarray(dataset.primary)
    n = len(dataset) if images is None else images
    masks: dict[int, np.ndarray] = {}
    image_level: dict[int, np.ndarray] = {}
    for i in range(n):
        seg = dataset.segmentation(i)
        for label in np.unique(seg.layers) if seg.layers.size else []:
            if label > 0 and primary[label] >= 0:
                masks.setdefault(int(label), np.zeros((n, *dataset.label_size), bool))[i] |= (seg.layers == label).any(0)
        for label in seg.image_labels:
            if label > 0 and primary[label] >= 0:
                masks.setdefault(int(label), np.zeros((n, *dataset.label_size), bool))[i] = True
                image_level.setdefault(int(label), np.zeros(n, bool))[i] = True
    return masks, image_level


def presence(primary, categories: int, concepts: dict[int, np.ndarray], image_level: dict[int, np.ndarray],
             unit_masks: np.ndarray, rule: str) -> np.ndarray:
    """(units, N, categories) bool: the categories present for each unit and image by the dissection's rule."""
    units, n = unit_masks.shape[:2]
    out = np.zeros((units, n, categories), bool)
    for label, where in concepts.items():
        k = primary[label]
        if rule == "image":
            out[:, :, k] |= where.any(axis=(1, 2))[None, :]
        else:
            seg_level = image_level.get(label, np.zeros(n, bool))
            out[:, :, k] |= (unit_masks & where[None]).any(axis=(2, 3)) | seg_level[None, :]
    return out


def evaluate(formula: tuple[tuple[int, ...], tuple[str, ...]], concepts: dict[int, np.ndarray]) -> np.ndarray:
    labels, operators = formula
    where = concepts[labels[0]].copy()
    for op, label in zip(operators, labels[1:]):
        column = concepts[label]
        where = where | column if op == "or" else where & column if op == "and" else where & ~column
    return where


def score(formula, unit_mask: np.ndarray, concepts, present: np.ndarray, primary, union_rule: str):
    """(iou, intersect, union) of a formula with one unit's masks (N, sh, sw); ``present`` (N, categories)."""
    where = evaluate(formula, concepts)
    hits = int((unit_mask & where).sum())
    if union_rule == "plain":
        area = int(unit_mask.sum())
    else:
        labels, operators = formula
        positive = [label for label, op in zip(labels, ("", *operators)) if op != "and not"]
        images = present[:, sorted({primary[label] for label in positive})].any(axis=1)
        area = int(unit_mask[images].sum())
    union = area + int(where.sum()) - hits
    return (hits / union if union else 0.0), hits, union


def beam_search(unit_mask, concepts, present, primary, union_rule: str, max_length: int = 3, beam: int = 5):
    """The best formula of length ≤ n for n = 1 … max_length as ``(formula, iou, intersect, union)``, by the
    engine's rules (docs/compositional.md), each candidate evaluated on the dense masks."""
    labels = sorted(concepts)
    singles = [((label,), ()) for label in labels]
    scored = [(f, *score(f, unit_mask, concepts, present, primary, union_rule)) for f in singles]
    scored = [s for s in scored if s[1] > 0]
    kept = sorted(scored, key=lambda s: -s[1])[:beam]
    if not kept:
        return [None] * max_length
    best = [kept[0]]
    for _ in range(1, max_length):
        candidates = []
        for parent in kept:
            (p_labels, p_ops) = parent[0]
            parent_where = evaluate(parent[0], concepts)
            for op in OPERATORS:
                for label in labels:
                    if label in p_labels:
                        continue
                    formula = ((*p_labels, label), (*p_ops, op))
                    s = score(formula, unit_mask, concepts, present, primary, union_rule)
                    if s[0] > 0 and not np.array_equal(evaluate(formula, concepts), parent_where):
                        candidates.append((formula, *s))
        order = sorted([(-s[1], 0, i, s) for i, s in enumerate(kept)] + [(-s[1], 1, i, s) for i, s in enumerate(candidates)],
                       key=lambda t: t[:3])
        chosen, seen = [], []
        for _, _, _, s in order:
            if len(chosen) == beam:
                break
            where = evaluate(s[0], concepts)
            if any(np.array_equal(where, other) for other in seen):
                continue
            seen.append(where)
            chosen.append(s)
        kept = chosen
        best.append(kept[0])
    return best
