"""What each page shows, computed from the collected runs (no I/O, no HTML).

Paths returned here are site-relative POSIX paths; templates turn them into page-relative links.
Units are 1-based in text and page names, 0-based in strip file names (as NetDissect names images).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pandas as pd

from unitscope.broden.format import IMAGE_LEVEL_CATEGORIES
from unitscope.summary import display_name, summarize
from unitscope.report.collect import CATEGORY_ORDER, Collection, ReportInputError, Run, natural_key, slugify

TOP_PER_CATEGORY = 5
PLURALS = {"object": "objects", "scene": "scenes", "part": "parts", "material": "materials",
           "texture": "textures", "color": "colors"}
#: Units listed on a concept page besides its detectors (closest non-detectors by IoU).
CONCEPT_EXTRA_ROWS = 50


def layer_path(run: Run) -> str:
    return f"{run.slug}/index.html"


def unit_path(run: Run, unit: int) -> str:
    """Page of 1-based ``unit``."""
    return f"{run.slug}/unit-{unit:04d}.html"


def strip_path(run: Run, unit: int) -> str:
    """Strip image of 1-based ``unit``; the file name is 0-based like NetDissect's images."""
    return f"{run.slug}/strips/{unit - 1:04d}.webp"


@dataclass
class UnitInfo:
    """One unit of one run, as its page, its layer card and the search index show it."""

    unit: int
    label: str  # raw label name, "" when the best IoU is 0
    category: str
    score: float
    threshold: float
    detector: bool
    significant: bool | None  # the detector's IoU beats its label's null level (None: the run has no null)
    best: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # category -> [(label, iou)]
    images: list[tuple[int, str, float]] = field(default_factory=list)  # (image_index, image, max activation)

    @property
    def display(self) -> str:
        return display_name(self.label) if self.label else "(no label)"


def unit_infos(run: Run) -> list[UnitInfo]:
    """Every unit of ``run`` in unit order, with its top labels per category and its top images."""
    tally = run.tally
    best: dict[int, dict[str, list[tuple[str, float]]]] = defaultdict(dict)
    top = run.ious[run.ious["iou"] > 0].groupby(["unit", "category"], sort=False).head(TOP_PER_CATEGORY)
    for unit, category, label, iou in zip(top["unit"], top["category"], top["label"], top["iou"]):
        best[int(unit)].setdefault(str(category), []).append((str(label), float(iou)))
    images: dict[int, list[tuple[int, str, float]]] = defaultdict(list)
    frame = run.top_images
    for unit, index, image, activation in zip(
        frame["unit"], frame["image_index"], frame["image"], frame["max_activation"]
    ):
        images[int(unit)].append((int(index), str(image), float(activation)))
    infos = []
    for unit, row in zip(tally.index, tally.itertuples(index=False)):
        score = float(row.score) if row.score == row.score else 0.0
        per_category = {c: best[unit][c] for c in CATEGORY_ORDER if c in best[unit]}
        per_category.update({c: v for c, v in sorted(best[unit].items()) if c not in per_category})
        infos.append(
            UnitInfo(
                unit=int(unit),
                label=str(row.label) if score > 0 else "",
                category=str(row.category) if score > 0 else "",
                score=score,
                threshold=float(run.thresholds[unit - 1]),
                detector=run.is_detector(score),
                significant=run.is_significant(str(row.label), score) if score > 0 else (
                    None if run.null_levels is None else False),
                best=per_category,
                images=images[int(unit)],
            )
        )
    return infos


def concept_bars(units: list[UnitInfo]) -> pd.DataFrame:
    """Bar-graph rows of a layer: concepts that are some detector's top label (spec §6.1 ordering).

    A concept's category is the most common top category among its units (ties: paper order).
    """
    groups: dict[str, list[UnitInfo]] = defaultdict(list)
    for info in units:
        if info.detector:
            groups[info.label].append(info)
    rows = []
    rank = {c: i for i, c in enumerate(CATEGORY_ORDER)}
    for label, members in groups.items():
        counts = Counter(m.category for m in members)
        category = min(counts, key=lambda c: (-counts[c], rank.get(c, len(rank)), c))
        rows.append({"label": label, "concept": display_name(label), "category": category,
                     "units": len(members), "best_iou": max(m.score for m in members)})
    frame = pd.DataFrame(rows, columns=["label", "concept", "category", "units", "best_iou"])
    frame["rank"] = frame["category"].map(lambda c: rank.get(c, len(rank)))
    frame = frame.sort_values(["rank", "units", "best_iou", "label"], ascending=[True, False, False, True])
    return frame.drop(columns="rank").reset_index(drop=True)


