"""The dissection section of the report: overview, layer, unit and concept pages, comparisons, provenance.

Layers in their original basis get layer, unit and concept pages; a variant run (a rotated basis, which a
rotation series holds thousands of units of per seed, or another activation quantile) is counted on the
comparison page, and its tables are downloadable from the provenance page. Strips (each unit's top images with its mask) are rendered by
worker processes while the pages are written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from unitscope.progress import progress
from unitscope.report import charts, pages
from unitscope.report.collect import (
    RESULT_FILES,
    Collection,
    ReportInputError,
    Run,
    collect,
    natural_key,
    ordered_categories,
)
from unitscope.report.reference import Reference, load_reference
from unitscope.report.search import search_rows
from unitscope.report.sections import NavLink, Panels, Section, SiteInputs
from unitscope.report.site import SiteWriter
from unitscope.report.strips import StripJob, StripRenderer, strip_width, tile_shape

#: Units per strip-rendering task (small enough to balance, large enough to amortise the overhead).
STRIP_CHUNK = 64
#: The files of a variant run (rotated, threshold sweep) the provenance page offers (it has no pages).
VARIANT_DOWNLOADS = ("tally.csv", "thresholds.csv", "summary.json", "meta.json", "null.csv")
SETTINGS_KEYS = ("quantile", "quantile_level", "iou_threshold", "presence", "normalize", "top_k",
                 "image_size", "map_size", "label_size", "rotation")


class DissectionSection(Section):
    """Network Dissection results: the overview, layer, unit and concept pages, comparisons, provenance."""

    kind = "dissection"

    def __init__(self, directories: Sequence[Path], inputs: SiteInputs) -> None:
        from unitscope.broden.reader import BrodenDataset

        super().__init__(directories, inputs)
        self.collection = collect(directories, inputs.provenance)
        self.reference = load_reference(inputs.reference) if inputs.reference else None
        self.data = BrodenDataset(inputs.dataset)
        _check_dataset(self.collection, self.data)
        self.tile_height = inputs.tile_height or max(16, self.data.image_size[0] // 2)
        for run in self.collection.runs:
            digest = (run.meta.get("dataset") or {}).get("index_sha256")
            if digest and digest != self.data.index_sha256():
                tqdm.write(f"warning: {run.path}/meta.json: dataset index_sha256 differs from --dataset {inputs.dataset}")
        self.paged = [run for run in self.collection.runs if not run.variant]
        self.infos = {run.slug: pages.unit_infos(run) for run in self.paged}
        self.unit_pages = {(run.model, run.layer): (run, {info.unit for info in self.infos[run.slug]})
                           for run in self.paged}
        for run in self.paged:
            _check_maps(run, self.infos[run.slug])

    def nav(self) -> list[NavLink]:
        return [NavLink("Overview", "index.html", "index"), NavLink("Concepts", "concepts/index.html", "concepts"),
                NavLink("Comparisons", "compare.html", "compare")]

    def write_pages(self, site: SiteWriter, panels: Panels) -> None:
        _build(self.collection, self.reference, self.inputs.citation, self.infos, self.data,
               Path(self.inputs.dataset), site, self.tile_height, self.inputs.workers, panels)

    def unit_page(self, model: str, layer: str, unit: int) -> str | None:
        run, units = self.unit_pages.get((model, layer), (None, ()))
        return pages.unit_path(run, unit) if unit in units else None

    def search_rows(self) -> Mapping[str, list[list]]:
        concepts = pages.concepts(self.collection, self.infos)
        return search_rows(concepts, [(run, info) for run in self.paged for info in self.infos[run.slug]])


@dataclass(frozen=True)
class StripSize:
    width: int
    height: int
    units: frozenset[int]  # 1-based units that have a strip


def _check_dataset(collection: Collection, dataset) -> None:
    """Fail early when the top images of the results are not the dataset's rows."""
    images: dict[int, str] = {}
    for run in collection.runs:
        frame = run.top_images
        for index, image in zip(frame["image_index"].tolist(), frame["image"].tolist()):
            images.setdefault(int(index), str(image))
    images_root = Path(dataset.root) / "images"
    for index, image in sorted(images.items()):
        if not 0 <= index < len(dataset):
            raise ReportInputError(
                f"top_images.csv: image_index {index} is outside --dataset {dataset.root} ({len(dataset)} images)"
            )
        found = Path(dataset.image_path(index))
        if found != images_root / image:
            raise ReportInputError(
                f"top_images.csv: image_index {index} is {image!r} in the results but "
                f"{found} in --dataset {dataset.root}; pass the dataset the results were computed on"
            )


