"""Left-deep logical formulas over concepts (Mu & Andreas 2020): ``((a OR b) AND NOT c)``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: The connectives of a formula, in the order the search tries them.
OPERATORS = ("or", "and", "and not")


@dataclass(frozen=True)
class Formula:
    """``labels[0] op[0] labels[1] op[1] …``, applied left to right; labels are global label numbers."""

    labels: tuple[int, ...]
    operators: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("a formula needs at least one label")
        if len(self.operators) != len(self.labels) - 1:
            raise ValueError(f"a formula of {len(self.labels)} labels needs {len(self.labels) - 1} operators")
        unknown = set(self.operators) - set(OPERATORS)
        if unknown:
            raise ValueError(f"unknown operators {sorted(unknown)}; use {', '.join(OPERATORS)}")

    def __len__(self) -> int:
        return len(self.labels)

    def extend(self, operator: str, label: int) -> Formula:
        return Formula((*self.labels, label), (*self.operators, operator))

    @property
    def positive(self) -> tuple[int, ...]:
        """The labels not under a negation."""
        return tuple(label for label, op in zip(self.labels, ("", *self.operators)) if op != "and not")

    def text(self, names: Sequence[str]) -> str:
        """``(a OR b) AND NOT c`` with the labels' names."""
        out = names[self.labels[0]]
        for i, (op, label) in enumerate(zip(self.operators, self.labels[1:])):
            out = f"{'(' + out + ')' if i else out} {op.upper()} {names[label]}"
        return out
