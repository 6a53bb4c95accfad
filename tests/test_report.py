"""Report site builder: collection, strips, page content, links, determinism (no browser).

Fixture results are generated here in the exact schema of docs/outputs.md (random tallies whose
per-category columns agree with ious.csv), over a tiny Broden dataset written with BrodenWriter.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from realdata import real_data
from unitscope.broden.format import CATEGORIES
from unitscope.broden.writer import BrodenWriter
from unitscope.report.collect import ReportInputError, collect
from unitscope.report.site import build_site
from unitscope.report.strips import bilinear_matrix, overlay, upsample
from unitscope.summary import summarize

LABELS_BY_CATEGORY = {
    "color": ["red-c", "green-c", "blue-c", "yellow-c", "grey-c"],
    "object": ["sky", "tree", "car", "person", "building", "road", "dog"],
    "part": ["wheel", "head", "window", "leg"],
    "material": ["wood", "glass", "fabric"],
    "scene": ["street-s", "forest_path-s", "kitchen-s"],
    "texture": ["striped", "dotted", "zigzagged", "honeycombed"],
}
LABELS = {i: name for i, name in enumerate((n for c in CATEGORIES for n in LABELS_BY_CATEGORY[c]), start=1)}
NUMBER = {name: number for number, name in LABELS.items()}
PALETTE = np.array([[222, 63, 51], [66, 160, 90], [60, 100, 210], [240, 200, 40], [130, 130, 130]], dtype=np.uint8)


def make_dataset(root: Path, images: int = 16, size: int = 64, seed: int = 0) -> Path:
    """A small Broden dataset of blocky coloured images with colour and object layers and scenes."""
    rng = np.random.default_rng(seed)
    half = size // 2
    with BrodenWriter(root, LABELS, image_size=size, label_size=half) as writer:
        for i in range(images):
            blocks = rng.integers(0, len(PALETTE), size=(4, 4))
            colour = np.kron(blocks, np.ones((half // 4, half // 4), dtype=int))
            picture = np.kron(PALETTE[blocks], np.ones((size // 4, size // 4, 1), dtype=np.uint8))
            ramp = np.linspace(0.75, 1.0, size)[None, :, None]
            picture = (picture * ramp).astype(np.uint8)
            objects = np.where(colour == 2, NUMBER["sky"], np.where(colour == 1, NUMBER["tree"], 0))
            writer.add_image(
                "synth", f"img{i:03d}", picture,
                {"color": [NUMBER[LABELS_BY_CATEGORY["color"][0]] + colour], "object": [objects]},
                {"scene": [NUMBER[LABELS_BY_CATEGORY["scene"][i % 3]]]},
            )
    return root


def make_results(
    out: Path, dataset: Path, *, model: str = "toynet", layer: str = "layer4", units: int = 12, k: int = 4,
    seed: int = 0, rotation: dict | None = None, tags: dict | None = None, map_size: int = 4,
    iou_threshold: float = 0.04, checkpoint: dict | None = None,
) -> Path:
    """One layer's result directory in the docs/outputs.md schema, with random but consistent numbers."""
    rng = np.random.default_rng(seed)
    index = pd.read_csv(dataset / "index.csv", keep_default_na=False)
    layer_dir = out / layer
    layer_dir.mkdir(parents=True)
    categories = list(CATEGORIES)
    iou_rows, tally_rows = [], []
    for unit in range(1, units + 1):
        row = {"unit": unit}
        for category in categories:
            names = LABELS_BY_CATEGORY[category]
            chosen = rng.choice(names, size=rng.integers(1, len(names) + 1), replace=False)
            ious = np.sort(rng.uniform(0.001, 0.12, size=len(chosen)) ** rng.uniform(1, 1.6))[::-1]
            for name, iou in zip(chosen, ious):
                iou_rows.append({"unit": unit, "label": name, "number": NUMBER[name], "category": category,
                                 "iou": float(iou), "intersect": int(iou * 1000), "activation": 900, "truth": 500})
            row.update({f"{category}-label": chosen[0], f"{category}-truth": 500, f"{category}-activation": 900.0,
                        f"{category}-intersect": int(ious[0] * 1000), f"{category}-iou": float(ious[0])})
        best = max(categories, key=lambda c: row[f"{c}-iou"])
        row.update({"category": best, "label": row[f"{best}-label"], "score": row[f"{best}-iou"]})
        tally_rows.append(row)
    columns = ["unit", "category", "label", "score"] + [
        f"{c}-{f}" for c in categories for f in ("label", "truth", "activation", "intersect", "iou")]
    tally = pd.DataFrame(tally_rows, columns=columns).sort_values(["score", "unit"], ascending=[False, True])
    tally.to_csv(layer_dir / "tally.csv", index=False)
    ious = pd.DataFrame(iou_rows).sort_values(["unit", "iou"], ascending=[True, False])
    ious.to_csv(layer_dir / "ious.csv", index=False)
    thresholds = rng.uniform(0.5, 1.5, size=units)
    pd.DataFrame({"unit": range(1, units + 1), "threshold": thresholds}).to_csv(layer_dir / "thresholds.csv", index=False)
    top_rows = []
    for unit in range(1, units + 1):
        picks = rng.choice(len(index), size=k, replace=False)
        for rank, image_index in enumerate(picks, start=1):
            top_rows.append({"unit": unit, "rank": rank, "image_index": int(image_index),
                             "image": index.loc[image_index, "image"], "max_activation": float(3 - rank * 0.1)})
    pd.DataFrame(top_rows).to_csv(layer_dir / "top_images.csv", index=False)
    maps = rng.gamma(1.0, 0.8, size=(units, k, map_size, map_size)).astype(np.float32)
    np.save(layer_dir / "top_maps.npy", maps)
    tally_read = pd.read_csv(layer_dir / "tally.csv", keep_default_na=False)
    (layer_dir / "summary.json").write_text(json.dumps(summarize(tally_read, iou_threshold)))
    size = int(index.loc[0, "ih"])
    meta = {
        "model": model, "model_spec": f"python:toy:{model}", "layer": layer, "units": units,
        "map_size": [map_size, map_size], "image_size": [size, size], "label_size": [size // 2, size // 2],
        "dataset": {"path": str(dataset), "name": "synth", "images": len(index), "index_sha256": hashlib.sha256((dataset / "index.csv").read_bytes()).hexdigest()},
        "categories": categories, "quantile": 0.005, "quantile_level": 0.995, "iou_threshold": iou_threshold,
        "presence": "image", "normalize": "imagenet", "top_k": k, "rotation": rotation,
        "tags": tags or {}, "unitscope_version": "0.1.0", "checkpoint": checkpoint,
    }
    (layer_dir / "meta.json").write_text(json.dumps(meta))
    return layer_dir


def make_study(tmp: Path) -> tuple[Path, Path]:
    """A dataset and a results tree: two layers, two rotations, an untrained twin and two checkpoints."""
    dataset = make_dataset(tmp / "broden")
    results = tmp / "results"
    make_results(results / "toynet", dataset, layer="layer3", units=8, seed=1, tags={"series": "toy", "weights": "trained"})
    make_results(results / "toynet", dataset, layer="layer4", units=12, seed=2, tags={"series": "toy", "weights": "trained"})
    for i, alpha in enumerate((0.5, 1.0)):
        make_results(results / f"toynet-rot{alpha}", dataset, layer="layer4", units=12, seed=3 + i,
                     rotation={"alpha": alpha, "seed": 1, "unpermute": True}, tags={"series": "toy", "weights": "trained"})
    make_results(results / "toynet-untrained", dataset, model="toynet-untrained", layer="layer4", units=12, seed=6,
                 tags={"series": "toy", "weights": "untrained"})
    for i, iteration in enumerate((10, 1000)):
        make_results(results / f"ckpt{iteration}", dataset, model=f"toynet@{iteration}", layer="layer4", units=6,
                     seed=7 + i, tags={"series": "toy", "weights": "trained", "iteration": str(iteration)})
    (results / "provenance.json").write_text(json.dumps({"python": "3.12", "torch": "2.x-sentinel", "seed": 1}))
    return dataset, results


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("report")
    dataset, results = make_study(tmp)
    site = build_site([results], dataset, tmp / "site", workers=2, tile_height=64)
    return dataset, results, site


# --- strips -----------------------------------------------------------------------------------------


def test_upsample_matches_pillow_bilinear() -> None:
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(7, 5)).astype(np.float32)
    expected = np.asarray(Image.fromarray(maps, mode="F").resize((33, 50), Image.BILINEAR))
    np.testing.assert_allclose(upsample(maps, (50, 33)), expected, atol=1e-5)
    assert np.allclose(bilinear_matrix(4, 9).sum(axis=1), 1.0)