def _strip_jobs(run: Run, infos: list[pages.UnitInfo], out: Path) -> list[StripJob]:
    units = [u for u in infos if u.images]
    jobs = []
    for start in range(0, len(units), STRIP_CHUNK):
        chunk = units[start : start + STRIP_CHUNK]
        jobs.append(
            StripJob(
                top_maps=str(run.top_maps_path),
                units=tuple(u.unit - 1 for u in chunk),
                thresholds=tuple(u.threshold for u in chunk),
                image_indices=tuple(tuple(i for i, _, _ in u.images) for u in chunk),
                out_paths=tuple(str(out / pages.strip_path(run, u.unit)) for u in chunk),
            )
        )
    return jobs


def _check_maps(run: Run, infos: list[pages.UnitInfo]) -> None:
    k = run.top_maps().shape[1]
    deepest = max((len(u.images) for u in infos), default=0)
    if deepest > k:
        raise ReportInputError(f"{run.top_maps_path}: holds {k} maps per unit but top_images.csv ranks up to {deepest}")


@dataclass(frozen=True)
class Comparison:
    """One chart of the comparison page: runs that differ in one respect, and the column that says how.

    ``rows`` is a long table (group, ``x``, measure, category, unique; ``seed`` where several runs give one
    point): the chart draws the mean over those runs with their spread.
    """

    id: str
    title: str
    rows: pd.DataFrame
    chart: Callable[[pd.DataFrame], dict | None]
    x: str
    text: str
    caption: str
    empty: str


def comparisons(collection: Collection) -> list[Comparison]:
    """The comparisons the report draws: rotated bases, trained vs untrained, over training."""
    return [
        Comparison("rotation", "Rotated bases", pages.rotation_rows(collection), charts.rotation_chart, "alpha",
                   "Interpretability is not a property of the representation alone: rotating the basis of a layer "
                   "(α = 0 original units, α = 1 a random orthogonal basis) keeps its information but changes how "
                   "many units align with concepts. Bau et al. (CVPR 2017, Fig. 5) found that the unique detectors "
                   "of AlexNet conv5 fall steadily with α, to a small fraction at α = 1: the network's own units are "
                   "far more interpretable than random directions of the same space. A rotation can only re-mix the "
                   "directions a layer actually uses, so a layer whose variance spreads over few directions "
                   "(a low participation ratio, below) is a control, not a test of this claim.",
                   "Unique detectors (per-category convention; black: all categories) against the rotation power α, "
                   "mean ± sd over the rotation seeds.",
                   "No run with a rotated basis (dissect with --rotation-alpha)."),
        Comparison("weights", "Trained vs untrained", pages.weights_rows(collection), charts.weights_chart, "weights",
                   "The same architecture with trained and with random (untrained) weights, grouped by their series "
                   "tag.",
                   "Unique detectors per category for each value of the weights tag.",
                   "No series with both trained and untrained runs (tag runs with weights=trained/untrained and "
                   "series=NAME)."),
        Comparison("iterations", "Over training", pages.iteration_rows(collection), charts.iteration_chart,
                   "iteration", "Checkpoints of one training run, tagged with their iteration.",
                   "Unique detectors (black: all categories) over training iterations (logarithmic axis).",
                   "No run tagged with a training iteration (tag runs with iteration=N)."),
        Comparison("conditions", "Training conditions", pages.condition_rows(collection), charts.condition_chart,
                   "condition",
                   "The same network trained the same way with one change, over several training seeds (Zhou et al., "
                   "TPAMI 2018, Sec. 4; networks trained by the pipeline record their architecture in each "
                   "checkpoint). On AlexNet the paper found batch normalisation lowering interpretability (46 unique "
                   "detectors against 79 without), dropout trading object detectors for texture detectors when "
                   "removed, a wider conv5 raising it (120 unique against 91), and repeated trainings giving similar "
                   "totals with a different make-up. The held-out accuracy (mean ± sd over seeds) says whether a "
                   "condition also changed how well the network learned its task.",
                   "Unique detectors (per-category convention; black: all categories) under each condition, mean ± sd "
                   "over the training seeds.",
                   "No networks trained under different conditions (config `models.<name>.train`: batchnorm, "
                   "dropout, width, seeds)."),
        Comparison("quantile", "Activation quantile τ", pages.quantile_rows(collection), charts.quantile_chart,
                   "quantile", "The threshold T_u of every unit is its top-τ activation quantile (the paper: τ = 0.005). "
                   "Zhou et al. (TPAMI 2018) varied τ: the number of unique detectors changes with it, but the "
                   "ranking of layers and networks by interpretability hardly does.",
                   "Unique detectors (per-category convention, all categories) of each layer against τ.",
                   "No threshold-sweep run (config `models.<name>.quantiles`, or dissect with --quantile and "
                   "--tag quantile=τ)."),
        Comparison("iou", "IoU threshold", pages.iou_rows(collection), charts.iou_chart, "iou",
                   "A unit is a detector when its IoU exceeds 0.04; the same results counted at "
                   f"{', '.join(f'{c:g}' for c in pages.IOU_CUTS)} (significant detectors keep their chance levels).",
                   "Unique detectors (per-category convention, all categories) of each layer against the IoU "
                   "threshold.",
                   "No results."),
    ]


