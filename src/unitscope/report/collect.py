"""Scan dissection result directories into the in-memory model the report renders.

A *run* is one layer directory (``docs/outputs.md``): it holds ``meta.json`` next to the tally, the
thresholds, the per-label IoUs and the top images of every unit. :func:`collect` finds every
``meta.json`` below the given roots, validates the files of its directory and returns the runs in a
stable order (model, natural layer order, rotation α), together with any ``provenance.json`` found.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from unitscope.summary import read_null_levels

#: Categories in the order the paper's figures group them (spec §6.1).
CATEGORY_ORDER: tuple[str, ...] = ("object", "scene", "part", "material", "texture", "color")
#: (dark bar colour, light background colour) per category, from NetDissect's bar graph (spec §6.1).
CATEGORY_COLORS: dict[str, tuple[str, str]] = {
    "object": ("#4B4CBF", "#B6B6F2"),
    "scene": ("#55B05B", "#B6F2BA"),
    "part": ("#50BDAC", "#A5E5DB"),
    "material": ("#D4CF24", "#F2F1B6"),
    "texture": ("#F0883B", "#F2CFB6"),
    "color": ("#D92E2B", "#F2B6B6"),
}
#: Files every layer directory must hold, with the columns the report reads.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "tally.csv": ("unit", "category", "label", "score"),
    "thresholds.csv": ("unit", "threshold"),
    "ious.csv": ("unit", "label", "category", "iou"),
    "top_images.csv": ("unit", "rank", "image_index", "image", "max_activation"),
}
RESULT_FILES: tuple[str, ...] = (*REQUIRED_COLUMNS, "top_maps.npy", "summary.json", "meta.json")


class ReportInputError(ValueError):
    """A result directory is missing a file or holds a file that does not follow docs/outputs.md."""


def ordered_categories(categories: Iterable[str]) -> list[str]:
    """The given categories in the paper's order; unknown ones follow, alphabetically."""
    present = set(categories)
    return [c for c in CATEGORY_ORDER if c in present] + sorted(present - set(CATEGORY_ORDER))


def slugify(text: str) -> str:
    """A URL path segment for ``text``: letters, digits, ``.``, ``_`` and ``-`` only."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-.")
    return slug or "x"


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers numerically (``features.2`` before ``features.10``)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def read_result(directory: Path, files: Sequence[str], command: str) -> dict:
    """The ``meta.json`` of a result directory of ``unitscope COMMAND``, once every one of ``files`` is there."""
    for name in files:
        if not (directory / name).is_file():
            raise ReportInputError(f"{directory / name} not found: {directory} is not the output of `unitscope {command}`")
    return read_json(directory / "meta.json")


def read_table(path: Path, columns: Sequence[str], **options) -> pd.DataFrame:
    """A result's CSV table (``pandas.read_csv`` ``options``), refused unless its columns are ``columns``."""
    frame = pd.read_csv(path, **options)
    if list(frame.columns) != list(columns):
        raise ReportInputError(f"{path}: expected the columns {','.join(columns)}")
    return frame