def test_overlay_dims_outside_the_mask_and_outlines_it() -> None:
    images = np.full((2, 20, 20, 3), 200, dtype=np.uint8)
    masks = np.zeros((2, 20, 20), dtype=bool)
    masks[0, :, :10] = True
    tiles = overlay(images, masks)
    assert (tiles[0, 5:15, 2:8] == 200).all()  # inside: untouched
    assert (tiles[0, 5:15, 12:] == 40).all()  # outside: 200 * 0.2
    assert (tiles[0, 5:15, 9] == [255, 214, 0]).all()  # border pixels of the mask in yellow
    assert (tiles[1] == 40).all()  # empty mask: all dimmed
    half = overlay(images[:, :10, :10], masks)  # 2x reduction: coverage is the box average
    assert (half[0, 3:7, 1:3] == 200).all() and (half[0, 3:7, 6:] == 40).all()
    odd = overlay(images[:, :7, :7], masks)  # non-integer reduction
    assert odd.shape == (2, 7, 7, 3) and (odd[0, 2:5, 0] == 200).all() and (odd[0, 2:5, 6] == 40).all()


def test_strip_shows_each_top_image_with_its_mask(study) -> None:
    dataset, results, site = study
    layer = results / "toynet" / "layer4"
    top = pd.read_csv(layer / "top_images.csv")
    maps = np.load(layer / "top_maps.npy")
    threshold = pd.read_csv(layer / "thresholds.csv").set_index("unit").loc[3, "threshold"]
    strip = np.asarray(Image.open(site / "toynet" / "layer4" / "strips" / "0002.webp").convert("RGB"), dtype=float)
    assert strip.shape == (64, 4 * 64 + 3 * 3, 3)
    for rank, row in enumerate(top[top["unit"] == 3].itertuples()):
        picture = np.asarray(Image.open(dataset / "images" / row.image).convert("RGB"), dtype=float)
        mask = upsample(maps[2, rank], picture.shape[:2]) > threshold
        expected = picture * np.where(mask, 1.0, 0.2)[..., None]
        tile = strip[:, rank * 67 : rank * 67 + 64]
        assert np.median(np.abs(tile - expected)[mask]) < 12  # WebP is lossy: compare typical pixels
        assert np.median(np.abs(tile - expected)[~mask]) < 12