def group_text(bars: pd.DataFrame) -> str:
    """``"4 objects, 1 scene"``: concepts per category of a layer's bar graph."""
    counts = bars.groupby("category", sort=False)["label"].count()
    return ", ".join(f"{n} {c if n == 1 else PLURALS.get(c, c)}" for c, n in counts.items())


def card_order(units: list[UnitInfo], bars: pd.DataFrame) -> list[UnitInfo]:
    """Layer-page default order: detectors in bar-graph order (then by IoU), the rest by IoU."""
    position = {label: i for i, label in enumerate(bars["label"])}
    return sorted(
        units,
        key=lambda u: (0, position[u.label], -u.score, u.unit) if u.detector else (1, 0, -u.score, u.unit),
    )


def category_counts(summary: dict, key: str) -> dict[str, int]:
    """Per-category numbers of a summary.json entry (``key`` is a dotted path)."""
    value = summary
    for part in key.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return {str(k): int(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _counts(summary: dict) -> dict:
    per_category = category_counts(summary, "unique_per_category.per_category")
    return {
        "unique_pixel": sum(v for k, v in per_category.items() if k not in IMAGE_LEVEL_CATEGORIES),
        "detectors": int(summary.get("detectors", 0)),
        "detectors_per_category": category_counts(summary, "detectors_per_category"),
        "unique_per_category": int(summary.get("unique_per_category", {}).get("all", 0)),
        "unique_per_category_by": category_counts(summary, "unique_per_category.per_category"),
        "unique_top_label": int(summary.get("unique_top_label", {}).get("all", 0)),
        "unique_top_label_by": category_counts(summary, "unique_top_label.per_category"),
    }


def run_row(run: Run) -> dict:
    """The index table's row of one run, from its summary.json: the significant counts where the run has a
    permutation null (``significant``; ``raw`` always holds the raw ones), else the raw counts."""
    summary = run.summary
    significant = summary.get("significant")
    chance = (significant or {}).get("chance_detectors") or {}
    passed = (significant or {}).get("chance_significant") or {}
    return {
        "run": run,
        "units": int(summary.get("units", run.units)),
        "significant": significant is not None,
        **_counts(headline(run)),
        "raw": _counts(summary),
        "chance_detectors": chance.get("mean"),
        "chance_significant": passed.get("mean"),
    }


@dataclass
class ConceptEntry:
    """One unit listed on a concept page."""

    run: Run
    unit: int
    iou: float
    detector: bool
    top_label: bool
    significant: bool | None  # None: the run has no permutation null


@dataclass
class Concept:
    name: str
    category: str
    slug: str
    entries: list[ConceptEntry]

    @property
    def display(self) -> str:
        return display_name(self.name)

    @property
    def detectors(self) -> int:
        return sum(e.detector for e in self.entries)

    @property
    def significant(self) -> int | None:
        """Detectors whose IoU beats the concept's null level (None when no run listed has a null)."""
        if all(e.significant is None for e in self.entries):
            return None
        return sum(bool(e.significant) for e in self.entries)


def concept_path(concept: Concept) -> str:
    return f"concepts/{concept.slug}.html"


def concepts(collection: Collection, infos: dict[str, list[UnitInfo]]) -> dict[str, Concept]:
    """Every label shown on some unit page, with the units that detect it (per-category convention); runs
    without ``infos`` (rotated runs, which have no pages) are left out.

    A unit detects concept c of category k when c is its best label in k with IoU above the run's
    threshold; besides the detectors, the page lists the closest other units (c in their top five).
    """
    categories: dict[str, Counter] = defaultdict(Counter)
    entries: dict[str, list[ConceptEntry]] = defaultdict(list)
    for run in collection.runs:
        for info in infos.get(run.slug, ()):
            for category, labels in info.best.items():
                for position, (label, iou) in enumerate(labels):
                    categories[label][category] += 1
                    detector = position == 0 and run.is_detector(iou)
                    significant = run.is_significant(label, iou)
                    entries[label].append(ConceptEntry(run, info.unit, iou, detector, label == info.label,
                                                       None if significant is None else detector and significant))
    result: dict[str, Concept] = {}
    used: set[str] = set()
    for name in sorted(entries):
        rows = sorted(entries[name], key=lambda e: (not e.detector, -e.iou, e.run.slug, e.unit))
        detectors = [e for e in rows if e.detector]
        rows = detectors + [e for e in rows if not e.detector][:CONCEPT_EXTRA_ROWS]
        counts = categories[name]
        rank = {c: i for i, c in enumerate(CATEGORY_ORDER)}
        category = min(counts, key=lambda c: (-counts[c], rank.get(c, len(rank)), c))
        slug = base = slugify(name)
        n = 2
        while slug.lower() in used:
            slug, n = f"{base}-{n}", n + 1
        used.add(slug.lower())
        result[name] = Concept(name, category, slug, rows)
    return result


def layer_order(collection: Collection) -> dict[str, int]:
    """Position of every layer within its model (natural order of layer names)."""
    layers: dict[str, set[str]] = defaultdict(set)
    for run in collection.runs:
        layers[run.model].add(run.layer)
    return {f"{m}\0{layer}": i for m, names in layers.items() for i, layer in enumerate(sorted(names, key=natural_key))}


def final_runs(collection: Collection) -> list[Run]:
    """The unrotated runs of final weights: of the runs with one (series, layer, weights tag), the one without
    an ``iteration`` tag or else with the highest (a pipeline-trained model's last checkpoint)."""
    final: dict[tuple, Run] = {}
    for run in collection.runs:
        if run.variant:
            continue
        key = (run.series, run.layer, run.tags.get("weights", ""))
        if key not in final or _training_progress(run) > _training_progress(final[key]):
            final[key] = run
    chosen = {id(run) for run in final.values()}
    return [run for run in collection.runs if id(run) in chosen]


def headline(run: Run) -> dict:
    """The counts a run is summarised by: the significant ones where it has a permutation null, else the raw."""
    return run.summary.get("significant") or run.summary


def interpretability_rows(collection: Collection) -> pd.DataFrame:
    """Fraction of detector units per category for every final unrotated run (the paper's layer figure)."""
    order = layer_order(collection)
    rows = []
    for run in final_runs(collection):
        counts = category_counts(headline(run), "detectors_per_category")
        for category in run.categories:
            rows.append({"model": run.model, "layer": run.layer, "order": order[f"{run.model}\0{run.layer}"],
                         "category": category, "fraction": counts.get(category, 0) / max(run.units, 1)})
    return pd.DataFrame(rows, columns=["model", "layer", "order", "category", "fraction"])


def unique_rows(collection: Collection) -> pd.DataFrame:
    """Unique detectors per category (per-category convention) of every final unrotated run, by model."""
    order = layer_order(collection)
    rows = []
    for run in final_runs(collection):
        counts = category_counts(headline(run), "unique_per_category.per_category")
        rows += [{"model": run.model, "layer": run.layer, "order": order[f"{run.model}\0{run.layer}"],
                  "category": c, "unique": counts.get(c, 0)} for c in run.categories]
    return pd.DataFrame(rows, columns=["model", "layer", "order", "category", "unique"])


#: The counts a comparison shows: significant (runs with a permutation null) and raw.
MEASURES = ("significant", "raw")


def _unique_long(run: Run, **extra) -> list[dict]:
    """Unique detectors of one run per category and in all (per-category convention), for each measure it has."""
    rows = []
    for measure, summary in zip(MEASURES, (run.summary.get("significant"), run.summary)):
        if not summary:
            continue
        counts = category_counts(summary, "unique_per_category.per_category")
        per = [{**extra, "measure": measure, "category": c, "unique": counts.get(c, 0)} for c in run.categories]
        rows += [{**extra, "measure": measure, "category": "all", "unique": sum(r["unique"] for r in per)}, *per]
    return rows


def rotation_rows(collection: Collection) -> pd.DataFrame:
    """Unique detectors against α (one row per run, measure and category), for every network/layer dissected
    in rotated bases; ``seed`` is the rotation's. The unrotated run stands at α = 0 where no rotated run
    with α = 0 exists."""
    rows = []
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in collection.runs:
        groups[run.basis_key].append(run)
    for runs in groups.values():
        if not any(r.rotation for r in runs) or "quantile" in runs[0].tags:
            continue
        group = runs[0].group
        rotated_at_zero = any(r.rotation and r.alpha == 0 for r in runs)
        for run in runs:
            if run.rotation or not rotated_at_zero:
                seed = run.rotation.get("seed") if run.rotation else None
                rows += _unique_long(run, group=group, alpha=run.alpha, seed=-1 if seed is None else int(seed))
    return pd.DataFrame(rows, columns=["group", "alpha", "seed", "measure", "category", "unique"])


def weights_rows(collection: Collection) -> pd.DataFrame:
    """Unique detectors of the final weights of each ``weights`` tag, grouped by series and layer."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in final_runs(collection):
        if run.tags.get("weights"):
            groups[run.group].append(run)
    rows = []
    for group, runs in groups.items():
        if len({r.tags["weights"] for r in runs}) < 2:
            continue
        for run in runs:
            rows += _unique_long(run, group=group, weights=run.tags["weights"])
    return pd.DataFrame(rows, columns=["group", "weights", "measure", "category", "unique"])


def _training_progress(run: Run) -> float:
    """A run's ``iteration`` tag as a number; a run without one holds final weights (infinity)."""
    try:
        return float(run.tags["iteration"])
    except (KeyError, ValueError):
        return math.inf


def iteration_rows(collection: Collection) -> pd.DataFrame:
    """Unique detectors over the ``iteration`` tag, grouped by series and layer (≥ 2 iterations)."""
    rows = []
    for run in collection.runs:
        iteration = run.tags.get("iteration")
        if run.variant or not iteration:
            continue
        try:
            value = float(iteration)
        except ValueError:
            continue
        rows += _unique_long(run, group=run.group, iteration=value)
    table = pd.DataFrame(rows, columns=["group", "iteration", "measure", "category", "unique"])
    curves = table.groupby("group")["iteration"].transform("nunique") > 1  # a single checkpoint is no curve
    return table[curves].reset_index(drop=True)


#: The IoU thresholds of the threshold comparison (Zhou et al. 2018 vary it around the paper's 0.04).
IOU_CUTS = (0.02, 0.04, 0.06)


def _layer_long(run: Run, summary: dict, **extra) -> list[dict]:
    """Unique detectors of all categories together (per-category convention) of one run's layer, per measure."""
    measures = zip(MEASURES, (summary.get("significant"), summary))
    return [{**extra, "measure": measure, "layer": run.layer, "unique": int(counts["unique_per_category"]["all"])}
            for measure, counts in measures if counts]


def quantile_rows(collection: Collection) -> pd.DataFrame:
    """Unique detectors against the activation quantile τ, one line per layer of a model: each final run at its
    own τ with the threshold-sweep runs (tag ``quantile``) of the same network and layer."""
    rows = []
    for final in final_runs(collection):
        sweep = [r for r in collection.runs if "quantile" in r.tags and not r.rotation
                 and r.basis_key[:4] == final.basis_key[:4]]
        for run in [final, *sweep] if sweep else []:
            rows += _layer_long(run, run.summary, group=run.model, quantile=run.quantile)
    return pd.DataFrame(rows, columns=["group", "quantile", "measure", "layer", "unique"])


def iou_rows(collection: Collection) -> pd.DataFrame:
    """Unique detectors against the IoU threshold (:data:`IOU_CUTS`), one line per layer of a model, counted
    again from each final run's ``tally.csv`` (and ``null.csv``: the chance levels do not depend on the cut)."""
    rows = []
    for run in final_runs(collection):
        for cut in IOU_CUTS:
            summary = summarize(run.tally, cut, levels=run.null_levels)
            rows += _layer_long(run, summary, group=run.model, iou=cut)
    return pd.DataFrame(rows, columns=["group", "iou", "measure", "layer", "unique"])


#: How the options of a checkpoint's recorded architecture read in the conditions comparison.
CONDITION_NAMES = {"batchnorm": "batch norm", "dropout": "dropout", "width": "width ×"}


def _condition_value(value: bool | float) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}"


def _options_text(options: tuple[tuple[str, bool | float], ...]) -> str:
    """``batch norm on, dropout 0, width × 1``."""
    return ", ".join(f"{CONDITION_NAMES.get(k, k)} {_condition_value(v)}" for k, v in options)


def _final_checkpoints(collection: Collection) -> dict[tuple, Run]:
    """The unrotated, unswept runs of final checkpoints that record an architecture of numeric options, by (layer,
    dataset, training length, architecture, seed). A record with its training length (``iterations``) counts at
    that iteration only; an older one at its highest iteration. Networks trained on permuted labels (the saliency
    sanity checks' data randomisation) are no training condition and are left out."""
    final: dict[tuple, Run] = {}
    for run in collection.runs:
        record = run.checkpoint
        architecture = record.get("architecture")
        if run.rotation or "quantile" in run.tags or not isinstance(architecture, dict) or not all(
                isinstance(v, (bool, int, float)) for v in architecture.values()) or record.get("labels", "true") != "true":
            continue
        iterations = record.get("iterations")
        if iterations is not None and record.get("iteration") != iterations:
            continue
        key = (run.layer, (run.meta.get("dataset") or {}).get("index_sha256"), iterations,
               tuple(sorted(architecture.items())), record.get("seed"))
        if key in final and iterations is not None:
            raise ReportInputError(f"{final[key].path} and {run.path} are the same training (architecture, seed, "
                                   "length, dataset) dissected twice; leave one out")
        if key not in final or record.get("iteration", 0) > final[key].checkpoint.get("iteration", 0):
            final[key] = run
    return final


def condition_rows(collection: Collection) -> pd.DataFrame:
    """Unique detectors of networks trained under different conditions (Zhou et al., TPAMI 2018): final checkpoints
    whose recorded ``architecture`` differs from another's in exactly one option form that option's experiment
    (group ``option · layer``, with the other options where one layer has several experiments of an option), one
    point per value of the option with the spread over training seeds (``seed``) and each checkpoint's held-out
    accuracy (``accuracy``). Seeds of an architecture in no experiment are one point of their own (group
    ``training seeds · layer``)."""
    final = _final_checkpoints(collection)
    rows = []
    used: set[int] = set()
    options = sorted({option for key in final for option, _ in key[3]})
    for option in options:
        experiments: dict[tuple, list[tuple]] = defaultdict(list)
        for key, run in final.items():
            layer, dataset, iterations, architecture, seed = key
            others = tuple(item for item in architecture if item[0] != option)
            experiments[(layer, dataset, iterations, others)].append((dict(architecture).get(option), seed, run))
        experiments = {k: points for k, points in experiments.items() if len({value for value, _, _ in points}) > 1}
        per_layer = Counter(layer for layer, *_ in experiments)
        for (layer, _, _, others), points in experiments.items():
            group = f"{CONDITION_NAMES.get(option, option)} · {layer}"
            if per_layer[layer] > 1:
                group += f" ({_options_text(others)})"
            for value, seed, run in sorted(points, key=lambda p: (p[0], str(p[1]))):
                used.add(id(run))
                rows += _unique_long(run, group=group, condition=_condition_value(value), seed=seed,
                                     accuracy=run.checkpoint.get("val_accuracy"))
    seeds: dict[tuple, list[tuple]] = defaultdict(list)
    for key, run in final.items():
        if id(run) not in used:
            seeds[key[:4]].append((key[4], run))
    for (layer, _, _, architecture), runs in seeds.items():
        if len(runs) < 2:
            continue
        for seed, run in sorted(runs, key=lambda p: str(p[0])):
            rows += _unique_long(run, group=f"training seeds · {layer}", condition=_options_text(architecture),
                                 seed=seed, accuracy=run.checkpoint.get("val_accuracy"))
    return pd.DataFrame(rows, columns=["group", "condition", "seed", "accuracy", "measure", "category", "unique"])