#: Columns of a comparison's rows that vary between the runs of one point rather than name the point.
RUN_VALUES = ("unique", "seed", "accuracy")


def comparison_stats(rows: pd.DataFrame) -> pd.DataFrame:
    """The points of a comparison: per value of every column but :data:`RUN_VALUES` (group, x, measure,
    category or layer) the mean of ``unique`` over the runs that give it (rotation or training seeds), their sd
    (0 for one run), count, and mean ± sd."""
    keys = [c for c in rows.columns if c not in RUN_VALUES]
    if rows.empty:
        return pd.DataFrame(columns=[*keys, "mean", "sd", "n", "lo", "hi"])
    stats = rows.groupby(keys, sort=False)["unique"].agg(mean="mean", sd="std", n="count").reset_index()
    stats["sd"] = stats["sd"].fillna(0.0)
    return stats.assign(lo=stats["mean"] - stats["sd"], hi=stats["mean"] + stats["sd"])


def _compare_sections(collection: Collection, panels: Panels) -> list[dict]:
    """Each comparison as the compare page shows it: its chart, the table of its points, and for the rotation
    series the panels other sections put on the rotated layers' pages (their effective dimension)."""
    sections = []
    for comparison in comparisons(collection):
        rows, x = comparison.rows, comparison.x
        repeated = rows[rows.duplicated([c for c in rows.columns if c != "unique"])] if not rows.empty else rows
        if not repeated.empty:  # a point of the chart comes from distinct runs, never from one run twice
            group, value = repeated.iloc[0][["group", x]]
            raise ReportInputError(f"two result directories give the {comparison.title.lower()} point {group}, "
                                   f"{x} = {value}; tag them apart (series=NAME) or leave one out")
        stats = comparison_stats(rows)
        columns, table = [], []
        if not stats.empty:
            lines = "category" if "category" in stats.columns else "layer"
            if lines == "category":
                order = ["all", *ordered_categories(c for c in stats["category"].unique() if c != "all")]
            else:
                order = sorted(stats["layer"].unique(), key=natural_key)
            cells = stats.assign(cell=[_cell(m, sd, n) for m, sd, n in zip(stats["mean"], stats["sd"], stats["n"])])
            pivot = cells.pivot(index=["group", x, "measure"], columns=lines, values="cell")
            runs = stats.groupby(["group", x, "measure"], sort=False)["n"].max()
            pivot = pivot[[c for c in order if c in pivot.columns]].fillna("–" if lines == "layer" else "0")
            pivot["runs"] = runs.reindex(pivot.index).astype(int).astype(str)
            if "accuracy" in rows.columns:
                pivot["held-out accuracy"] = _accuracy_cells(rows, x).reindex(pivot.index.droplevel("measure")).values
            order = {m: i for i, m in enumerate(pages.MEASURES)}
            pivot = pivot.reset_index().sort_values(["group", x, "measure"], key=lambda c: c.map(order)
                                                    if c.name == "measure" else c, kind="stable")
            columns, table = list(pivot.columns), [[_fmt(v) for v in r] for r in pivot.itertuples(index=False)]
        notes: dict[str, list] = {}
        if comparison.id == "rotation":
            rotated = set(rows["group"])
            for run in collection.runs:
                if not run.variant and run.group in rotated and run.group not in notes:
                    notes[run.group] = panels.layer(run.model, run.layer)
        sections.append({
            "id": comparison.id, "title": comparison.title, "text": comparison.text, "caption": comparison.caption,
            "empty": comparison.empty, "spec": comparison.chart(stats), "columns": columns, "rows": table,
            "notes": [(group, found) for group, found in notes.items() if found],
        })
    return sections