# --- collection and errors ------------------------------------------------------------------------


def test_collect_orders_runs_and_names_rotations(study) -> None:
    _, results, _ = study
    runs = collect([results]).runs
    assert [r.slug for r in runs] == [
        "toynet/layer3", "toynet/layer4", "toynet/layer4~rot0.5s1", "toynet/layer4~rot1s1",
        "toynet-untrained/layer4", "toynet-10/layer4", "toynet-1000/layer4",
    ]


def test_missing_file_is_named(tmp_path) -> None:
    dataset = make_dataset(tmp_path / "broden", images=6)
    layer = make_results(tmp_path / "results", dataset, units=3, k=2)
    (layer / "ious.csv").unlink()
    with pytest.raises(ReportInputError, match="ious.csv is missing"):
        build_site([tmp_path / "results"], dataset, tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_bad_column_and_unit_range_are_named(tmp_path) -> None:
    dataset = make_dataset(tmp_path / "broden", images=6)
    layer = make_results(tmp_path / "results", dataset, units=3, k=2)
    pd.read_csv(layer / "thresholds.csv").rename(columns={"threshold": "t"}).to_csv(layer / "thresholds.csv", index=False)
    with pytest.raises(ReportInputError, match=r"thresholds.csv: missing column\(s\) threshold"):
        build_site([tmp_path / "results"], dataset, tmp_path / "site")
    pd.DataFrame({"unit": [1, 2, 2], "threshold": [1.0, 1.0, 1.0]}).to_csv(layer / "thresholds.csv", index=False)
    with pytest.raises(ReportInputError, match=r"units must be 1..3"):
        build_site([tmp_path / "results"], dataset, tmp_path / "site")


def test_duplicate_runs_and_wrong_dataset_are_refused(tmp_path) -> None:
    dataset = make_dataset(tmp_path / "broden", images=6)
    make_results(tmp_path / "results" / "a", dataset, units=3, k=2)
    make_results(tmp_path / "results" / "b", dataset, units=3, k=2)
    with pytest.raises(ReportInputError, match="are both toynet · layer4"):
        build_site([tmp_path / "results"], dataset, tmp_path / "site")
    other = make_dataset(tmp_path / "other", images=6, seed=1)
    (other / "index.csv").write_text((other / "index.csv").read_text().replace("img000", "imgXXX"))
    with pytest.raises(ReportInputError, match="pass the dataset the results were computed on"):
        build_site([tmp_path / "results" / "a"], other, tmp_path / "site")


def test_cli_reports_errors_in_one_line(tmp_path) -> None:
    from click.testing import CliRunner

    from unitscope.cli import main

    dataset = make_dataset(tmp_path / "broden", images=6)
    layer = make_results(tmp_path / "results", dataset, units=3, k=2)
    (layer / "summary.json").write_text("{not json")
    result = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "results"), "--dataset", str(dataset),
                                       "--out", str(tmp_path / "site")])
    assert result.exit_code == 1
    assert "summary.json: cannot read JSON" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "site").exists()