def layer_key(meta: dict, taken: Mapping[tuple[str, str], object], directory: Path, what: str) -> tuple[str, str]:
    """The (model, layer) of a per-layer result, refused when ``taken`` already has one (``what``: its name)."""
    key = (str(meta["model"]), str(meta["layer"]))
    if key in taken:
        raise ReportInputError(f"{directory}: a second {what} of {key[0]} · {key[1]}; give one per model and layer")
    return key


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportInputError(f"{path}: cannot read JSON ({exc}); re-run the stage that writes it") from exc


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ReportInputError(f"{path} is missing; re-run `unitscope dissect` for this layer")
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values={"score": [""], "iou": [""]})
    except (OSError, ValueError) as exc:
        raise ReportInputError(f"{path}: cannot parse CSV ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS[path.name] if c not in frame.columns]
    if missing:
        raise ReportInputError(f"{path}: missing column(s) {', '.join(missing)} (schema in docs/outputs.md)")
    return frame


@dataclass
class Run:
    """One dissected (model, layer, rotation): the files of one result directory."""

    path: Path
    meta: dict
    summary: dict
    slug: str = ""

    @property
    def model(self) -> str:
        return str(self.meta["model"])

    @property
    def layer(self) -> str:
        return str(self.meta["layer"])

    @property
    def units(self) -> int:
        return int(self.meta["units"])

    @property
    def iou_threshold(self) -> float:
        return float(self.meta["iou_threshold"])

    @property
    def tags(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.meta.get("tags") or {}).items()}

    @property
    def rotation(self) -> dict | None:
        return self.meta.get("rotation") or None

    @property
    def checkpoint(self) -> dict:
        """What the checkpoint file the weights came from records about itself (iteration, seed, val_accuracy,
        architecture; empty for weights that are not a checkpoint file)."""
        return self.meta.get("checkpoint") or {}

    @property
    def alpha(self) -> float:
        """Rotation power α (0 for the unrotated basis)."""
        return float(self.rotation["alpha"]) if self.rotation else 0.0

    @property
    def categories(self) -> list[str]:
        return ordered_categories(self.meta["categories"])

    @property
    def title(self) -> str:
        """``model · layer`` plus the rotation or the sweep's quantile, as headings show it."""
        sweep = f" · τ = {self.tags['quantile']}" if "quantile" in self.tags else ""
        return f"{self.model} · {self.layer}" + (f" · {self.rotation_text}" if self.rotation else "") + sweep

    @property
    def rotation_text(self) -> str:
        if not self.rotation:
            return "original basis"
        seed = self.rotation.get("seed")
        return f"rotated α = {self.alpha:g}" + (f" (seed {seed})" if seed is not None else "")

    @property
    def basis_key(self) -> tuple:
        """Runs sharing this key are the same network and layer seen in different bases."""
        tags = self.tags
        return (self.meta.get("model_spec", self.model), self.layer, tags.get("weights"), tags.get("iteration"),
                tags.get("quantile"))

    @property
    def variant(self) -> bool:
        """A run of an experiment on a layer shown elsewhere: a rotated basis, a threshold-sweep run (tag
        ``quantile``), or a repeated training with another seed (tag ``repeat``). Variants are counted on the
        comparison page and have no pages of their own."""
        return bool(self.rotation) or "quantile" in self.tags or "repeat" in self.tags

    @property
    def quantile(self) -> float:
        """The top quantile τ of the run's thresholds."""
        return float(self.meta["quantile"])

    @property
    def series(self) -> str:
        return self.tags.get("series") or self.model

    @property
    def group(self) -> str:
        """``series · layer``: the name of the comparisons' group of runs this run belongs to."""
        return f"{self.series} · {self.layer}"

    @cached_property
    def tally(self) -> pd.DataFrame:
        """tally.csv indexed by 1-based unit."""
        frame = _read_csv(self.path / "tally.csv")
        self._check_units(frame, "tally.csv")
        frame["label"] = frame["label"].astype(str)
        return frame.set_index("unit").sort_index()

    @cached_property
    def thresholds(self) -> np.ndarray:
        """float64 (units,): T_u, 0-based."""
        frame = _read_csv(self.path / "thresholds.csv")
        self._check_units(frame, "thresholds.csv")
        return frame.sort_values("unit")["threshold"].to_numpy(dtype=np.float64)

    @cached_property
    def ious(self) -> pd.DataFrame:
        """ious.csv sorted by unit, then IoU descending (as written)."""
        frame = _read_csv(self.path / "ious.csv")
        frame["label"] = frame["label"].astype(str)
        return frame.sort_values(["unit", "iou", "label"], ascending=[True, False, True], kind="stable")

    @cached_property
    def top_images(self) -> pd.DataFrame:
        """top_images.csv sorted by (unit, rank)."""
        frame = _read_csv(self.path / "top_images.csv")
        return frame.sort_values(["unit", "rank"], kind="stable").reset_index(drop=True)

    @property
    def top_maps_path(self) -> Path:
        return self.path / "top_maps.npy"

    def top_maps(self) -> np.ndarray:
        """float32 (units, k, h, w) memory map of the top images' raw activation maps."""
        try:
            maps = np.load(self.top_maps_path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise ReportInputError(f"{self.top_maps_path}: cannot read ({exc})") from exc
        if maps.ndim != 4 or maps.shape[0] != self.units:
            raise ReportInputError(
                f"{self.top_maps_path}: shape {maps.shape} is not (units={self.units}, k, h, w)"
            )
        return maps

    def is_detector(self, score: float) -> bool:
        """The paper's detector rule: best IoU strictly above the threshold."""
        return bool(score > self.iou_threshold)

    @cached_property
    def null_levels(self) -> dict[str, float] | None:
        """Each label's null level from ``null.csv`` (docs/engine.md, Significance); None without a null."""
        path = self.path / "null.csv"
        if not path.is_file():
            return None
        try:
            return read_null_levels(path)
        except ValueError as error:
            raise ReportInputError(f"{error} (schema in docs/outputs.md)") from None

    def is_significant(self, label: str, iou: float) -> bool | None:
        """A detector whose IoU also beats its label's null level; None when the run has no null."""
        levels = self.null_levels
        if levels is None:
            return None
        return self.is_detector(iou) and iou > levels.get(label, 0.0)

    def _check_units(self, frame: pd.DataFrame, name: str) -> None:
        units = sorted(frame["unit"].tolist())
        if units != list(range(1, self.units + 1)):
            raise ReportInputError(
                f"{self.path / name}: units must be 1..{self.units} (meta.json `units`), one row each"
            )


@dataclass
class Collection:
    """Everything the report shows: the runs and the provenance records found next to them."""

    runs: list[Run]
    provenance: list[tuple[Path, dict]] = field(default_factory=list)

    def rotations_of(self, run: Run) -> list[Run]:
        """Every run of the same network and layer in another basis, by α."""
        return [r for r in self.runs if r.basis_key == run.basis_key and r is not run]


def _validate_meta(path: Path, meta: dict) -> None:
    kind = meta.get("kind", "dissection")  # results written before kinds existed are dissections
    if kind != "dissection":
        raise ReportInputError(f"{path}: a result of kind {kind!r}; the report shows dissection results")
    required = ("model", "layer", "units", "categories", "iou_threshold")
    missing = [key for key in required if key not in meta]
    if missing:
        raise ReportInputError(f"{path}: missing key(s) {', '.join(missing)} (schema in docs/outputs.md)")
    rotation = meta.get("rotation")
    if rotation and "alpha" not in rotation:
        raise ReportInputError(f"{path}: `rotation` must be null or hold `alpha`")
    for name in RESULT_FILES:
        if not (path.parent / name).is_file():
            raise ReportInputError(f"{path.parent / name} is missing; re-run `unitscope dissect` for this layer")


def _run_slug(run: Run) -> str:
    layer = slugify(run.layer)
    if run.rotation:
        seed = run.rotation.get("seed")
        layer += f"~rot{run.alpha:g}" + (f"s{seed}" if seed is not None else "")
    if "quantile" in run.tags:
        layer += f"~tau{slugify(run.tags['quantile'])}"
    return f"{slugify(run.model)}/{layer}"


def result_directories(roots: Sequence[str | Path]) -> tuple[dict[str, list[Path]], list[Path]]:
    """The result directories given (a root holding ``meta.json``) or found below ``roots``, by their
    ``meta.json`` ``kind`` (results written before kinds existed are dissections), and the
    ``provenance.json`` files found below the roots."""
    by_kind: dict[str, list[Path]] = {}
    provenance: list[Path] = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise ReportInputError(f"--results {root}: not a directory")
        metas = [m for m in sorted(root.rglob("meta.json")) if not _hidden(m.relative_to(root))]
        if not metas:
            raise ReportInputError(f"--results {root}: no meta.json below it; point it at `unitscope dissect` output")
        for meta_path in metas:
            kind = read_json(meta_path).get("kind", "dissection")
            if meta_path.parent not in by_kind.get(kind, []):
                by_kind.setdefault(kind, []).append(meta_path.parent)
        provenance += [p for p in sorted(root.rglob("provenance.json"))
                       if p not in provenance and not _hidden(p.relative_to(root))]
    return by_kind, provenance


def _hidden(path: Path) -> bool:
    """Inside a hidden directory: work in progress or left by an interrupted run (``unitscope.io``)."""
    return any(part.startswith(".") for part in path.parts[:-1])


def collect(roots: Sequence[str | Path], provenance_files: Sequence[str | Path] = ()) -> Collection:
    """Validate the dissection result directories given as or found below ``roots``, with the
    ``provenance.json`` files below them and the ``provenance_files`` given (each record once)."""
    by_kind, found = result_directories(roots)
    records = {path.resolve(): path for path in [*map(Path, provenance_files), *found]}
    provenance = [(path, read_json(path)) for path in records.values()]
    runs: list[Run] = []
    seen_dirs: set[Path] = set()
    for directory in (d for directories in by_kind.values() for d in directories):
        if directory.resolve() in seen_dirs:
            continue
        seen_dirs.add(directory.resolve())
        meta = read_json(directory / "meta.json")
        _validate_meta(directory / "meta.json", meta)  # refuses kinds other than dissection
        runs.append(Run(path=directory, meta=meta, summary=read_json(directory / "summary.json")))
    runs.sort(key=lambda r: (natural_key(r.model), natural_key(r.layer), r.alpha, str(r.path)))
    slugs: dict[str, Run] = {}
    for run in runs:
        run.slug = _run_slug(run)
        if run.slug in slugs:
            raise ReportInputError(
                f"{slugs[run.slug].path} and {run.path} are both {run.title}; "
                "give one another name with `unitscope dissect --name`"
            )
        slugs[run.slug] = run
    return Collection(runs=runs, provenance=provenance)