def _accuracy_cells(rows: pd.DataFrame, x: str) -> pd.Series:
    """Held-out accuracy per (group, x): mean ± sd over the runs (one value per seed); "–" unless every run has one."""
    runs = rows.drop_duplicates(["group", x, "seed"])
    stats = runs.groupby(["group", x], sort=False)["accuracy"].agg(mean="mean", sd="std", n="count", runs="size")
    return pd.Series(["–" if n < size else f"{m:.3f} ± {sd:.3f}" if n > 1 else f"{m:.3f}"
                      for m, sd, n, size in stats.itertuples(index=False)], index=stats.index)


def _cell(mean: float, sd: float, n: int) -> str:
    return f"{mean:.1f} ± {sd:.1f}" if n > 1 else f"{mean:g}"


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _reference_context(reference: Reference | None) -> dict:
    if reference is None:
        return {"reference": None, "reference_rows": [], "reference_chart": None, "categories_ref": []}
    figure = reference.figure
    rows = []
    for (network, layer), group in figure.groupby(["network", "layer"], sort=False):
        unique = dict(zip(group["category"], group["unique"].astype(int)))
        detectors = dict(zip(group["category"], group["detectors"].astype(int)))
        rows.append({"network": network, "layer": layer, "unique": unique, "detectors": detectors.get("all", 0)})
    per_category = figure[figure["category"] != "all"]
    chart_rows = per_category.assign(network=per_category["network"] + " · " + per_category["layer"])
    return {
        "reference": reference,
        "reference_rows": rows,
        "reference_chart": charts.unique_detectors_bars(
            chart_rows[["network", "category", "unique"]], "Unique detectors per network in the original release"),
        "categories_ref": ordered_categories(per_category["category"]),
    }


def _build(collection: Collection, reference: Reference | None, citation: str | None,
           infos: dict[str, list[pages.UnitInfo]], data, dataset_root: Path, site: SiteWriter,
           tile_height: int, workers: int | None, panels: Panels) -> None:
    tmp = site.root
    # Strips are the slow part: worker processes render them while this process writes the pages.
    strip_sizes: dict[str, StripSize] = {}
    jobs: list[StripJob] = []
    for run in (run for run in collection.runs if run.slug in infos):
        image_size = tuple(data.image_size)
        k = max((len(u.images) for u in infos[run.slug]), default=0)
        strip_sizes[run.slug] = StripSize(
            width=strip_width(image_size, tile_height, k) if k else 0,
            height=tile_shape(image_size, tile_height)[0],
            units=frozenset(u.unit for u in infos[run.slug] if u.images),
        )
        (tmp / run.slug / "strips").mkdir(parents=True, exist_ok=True)
        jobs += _strip_jobs(run, infos[run.slug], tmp)
    with StripRenderer(dataset_root, tile_height, workers) as renderer:
        renderer.submit(jobs)
        _pages(site, collection, reference, citation, infos, strip_sizes, tmp, panels)
        with progress(total=sum(len(job.units) for job in jobs), desc="strips", unit="unit") as bar:
            for count in renderer.results():
                bar.update(count)


