"""The dissection section of the report: overview, layer, unit and concept pages, comparisons, provenance.

Strips (each unit's top images with its mask) are rendered by worker processes while the pages are written.
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
from unitscope.report.collect import RESULT_FILES, Collection, ReportInputError, Run, collect, ordered_categories
from unitscope.report.reference import Reference, load_reference
from unitscope.report.search import search_rows
from unitscope.report.sections import NavLink, Panels, Section, SiteInputs
from unitscope.report.site import SiteWriter
from unitscope.report.strips import StripJob, StripRenderer, strip_width, tile_shape

#: Units per strip-rendering task (small enough to balance, large enough to amortise the overhead).
STRIP_CHUNK = 64
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
        self.infos = {run.slug: pages.unit_infos(run) for run in self.collection.runs}
        for run in self.collection.runs:
            _check_maps(run, self.infos[run.slug])

    def nav(self) -> list[NavLink]:
        return [NavLink("Overview", "index.html", "index"), NavLink("Concepts", "concepts/index.html", "concepts"),
                NavLink("Comparisons", "compare.html", "compare")]

    def write_pages(self, site: SiteWriter, panels: Panels) -> None:
        _build(self.collection, self.reference, self.inputs.citation, self.infos, self.data,
               Path(self.inputs.dataset), site, self.tile_height, self.inputs.workers, panels)

    def search_rows(self) -> Mapping[str, list[list]]:
        concepts = pages.concepts(self.collection, self.infos)
        return search_rows(concepts, [(run, info) for run in self.collection.runs for info in self.infos[run.slug]])


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
    """One chart of the comparison page: runs that differ in one respect, and the column that says how."""

    id: str
    title: str
    rows: pd.DataFrame  # long table: group, <x>, category, unique (one run per point)
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
                   "many units align with concepts.",
                   "Unique detectors per category against the rotation power α.",
                   "No run with a rotated basis (dissect with --rotation-alpha)."),
        Comparison("weights", "Trained vs untrained", pages.weights_rows(collection), charts.weights_chart, "weights",
                   "The same architecture with trained and with random (untrained) weights, grouped by their series "
                   "tag.",
                   "Unique detectors per category for each value of the weights tag.",
                   "No series with both trained and untrained runs (tag runs with weights=trained/untrained and "
                   "series=NAME)."),
        Comparison("iterations", "Over training", pages.iteration_rows(collection), charts.iteration_chart,
                   "iteration", "Checkpoints of one training run, tagged with their iteration.",
                   "Unique detectors per category over training iterations (logarithmic axis).",
                   "No run tagged with a training iteration (tag runs with iteration=N)."),
    ]


def _compare_sections(collection: Collection) -> list[dict]:
    """Each comparison as the compare page shows it: its chart and the table of its data, one run per row."""
    sections = []
    for comparison in comparisons(collection):
        rows, x = comparison.rows, comparison.x
        table = pd.DataFrame()
        if not rows.empty:
            repeated = rows[rows.duplicated(["group", x, "category"])]
            if not repeated.empty:  # a point of the chart must come from one run, never a sum of several
                group, value = repeated.iloc[0][["group", x]]
                raise ReportInputError(f"two result directories give the {comparison.title.lower()} point {group}, "
                                       f"{x} = {value}; tag them apart (series=NAME) or leave one out")
            table = rows.pivot(index=["group", x], columns="category", values="unique").fillna(0).astype(int)
            table = table[ordered_categories(table.columns)].reset_index()
        sections.append({
            "id": comparison.id, "title": comparison.title, "text": comparison.text, "caption": comparison.caption,
            "empty": comparison.empty, "spec": comparison.chart(rows), "columns": list(table.columns),
            "rows": [[_fmt(v) for v in r] for r in table.itertuples(index=False)],
        })
    return sections


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
    for run in collection.runs:
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
    rows = {run.slug: pages.run_row(run) for run in collection.runs}
    categories = ordered_categories(c for run in collection.runs for c in run.categories)

    # Index.
    thresholds = sorted({run.iou_threshold for run in collection.runs})
    site.page(
        "index.html", "index.html", title="Network dissection report", section="index", charts=True,
        rows=list(rows.values()), categories=categories, concept_count=len(concepts),
        rotated=any(run.rotation for run in collection.runs),
        total_units=sum(run.units for run in collection.runs), thresholds=" / ".join(f"{t:g}" for t in thresholds),
        layer_chart=charts.interpretability_by_layer(pages.interpretability_rows(collection)),
        unique_chart=charts.unique_detectors_bars(
            pages.unique_rows(collection), "Unique detectors per model and layer, stacked by category"),
        **_reference_context(reference),
    )

    # Layer and unit pages.
    with progress(total=sum(run.units for run in collection.runs), desc="pages", unit="unit") as bar:
        for run in collection.runs:
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
                    rotations=others, strip_w=size.width, strip_h=size.height,
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
              sections=_compare_sections(collection))

    # Provenance and downloads.
    runs = []
    for run in collection.runs:
        files = []
        for name in RESULT_FILES:
            if name.endswith(".npy"):
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