# --- pages ------------------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Links, images, table cells and text of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()
        self.rows: list[list[str]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.refs.append(attrs[key])
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def check_links(site: Path) -> int:
    """Every href/src of every page points to an existing file of the site; returns the links checked."""
    checked = 0
    for html in sorted(site.rglob("*.html")):
        page = parse(html)
        for ref in page.refs:
            assert not re.match(r"^[a-z]+:", ref) or ref.startswith("#"), f"{html}: non-relative link {ref}"
            target, fragment = urldefrag(ref)
            resolved = (html.parent / unquote(target)).resolve() if target else html
            assert resolved.is_file(), f"{html.relative_to(site)}: broken link {ref}"
            assert site.resolve() in resolved.parents, f"{html}: link {ref} leaves the site"
            if fragment:
                assert fragment in parse(resolved).ids, f"{html}: missing anchor {ref}"
            checked += 1
    return checked


def unit_links(page: Path) -> list[str]:
    """The links of ``page`` to unit pages, after checking that every link of its site resolves."""
    check_links(page.parent.parent)
    return [ref for ref in parse(page).refs if "/unit-" in ref and ref.endswith(".html")]


def test_every_link_resolves(study) -> None:
    _, _, site = study
    assert check_links(site) > 500


def test_unit_page_lists_top_five_labels_per_category(study) -> None:
    _, results, site = study
    ious = pd.read_csv(results / "toynet" / "layer4" / "ious.csv", keep_default_na=False)
    for unit in (1, 7):
        rows = parse(site / "toynet" / "layer4" / f"unit-{unit:04d}.html").rows
        shown = [(r[0], float(r[1])) for r in rows if len(r) == 3 and re.fullmatch(r"\d\.\d{3}", r[1])]
        expected = []
        mine = ious[ious["unit"] == unit]
        for category in ("object", "scene", "part", "material", "texture", "color"):
            best = mine[mine["category"] == category].nlargest(5, "iou")
            expected += [(re.sub(r"-[sc]$", "", n).replace("_", " "), round(v, 3)) for n, v in zip(best["label"], best["iou"])]
        assert shown == expected


def test_unit_page_links_neighbours_and_rotated_runs_have_no_pages(study) -> None:
    """Rotated runs are summarised in the overview and comparisons only; their small tables are downloadable."""
    _, _, site = study
    refs = parse(site / "toynet" / "layer4" / "unit-0005.html").refs
    assert "../../toynet/layer4/unit-0004.html" in refs and "../../toynet/layer4/unit-0006.html" in refs
    assert not (site / "toynet" / "layer4~rot1s1").exists()
    assert "../../compare.html#rotation-h" in parse(site / "toynet" / "layer4" / "index.html").refs
    index = (site / "index.html").read_text()
    assert "2 more runs in rotated bases or at other thresholds" in index and "layer4~rot" not in index
    downloads = parse(site / "provenance.html").refs
    assert "data/toynet/layer4~rot1s1/summary.json" in downloads and "data/toynet/layer4~rot1s1/ious.csv" not in downloads
    assert "data/toynet/layer4/ious.csv" in downloads


def test_concept_page_lists_exactly_its_detectors(study) -> None:
    _, results, site = study
    expected = set()
    for meta in results.rglob("meta.json"):
        info = json.loads(meta.read_text())
        if info.get("rotation"):
            continue  # rotated runs have no unit pages
        tally = pd.read_csv(meta.parent / "tally.csv", keep_default_na=False)
        hits = tally[(tally["object-label"] == "sky") & (tally["object-iou"] > info["iou_threshold"])]
        expected |= {(meta.parent, int(u)) for u in hits["unit"]}
    rows = [r for r in parse(site / "concepts" / "sky.html").rows if len(r) == 5 and "detector" in r[3]]
    assert len(rows) == len(expected) > 0


def test_layer_page_orders_units_like_the_paper(study) -> None:
    _, results, site = study
    tally = pd.read_csv(results / "toynet" / "layer4" / "tally.csv", keep_default_na=False)
    detectors = tally[tally["score"] > 0.04]
    text = (site / "toynet" / "layer4" / "index.html").read_text()
    order = [int(u) for u in re.findall(r'data-unit="(\d+)"', text)]
    assert sorted(order) == list(range(1, 13))
    order_cats = [tally.set_index("unit").loc[u, "category"] for u in order[: len(detectors)]]
    paper = ["object", "scene", "part", "material", "texture", "color"]
    assert order_cats == sorted(order_cats, key=paper.index)  # grouped by category in the paper's order
    spec = json.loads(re.search(r'<script type="application/json" id="bars-spec">(.*?)</script>', text, re.S).group(1))
    bars = next(iter(spec["datasets"].values()))
    assert sum(b["units"] for b in bars) == len(detectors)


def test_index_shows_the_summaries(study) -> None:
    _, results, site = study
    rows = parse(site / "index.html").rows
    summary = json.loads((results / "toynet" / "layer3" / "summary.json").read_text())
    row = next(r for r in rows if r[:2] == ["toynet", "layer3"])
    assert row[2:5] == [str(summary["units"]), str(summary["detectors"]), str(summary["unique_per_category"]["all"])]
    assert row[5 + 6] == str(summary["unique_top_label"]["all"])
    assert (site / "data" / "toynet" / "layer3" / "tally.csv").read_bytes() == (results / "toynet" / "layer3" / "tally.csv").read_bytes()
    # The provenance record itself is on the page (a sentinel value no template holds), not just its heading.
    provenance = (site / "provenance.html").read_text()
    assert "2.x-sentinel" in provenance and "provenance.json" in provenance


def test_search_index_covers_units_and_concepts(study) -> None:
    _, results, site = study
    text = (site / "assets" / "search-index.js").read_text()
    data = json.loads(text.removeprefix("window.UNITSCOPE_SEARCH=").removesuffix(";\n"))
    metas = [json.loads(m.read_text()) for m in results.rglob("meta.json")]
    units = sum(meta["units"] for meta in metas if not meta.get("rotation"))  # rotated runs have no unit pages
    assert len(data["units"]) == units
    names = {c[0] for c in data["concepts"]}
    assert {"sky", "street", "forest path"} <= names
    for row in data["units"] + data["concepts"]:
        assert (site / row[-1]).is_file()


def test_vega_bundle_written_once_and_shared(study) -> None:
    _, _, site = study
    assert (site / "assets" / "vega.js").stat().st_size > 100_000
    for html in site.rglob("*.html"):
        text = html.read_text()
        assert "vegaEmbed(" not in text and len(text) < 200_000
        assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing loaded from the network


def test_build_is_deterministic(study, tmp_path) -> None:
    dataset, results, site = study
    again = build_site([results], dataset, tmp_path / "again", workers=1, tile_height=64)
    files = sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (site / name).read_bytes() == (again / name).read_bytes(), name


def test_reference_numbers_are_the_published_ones(tmp_path) -> None:
    reference = real_data("netdissect-released-results")
    dataset = make_dataset(tmp_path / "broden", images=6)
    make_results(tmp_path / "results", dataset, units=3, k=2)
    site = build_site([tmp_path / "results"], dataset, tmp_path / "site", reference=reference, workers=1)
    rows = parse(site / "index.html").rows
    places = next(r for r in rows if r[0].startswith("AlexNet-Places365 conv5"))
    assert places[1:] == ["256", "118", "91", "72"]  # SOURCE.md / spec §4.1–4.2
    resnet = next(r for r in rows if r[:2] == ["resnet-152-torch-places365", "caffe.Eltwise_510"])
    assert resnet[2] == "347"


def test_trained_vs_untrained_compares_the_final_checkpoint(tmp_path) -> None:
    """As the workflow tags them: the trained model's final weights carry the highest iteration tag."""
    from unitscope.report.pages import weights_rows

    dataset = make_dataset(tmp_path / "broden")
    results = tmp_path / "results"
    trained = {"series": "toy", "weights": "trained"}
    for seed, iteration in ((1, 4), (2, 256), (3, 16)):
        make_results(results / f"toy-{iteration}", dataset, model=f"toy@{iteration}", layer="layer4", units=6,
                     seed=seed, tags={**trained, "iteration": str(iteration)})
    make_results(results / "toy-untrained", dataset, model="toy-untrained", layer="layer4", units=6, seed=4,
                 tags={"series": "toy", "weights": "untrained"})
    rows = weights_rows(collect([results]))
    final = summarize(pd.read_csv(results / "toy-256" / "layer4" / "tally.csv", keep_default_na=False))
    got = rows[rows["weights"] == "trained"].set_index("category")["unique"].to_dict()
    assert got == {"all": final["unique_per_category"]["all"], **final["unique_per_category"]["per_category"]}
    assert set(rows["weights"]) == {"trained", "untrained"} and set(rows["measure"]) == {"raw"}


def test_training_curves_need_two_checkpoints(tmp_path) -> None:
    from unitscope.report.pages import iteration_rows

    dataset = make_dataset(tmp_path / "broden")
    results = tmp_path / "results"
    trained = {"series": "toy", "weights": "trained"}
    for seed, iteration in ((1, 4), (2, 64)):
        make_results(results / f"toy-{iteration}", dataset, model=f"toy@{iteration}", layer="layer4", units=6,
                     seed=seed, tags={**trained, "iteration": str(iteration)})
    make_results(results / "toy-64", dataset, model="toy@64", layer="layer3", units=6, seed=3,
                 tags={**trained, "iteration": "64"})  # only the final weights of layer3: no curve
    rows = iteration_rows(collect([results]))
    assert set(rows["group"]) == {"toy · layer4"}
    assert sorted(set(rows["iteration"])) == [4.0, 64.0]


def test_each_rotation_point_is_one_run_or_the_mean_over_seeds(tmp_path) -> None:
    """The unrotated run and the rotated α = 0 run are two runs of one point: the chart shows the rotated one,
    never their sum; at α = 1 two rotation seeds give the mean ± sd of their counts."""
    from unitscope.report.dissection import _compare_sections
    from unitscope.report.pages import rotation_rows
    from unitscope.report.sections import Panels

    dataset = make_dataset(tmp_path / "broden")
    results = tmp_path / "results"
    make_results(results / "toy", dataset, model="toy", seed=1)
    runs = {"rot0": (2, 0.0, 1), "rot1-s1": (3, 1.0, 1), "rot1-s2": (4, 1.0, 2)}
    for name, (seed, alpha, rotation_seed) in runs.items():
        make_results(results / f"toy-{name}", dataset, model="toy", seed=seed,
                     rotation={"alpha": alpha, "seed": rotation_seed, "unpermute": True})
    collection = collect([results])
    rows = rotation_rows(collection)
    summary = {name: summarize(pd.read_csv(results / f"toy-{name}" / "layer4" / "tally.csv", keep_default_na=False))
               for name in runs}
    got = rows[rows["alpha"] == 0.0].set_index("category")["unique"].to_dict()
    assert got == {"all": summary["rot0"]["unique_per_category"]["all"],
                   **summary["rot0"]["unique_per_category"]["per_category"]}
    assert sorted(rows[rows["alpha"] == 1.0]["seed"].unique()) == [1, 2]
    (section,) = [s for s in _compare_sections(collection, Panels()) if s["id"] == "rotation"]
    assert len(section["rows"]) == 2
    first, last = (dict(zip(section["columns"], row)) for row in section["rows"])
    assert first["alpha"] == "0" and first["runs"] == "1"
    assert int(first["object"]) == summary["rot0"]["unique_per_category"]["per_category"]["object"]
    counts = [summary[name]["unique_per_category"]["all"] for name in ("rot1-s1", "rot1-s2")]
    assert last["all"] == f"{np.mean(counts):.1f} ± {np.std(counts, ddof=1):.1f}" and last["runs"] == "2"
    spec = json.dumps(section["spec"])
    assert '"lo"' in spec and '"hi"' in spec  # the seed spread is drawn


def test_training_conditions_compare_final_checkpoints_over_seeds(tmp_path) -> None:
    """Checkpoints recording their architecture: each option that differs between otherwise equal architectures is an
    experiment; a point is the mean ± sd over training seeds of the final checkpoints, with the held-out accuracy."""
    from unitscope.report.dissection import _compare_sections
    from unitscope.report.pages import condition_rows
    from unitscope.report.sections import Panels

    dataset = make_dataset(tmp_path / "broden")
    results = tmp_path / "results"
    base = {"batchnorm": True, "dropout": 0.0, "width": 1}
    trainings = {"base": base, "nobn": {**base, "batchnorm": False}, "wide2": {**base, "width": 2},
                 "wide4": {**base, "width": 4}}
    accuracy = {("base", 0): 1.0, ("base", 1): 0.9, ("nobn", 0): 0.8, ("nobn", 1): 0.6, ("wide2", 0): 1.0,
                ("wide2", 1): 1.0, ("wide4", 0): 0.95}
    seed = iter(range(100))
    for (name, train_seed), acc in accuracy.items():
        record = {"iteration": 256, "iterations": 256, "seed": train_seed, "val_accuracy": acc,
                  "architecture": trainings[name]}
        make_results(results / f"{name}-s{train_seed}", dataset, model=f"{name}-s{train_seed}", seed=next(seed),
                     checkpoint=record,
                     tags={"series": name, "weights": "trained", "iteration": "256"}
                     | ({"repeat": str(train_seed)} if train_seed else {}))
    early = {"iteration": 16, "iterations": 256, "seed": 0, "val_accuracy": 0.1, "architecture": base}
    make_results(results / "base-iter16", dataset, model="base@16", seed=next(seed), checkpoint=early,
                 tags={"series": "base", "weights": "trained", "iteration": "16"})
    make_results(results / "base-rot", dataset, model="base", seed=next(seed), rotation={"alpha": 1.0, "seed": 1},
                 checkpoint={**early, "iteration": 256}, tags={"series": "base", "weights": "trained"})
    # trained on permuted labels (the saliency sanity checks): no training condition, and no clash with base-s0
    make_results(results / "shuffled", dataset, model="shuffled", seed=next(seed),
                 checkpoint={**early, "iteration": 256, "labels": "permuted"}, tags={"series": "shuffled"})
    collection = collect([results])
    rows = condition_rows(collection)
    assert set(rows["group"]) == {"batch norm · layer4", "width × · layer4"}  # dropout never varies: no experiment
    width = rows[rows["group"] == "width × · layer4"]
    assert list(dict.fromkeys(width["condition"])) == ["1", "2", "4"]
    def unique(run: str) -> int:
        return summarize(pd.read_csv(results / run / "layer4" / "tally.csv", keep_default_na=False))[
            "unique_per_category"]["all"]

    on = rows[(rows["condition"] == "on") & (rows["measure"] == "raw") & (rows["category"] == "all")]
    assert sorted(on["unique"]) == sorted([unique("base-s0"), unique("base-s1")])  # not base-iter16, not base-rot

    (section,) = [s for s in _compare_sections(collection, Panels()) if s["id"] == "conditions"]
    table = [dict(zip(section["columns"], row)) for row in section["rows"]]
    off = next(r for r in table if r["group"] == "batch norm · layer4" and r["condition"] == "off" and r["measure"] == "raw")
    counts = [unique(f"nobn-s{s}") for s in (0, 1)]
    assert off["all"] == f"{np.mean(counts):.1f} ± {np.std(counts, ddof=1):.1f}" and off["runs"] == "2"
    assert off["held-out accuracy"] == f"{0.7:.3f} ± {np.std([0.8, 0.6], ddof=1):.3f}"
    four = next(r for r in table if r["group"] == "width × · layer4" and r["condition"] == "4")
    assert four["held-out accuracy"] == "0.950" and four["runs"] == "1"
    assert {run.path.parent.name for run in collection.runs if run.variant} == {"base-s1", "nobn-s1", "wide2-s1", "base-rot"}


def test_training_conditions_name_their_other_options_and_refuse_a_training_twice(tmp_path) -> None:
    from unitscope.report.pages import condition_rows

    dataset = make_dataset(tmp_path / "broden")
    results = tmp_path / "results"
    for i, (bn, width) in enumerate([(True, 1), (False, 1), (True, 2), (False, 2)]):
        record = {"iteration": 8, "iterations": 8, "seed": 0, "val_accuracy": 1.0,
                  "architecture": {"batchnorm": bn, "dropout": 0.0, "width": width}}
        make_results(results / f"m{i}", dataset, model=f"m{i}", seed=i, checkpoint=record)
    groups = set(condition_rows(collect([results]))["group"])
    assert groups == {"batch norm · layer4 (dropout 0, width × 1)", "batch norm · layer4 (dropout 0, width × 2)",
                      "width × · layer4 (batch norm on, dropout 0)", "width × · layer4 (batch norm off, dropout 0)"}
    for seed in (1, 2):  # seeds of an architecture in no experiment: a point of their own
        record = {"iteration": 8, "iterations": 8, "seed": seed, "val_accuracy": 1.0,
                  "architecture": {"batchnorm": False, "dropout": 0.5, "width": 4}}  # two options from any other
        make_results(results / f"d{seed}", dataset, model=f"d{seed}", seed=10 + seed, checkpoint=record)
    rows = condition_rows(collect([results]))
    alone = rows[rows["group"] == "training seeds · layer4"]
    assert set(alone["condition"]) == {"batch norm off, dropout 0.5, width × 4"} and sorted(set(alone["seed"])) == [1, 2]
    assert set(rows["group"]) - {"training seeds · layer4"} == groups
    shutil.copytree(results / "m0", results / "m0-again")
    meta = json.loads((results / "m0-again" / "layer4" / "meta.json").read_text())
    (results / "m0-again" / "layer4" / "meta.json").write_text(json.dumps({**meta, "model": "m0-again"}))
    with pytest.raises(ReportInputError, match="the same training .* dissected twice"):
        condition_rows(collect([results]))


def test_a_new_kind_of_result_adds_its_section(tmp_path, monkeypatch) -> None:
    """The section protocol: a result kind contributes a navigation link, its own page, a panel on the
    dissection's unit pages and search rows, without any change to the dissection section."""
    from unitscope.report import site as site_module
    from unitscope.report.dissection import DissectionSection
    from unitscope.report.sections import NavLink, Panel, Section

    class Probes(Section):
        kind = "toy-probe"

        def __init__(self, directories, inputs) -> None:
            super().__init__(directories, inputs)
            self.scores = {json.loads((d / "meta.json").read_text())["unit"]: d for d in self.directories}

        def nav(self):
            return [NavLink("Toy probes", "toy/index.html", "toy")]

        def write_pages(self, site, panels) -> None:
            site.write("toy/index.html", f"<p>{len(self.scores)} toy results</p>")

        def unit_panels(self, model, layer, unit):
            return [Panel("Toy probe", "<p class='toy'>probed &amp; checked</p>")] if unit in self.scores else []

        def search_rows(self):
            return {"units": [["toy probe", "toynet · layer4", unit, 0.5, "toy/index.html"] for unit in self.scores]}

    monkeypatch.setattr(site_module, "sections", lambda: {"dissection": DissectionSection, "toy-probe": Probes})
    dataset = make_dataset(tmp_path / "broden", images=6)
    make_results(tmp_path / "results", dataset, units=3, k=2)
    (tmp_path / "toy" / "u2").mkdir(parents=True)
    (tmp_path / "toy" / "u2" / "meta.json").write_text(json.dumps({"kind": "toy-probe", "unit": 2}))
    site = build_site([tmp_path / "results", tmp_path / "toy"], dataset, tmp_path / "site", workers=1)
    index = (site / "index.html").read_text()
    assert '<a href="toy/index.html">Toy probes</a>' in index
    assert index.index("Toy probes") < index.index(">Provenance<")  # the site's own link stays last
    assert (site / "toy" / "index.html").read_text() == "<p>1 toy results</p>"
    unit2 = (site / "toynet" / "layer4" / "unit-0002.html").read_text()
    unit1 = (site / "toynet" / "layer4" / "unit-0001.html").read_text()
    assert "<h2>Toy probe</h2>" in unit2 and "probed &amp; checked" in unit2 and "<h2>Toy probe</h2>" not in unit1
    search = (site / "assets" / "search-index.js").read_text()
    assert '["toy probe","toynet · layer4",2,0.5,"toy/index.html"]' in search
    monkeypatch.setattr(site_module, "sections", lambda: {"dissection": DissectionSection})
    with pytest.raises(ReportInputError, match="results of kind 'toy-probe' have no report section"):
        build_site([tmp_path / "results", tmp_path / "toy"], dataset, tmp_path / "site2", workers=1)


def test_effective_dimension_appears_on_layer_pages_and_beside_the_rotation_series(tmp_path) -> None:
    dataset = make_dataset(tmp_path / "broden")
    results = tmp_path / "results"
    make_results(results / "toy", dataset, model="toy", seed=1)
    make_results(results / "toy-rot1", dataset, model="toy", seed=2, rotation={"alpha": 1.0, "seed": 1, "unpermute": True})
    measured = results / "dimension" / "layer4"
    measured.mkdir(parents=True)
    (measured / "meta.json").write_text(json.dumps({"kind": "dimension", "model": "toy", "layer": "layer4"}))
    (measured / "dimension.json").write_text(json.dumps(
        {"units": 12, "samples": 96, "participation_ratio": 2.5, "variance_shares": [0.5, 0.8, 0.93]}))
    site = build_site([results], dataset, tmp_path / "site", workers=1)
    for page in ("toy/layer4/index.html", "compare.html"):
        text = (site / page).read_text()
        assert "Participation ratio <strong>2.5</strong> of 12 units" in text and "carry 93% of the variance" in text, page
    (measured / "dimension.json").unlink()
    with pytest.raises(ReportInputError, match="dimension.json not found"):
        build_site([results], dataset, tmp_path / "site2", workers=1)


def test_significant_counts_lead_and_raw_ones_stand_beside_them(tmp_path) -> None:
    dataset = make_dataset(tmp_path / "broden")
    layer = make_results(tmp_path / "results" / "toy", dataset, model="toy", seed=1)
    summary = json.loads((layer / "summary.json").read_text())
    significant = {**summary, "detectors": 3, "unique_per_category": {"all": 2, "per_category": {"object": 2}},
                   "unique_top_label": {"all": 1, "per_category": {"object": 1}},
                   "chance_detectors": {"mean": 5.25, "sd": 1.0, "per_permutation": [4, 6]},
                   "chance_significant": {"mean": 0.5, "sd": 0.7, "per_permutation": [0, 1]}}
    (layer / "summary.json").write_text(json.dumps({**summary, "significant": significant}))
    site = build_site([tmp_path / "results"], dataset, tmp_path / "site", workers=1)
    row = next(r for r in parse(site / "index.html").rows if r[:2] == ["toy", "layer4"])
    assert row[2:7] == [str(summary["units"]), "3", str(summary["detectors"]), "5", "2"]
    assert row[-2:] == [str(summary["unique_per_category"]["all"]), str(summary["unique_top_label"]["all"])]
    pixel = sum(v for k, v in significant["unique_per_category"]["per_category"].items() if k not in ("scene", "texture"))
    assert row[-3] == str(pixel) == "2"
    lead = (site / "toy" / "layer4" / "index.html").read_text()
    assert "<strong>3</strong> of them are significant" in lead and "0.5 significant ones" in lead


def test_unit_and_concept_pages_mark_significant_detectors(tmp_path) -> None:
    """With a null.csv, a detector above its label's level is marked significant, one below it at chance level."""
    dataset = make_dataset(tmp_path / "broden")
    layer = make_results(tmp_path / "results" / "toy", dataset, model="toy", seed=1)
    tally = pd.read_csv(layer / "tally.csv", keep_default_na=False)
    detectors = tally[tally["score"] > 0.04].sort_values("unit")
    strong, weak = detectors.iloc[0], detectors.iloc[1]
    levels = {label: 0.0 for label in pd.read_csv(layer / "ious.csv", keep_default_na=False)["label"]}
    levels[weak["label"]] = float(weak["score"]) + 0.01
    if strong["label"] == weak["label"]:
        pytest.skip("the toy results' first two detectors share a label")
    pd.DataFrame({"number": range(len(levels)), "label": list(levels), "category": "object", "level": list(levels.values()),
                  "max": 0.0, "mean": 0.0}).to_csv(layer / "null.csv", index=False)
    site = build_site([tmp_path / "results"], dataset, tmp_path / "site", workers=1)
    strong_page = (site / "toy" / "layer4" / f"unit-{int(strong['unit']):04d}.html").read_text()
    weak_page = (site / "toy" / "layer4" / f"unit-{int(weak['unit']):04d}.html").read_text()
    assert "significant</span>" in strong_page and "at chance level" not in strong_page
    assert "at chance level</span>" in weak_page
    concepts = (site / "concepts" / "index.html").read_text()
    assert "significant)" in concepts


def test_threshold_comparisons_sweep_tau_and_the_iou_cut(tmp_path) -> None:
    """A run tagged quantile=τ is a point of the τ comparison (no pages of its own); every final run is
    counted again at the IoU cuts, equal to summary.json at 0.04 and never rising with the cut."""
    from unitscope.report.dissection import _compare_sections
    from unitscope.report.pages import iou_rows, quantile_rows
    from unitscope.report.sections import Panels

    dataset = make_dataset(tmp_path / "broden")
    results = tmp_path / "results"
    make_results(results / "toy", dataset, model="toy", seed=1)
    sweep = make_results(results / "toy-tau0.01", dataset, model="toy", seed=2, tags={"quantile": "0.01"})
    meta = json.loads((sweep / "meta.json").read_text())
    (sweep / "meta.json").write_text(json.dumps({**meta, "quantile": 0.01, "quantile_level": 0.99}))
    collection = collect([results])
    rows = quantile_rows(collection)
    assert sorted(rows["quantile"]) == [0.005, 0.01] and set(rows["measure"]) == {"raw"}
    summary = json.loads((results / "toy" / "layer4" / "summary.json").read_text())
    at = iou_rows(collection).set_index("iou")["unique"]
    assert at[0.04] == summary["unique_per_category"]["all"] and at[0.02] >= at[0.04] >= at[0.06]
    sections = {s["id"]: s for s in _compare_sections(collection, Panels())}
    assert sections["quantile"]["spec"] is not None and len(sections["quantile"]["rows"]) == 2
    assert sections["iou"]["columns"] == ["group", "iou", "measure", "layer4", "runs"]
    site = build_site([results], dataset, tmp_path / "site", workers=1)
    assert not list(site.glob("toy/layer4~tau*")) and (site / "toy" / "layer4" / "index.html").is_file()


def test_signed_saliency_maps_are_red_white_blue() -> None:
    from unitscope.report.saliency import _diverging_rgb

    colours = _diverging_rgb(np.array([[1.0, 0.5, 0.0, -0.5, -1.0]]))
    assert colours.tolist() == [[[255, 0, 0], [255, 128, 128], [255, 255, 255], [128, 128, 255], [0, 0, 255]]]