def _pages(site: SiteWriter, collection: Collection, reference: Reference | None, citation: str | None,
           infos: dict[str, list[pages.UnitInfo]], strip_sizes: dict[str, StripSize], tmp: Path,
           panels: Panels) -> None:
    concepts = pages.concepts(collection, infos)
    concept_paths = {name: pages.concept_path(c) for name, c in concepts.items()}
    rows = {run.slug: pages.run_row(run) for run in collection.runs if not run.variant}
    categories = ordered_categories(c for run in collection.runs for c in run.categories)

    # Index.
    thresholds = sorted({run.iou_threshold for run in collection.runs})
    site.page(
        "index.html", "index.html", title="Network dissection report", section="index", charts=True,
        rows=list(rows.values()), categories=categories, concept_count=len(concepts),
        significance=any(row["significant"] for row in rows.values()),
        variants=sum(1 for run in collection.runs if run.variant),
        total_units=sum(row["units"] for row in rows.values()), thresholds=" / ".join(f"{t:g}" for t in thresholds),
        layer_chart=charts.interpretability_by_layer(pages.interpretability_rows(collection)),
        unique_chart=charts.unique_by_layer(pages.unique_rows(collection)),
        **_reference_context(reference),
    )

    # Layer and unit pages.
    paged = [run for run in collection.runs if run.slug in infos]
    with progress(total=sum(run.units for run in paged), desc="pages", unit="unit") as bar:
        for run in paged:
            units = infos[run.slug]
            bars = pages.concept_bars(units)
            others = collection.rotations_of(run)
            size = strip_sizes[run.slug]
            crumbs_layer = [("Overview", "../../index.html"), (run.model, None), (run.layer, None)]
            site.page(
                pages.layer_path(run), "layer.html", title=run.title, charts=True, run=run, row=rows[run.slug],
                bars=bars, bar_chart=charts.layer_bar_chart(bars, run.title), cards=pages.card_order(units, bars),
                categories=run.categories, others=others, strip_w=size.width, strip_h=size.height,
                data_dir=f"data/{run.slug}", crumbs=crumbs_layer, group_text=pages.group_text(bars),
                panels=panels.layer(run.model, run.layer),
            )
            numbers = [u.unit for u in units]
            for position, info in enumerate(units):
                ious = [iou for labels in info.best.values() for _, iou in labels]
                site.page(
                    pages.unit_path(run, info.unit), "unit.html", title=f"Unit {info.unit} · {run.title}",
                    run=run, u=info, concept_paths=concept_paths, max_iou=max(ious, default=1.0) or 1.0,
                    prev=numbers[position - 1] if position else None,
                    next=numbers[position + 1] if position + 1 < len(numbers) else None,
                    strip_w=size.width, strip_h=size.height,
                    panels=panels.unit(run.model, run.layer, info.unit),
                    crumbs=[("Overview", "../../index.html"), (run.model, None),
                            (run.layer, "index.html"), (f"unit {info.unit}", None)],
                )
                bar.update(1)

    # Concept pages.
    by_category: dict[str, list] = {}
    for concept in concepts.values():
        best = max((e.iou for e in concept.entries), default=0.0)
        by_category.setdefault(concept.category, []).append((concept, best))
        site.page(pages.concept_path(concept), "concept.html", title=f"{concept.display} ({concept.category})",
                  section="concepts", concept=concept, strips=strip_sizes, panels=panels.concept(concept.name),
                  crumbs=[("Overview", "../index.html"), ("Concepts", "index.html"), (concept.display, None)])
    groups = [(c, sorted(by_category[c], key=lambda item: (-item[0].detectors, -item[1], item[0].name)))
              for c in ordered_categories(by_category)]
    site.page("concepts/index.html", "concepts.html", title="Concepts", section="concepts", groups=groups,
              total=len(concepts), crumbs=[("Overview", "../index.html"), ("Concepts", None)])

    site.page("compare.html", "compare.html", title="Comparisons", section="compare", charts=True,
              sections=_compare_sections(collection, panels))

    # Provenance and downloads.
    runs = []
    for run in collection.runs:
        files = []
        for name in VARIANT_DOWNLOADS if run.variant else (*RESULT_FILES, "null.csv"):
            if name.endswith(".npy") or not (run.path / name).is_file():
                continue
            target = tmp / "data" / run.slug / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run.path / name, target)
            files.append((name, f"data/{run.slug}/{name}"))
        runs.append((run, files))
    provenance = [(str(path.parent.name + "/" + path.name), json.dumps(record, indent=2, sort_keys=True))
                  for path, record in collection.provenance]
    site.page("provenance.html", "provenance.html", title="Provenance & citation", section="provenance",
              runs=runs, settings_keys=SETTINGS_KEYS, provenance=provenance, citation=citation)
