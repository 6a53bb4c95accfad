"""Beam search for the formula whose extension best matches a unit's masks (Mu & Andreas 2020), exactly.

The IoU of a formula F with unit u over the dataset is I / (A + |F| − I): I the mask pixels where F holds,
|F| the dataset's pixels where it holds, A the unit's mask pixels counted by the union rule: every mask pixel
(``plain``, Mu & Andreas's IoU), or, as the dissection counts a label's union (``dissection``), those of the
images (``presence: image``) or (image, unit) pairs (``mask``) where a category of one of F's un-negated labels is
present, so that a one-label formula has the dissection's IoU. All three are sums over label sets
(:class:`~unitscope.compositional.counts.CombinationCounts`), so every candidate is scored exactly, with
integers. Extending F by any label c needs only |F ∧ c| and I(F ∧ c), for every c at once two sparse
products: one over the dataset's label sets (shared by every unit whose beam holds F), one over the sets
the unit's masks touch.

The search follows the reference implementation: the beam starts with the ``beam`` best single labels among
those that occur under the unit's masks; each step extends every formula of the beam by every label with
OR, AND and AND NOT, and keeps the ``beam`` best of the beam and its extensions (shorter formulas first on
ties, then the order found). Two changes: a label already in a formula is not added again, and an extension
with the extension (set of pixels) of a formula already kept is not kept twice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from unitscope.compositional.counts import CombinationCounts
from unitscope.compositional.formulas import OPERATORS, Formula
from unitscope.settings import UNION_RULES

#: Formulas whose extensions are kept for reuse by later units.
_CACHED_FORMULAS = 1024


@dataclass(frozen=True)
class Scored:
    """A formula and its counts with a unit: IoU = intersect / union."""

    formula: Formula | None
    iou: float
    intersect: int
    union: int


@dataclass(frozen=True)
class _Extension:
    """Where a formula holds: ``where`` (S,) bool over label sets; ``size`` its pixels; ``bits`` the categories of
    its un-negated labels; ``overlap`` (L+1,) its pixels shared with every label."""

    where: np.ndarray
    size: int
    bits: int
    overlap: np.ndarray


class FormulaSearch:
    """Formulas for the units of one layer's :class:`CombinationCounts`."""

    def __init__(self, counts: CombinationCounts, union: str = "dissection", beam: int = 5) -> None:
        if union not in UNION_RULES:
            raise ValueError(f"union must be one of {UNION_RULES}, got {union!r}")
        if beam < 1:
            raise ValueError(f"beam {beam}: give a beam of at least 1")
        self.counts, self.union, self.beam = counts, union, beam
        self._by_label = counts.members.tocsc()
        self.label_pixels = np.asarray(counts.pixels @ counts.members, dtype=np.int64)
        primary = counts.primary
        self.allowed = primary >= 0
        self.allowed[0] = False
        self.label_bits = np.where(self.allowed, np.left_shift(1, np.clip(primary, 0, None)), 0).astype(np.int64)
        self._extensions: OrderedDict[Formula, _Extension] = OrderedDict()

    def extension(self, formula: Formula) -> _Extension:
        """Where ``formula`` holds, computed once (and kept for the next units)."""
        found = self._extensions.get(formula)
        if found is not None:
            self._extensions.move_to_end(formula)
            return found
        where = self._column(formula.labels[0])
        for op, label in zip(formula.operators, formula.labels[1:]):
            where = _apply(where, op, self._column(label))
        bits = int(np.bitwise_or.reduce(self.label_bits[list(formula.positive)]))
        weighted = np.where(where, self.counts.pixels, 0)
        found = _Extension(where, int(weighted.sum()), bits, np.asarray(weighted @ self.counts.members, np.int64))
        self._extensions[formula] = found
        if len(self._extensions) > _CACHED_FORMULAS:
            self._extensions.popitem(last=False)
        return found

    def _column(self, label: int) -> np.ndarray:
        where = np.zeros(self.counts.members.shape[0], bool)
        where[self._by_label.indices[self._by_label.indptr[label]:self._by_label.indptr[label + 1]]] = True
        return where

    def explain(self, unit: int, max_length: int) -> list[Scored]:
        """The best formula of length at most n for n = 1 … ``max_length`` (0-based ``unit``); formula ``None``
        and IoU 0 when no label occurs under the unit's masks."""
        if max_length < 1:
            raise ValueError(f"formula length {max_length}: give a length of at least 1")
        c = self.counts
        row = c.mask.getrow(unit)
        sets, pixels = row.indices, row.data.astype(np.int64)
        touched = c.members[sets]
        activation = c.activation[unit]
        total = int(activation.sum())

        def area(bits: np.ndarray) -> np.ndarray:
            """The union's activation term for category bits ``bits``."""
            if self.union == "plain":
                return np.full(bits.shape, total, np.int64)
            values, inverse = np.unique(bits, return_inverse=True)
            present = (c.signatures[None, :] & values[:, None]) != 0
            return (present @ activation)[inverse.reshape(bits.shape)]

        label_hits = np.asarray(pixels @ touched, np.int64)
        iou, union = self._scored(label_hits, self.label_pixels, self.label_bits, area)
        labels = np.flatnonzero(self.allowed & (iou > 0))
        beam = [Scored(Formula((int(label),)), float(iou[label]), int(label_hits[label]), int(union[label]))
                for label in labels[np.argsort(-iou[labels], kind="stable")][:self.beam]]
        if not beam:
            return [Scored(None, 0.0, 0, 0)] * max_length
        best = [beam[0]]
        for _ in range(2, max_length + 1):
            candidates = []
            for parent in beam:
                f = self.extension(parent.formula)
                both = np.asarray((pixels * f.where[sets]) @ touched, np.int64)
                free = self.allowed.copy()
                free[list(parent.formula.labels)] = False
                shapes = {  # (hits, size, category bits, changes the extension) per operator
                    "or": (parent.intersect + label_hits - both, f.size + self.label_pixels - f.overlap,
                           f.bits | self.label_bits, self.label_pixels > f.overlap),
                    "and": (both, f.overlap, f.bits | self.label_bits, f.overlap < f.size),
                    "and not": (parent.intersect - both, f.size - f.overlap, np.full_like(self.label_bits, f.bits),
                                f.overlap > 0),
                }
                for op in OPERATORS:
                    hits, size, bits, changes = shapes[op]
                    keep = free & changes
                    iou, union = self._scored(hits, size, bits, area)
                    candidates += [(iou[label], parent, op, int(label), int(hits[label]), int(union[label]))
                                   for label in np.flatnonzero(keep & (iou > 0))]
            beam = self._best(beam, candidates)
            best.append(beam[0])
        return best

    @staticmethod
    def _scored(hits, size, bits, area) -> tuple[np.ndarray, np.ndarray]:
        union = area(bits) + size - hits
        iou = np.zeros(union.shape)
        np.divide(hits, union, out=iou, where=union > 0)
        return iou, union

    def _best(self, kept: list[Scored], candidates: list[tuple]) -> list[Scored]:
        """The ``beam`` best of ``kept`` and ``candidates`` (``(iou, parent, op, label, hits, union)`` in the order
        found), the kept (shorter) formulas first on equal IoU; of formulas with the same extension only the first
        in that order (with the dissection's union, two of them can score differently)."""
        order = sorted([(-s.iou, 0, i) for i, s in enumerate(kept)] +
                       [(-item[0], 1, i) for i, item in enumerate(candidates)])
        seen: set[bytes] = set()
        chosen: list[Scored] = []
        for _, new, i in order:
            if len(chosen) == self.beam:
                break
            if new:
                iou, parent, op, label, hits, union = candidates[i]
                key = _apply(self.extension(parent.formula).where, op, self._column(label)).tobytes()
                scored = Scored(parent.formula.extend(op, label), float(iou), hits, union)
            else:
                scored = kept[i]
                key = self.extension(scored.formula).where.tobytes()
            if key not in seen:
                seen.add(key)
                chosen.append(scored)
        return chosen


def _apply(where: np.ndarray, op: str, column: np.ndarray) -> np.ndarray:
    """``where op column`` over label sets."""
    return where | column if op == "or" else where & column if op == "and" else where & ~column
