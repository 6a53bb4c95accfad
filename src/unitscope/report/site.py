"""Build the static report site from its sections: collect results by kind, let each section write its pages.

The site is written to a temporary sibling directory and renamed into place when complete. Output is
deterministic: the same inputs give a byte-identical site. Links are relative, data ships as
``<script>`` files and the Vega bundle is written once to ``assets/vega.js``, so the site works from
``file://`` and under any sub-path of a web server. Sections: :mod:`unitscope.report.sections`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import jinja2

from unitscope import __version__
from unitscope.cache import cache_dir
from unitscope.io import staged_directory, write_text
from unitscope.report import pages
from unitscope.report.collect import ReportInputError, result_directories
from unitscope.report.search import search_script
from unitscope.report.sections import NavLink, Panels, Section, SiteInputs
from unitscope.summary import display_name

HERE = Path(__file__).parent
ASSETS = ("style.css", "site.js")
SHORT = {"object": "obj", "material": "mat", "texture": "tex"}
#: The navigation link every site ends with (the provenance page).
PROVENANCE = NavLink("Provenance", "provenance.html", "provenance")


def sections() -> dict[str, type[Section]]:
    """The section class of every result kind the report shows, in navigation order."""
    from unitscope.report.ablation import AblationSection
    from unitscope.report.compositional import CompositionalSection
    from unitscope.report.dimension import DimensionSection
    from unitscope.report.explain import ExplanationSection
    from unitscope.report.net2vec import Net2VecSection
    from unitscope.report.dissection import DissectionSection
    from unitscope.report.saliency import SaliencySection, SanitySection
    from unitscope.report.visualize import InversionSection, VisualizationSection

    return {section.kind: section for section in (DissectionSection, DimensionSection, SaliencySection, SanitySection,
                                                  VisualizationSection, InversionSection, CompositionalSection,
                                                  AblationSection, ExplanationSection, Net2VecSection)}


@lru_cache(maxsize=1)
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one classic script defining ``window.vegaEmbed``.

    Bundling takes seconds, so the result is cached per vl-convert version under the user cache
    directory (:func:`unitscope.cache.cache_dir`).
    """
    import vl_convert

    path = cache_dir() / f"vega-bundle-{vl_convert.__version__}.js"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    bundle = vl_convert.javascript_bundle()
    try:
        write_text(bundle, path)
    except OSError:
        pass  # an unwritable cache only costs time
    return bundle


def _environment(nav: Sequence[NavLink]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(
        layer_path=pages.layer_path, unit_path=pages.unit_path, strip_path=pages.strip_path,
        concept_path=pages.concept_path, display=display_name, version=__version__,
        short=lambda category: SHORT.get(category, category), nav=list(nav),
    )
    return env


class SiteWriter:
    """Renders pages into ``root`` with links relative to each page."""

    def __init__(self, root: Path, nav: Sequence[NavLink] = ()) -> None:
        self.root = root
        self.env = _environment(nav)

    def page(self, path: str, template: str, **context) -> None:
        prefix = "../" * path.count("/")
        values = {"charts": False, "crumbs": None, "section": "", **context}
        html = self.env.get_template(template).render(root=prefix, url=lambda target: prefix + target, **values)
        self.write(path, html)

    def write(self, path: str, text: str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="\n")


def build_site(
    results: Sequence[str | Path],
    dataset: str | Path,
    out: str | Path,
    *,
    reference: str | Path | None = None,
    citation: str | Path | None = None,
    tile_height: int | None = None,
    workers: int | None = None,
    provenance: Sequence[str | Path] = (),
) -> Path:
    """Render the report site for the result directories ``results`` (or below them) into ``out``.

    ``provenance``: ``provenance.json`` files to show besides those found below ``results``.
    ``tile_height``: pixel height of each image in the strips (default: half the image height, 112 for
    224-px Broden, an exact 2x reduction); ``workers``: strip-rendering processes (default: CPU count).
    """
    citation_text = None
    if citation:
        try:
            citation_text = Path(citation).read_text(encoding="utf-8")
        except OSError as exc:
            raise ReportInputError(f"--citation {citation}: cannot read ({exc})") from exc
    by_kind, found = result_directories(results)
    inputs = SiteInputs(Path(dataset), Path(reference) if reference else None, citation_text, tile_height, workers,
                        [*map(Path, provenance), *found])
    known = sections()
    unknown = sorted(set(by_kind) - set(known))
    if unknown:
        raise ReportInputError(f"{by_kind[unknown[0]][0]}: results of kind {unknown[0]!r} have no report section "
                               f"(kinds shown: {', '.join(known)})")
    if "dissection" not in by_kind:  # its section writes the overview and provenance pages every site links to
        raise ReportInputError(f"--results {', '.join(map(str, results))}: no dissection results; the report shows "
                               "other analyses beside a dissection")
    present = [known[kind](by_kind[kind], inputs) for kind in known if kind in by_kind]
    nav = [link for section in present for link in section.nav()] + [PROVENANCE]
    out = Path(out)
    with staged_directory(out) as tmp:
        site = SiteWriter(tmp, nav)
        for name in ASSETS:
            site.write(f"assets/{name}", (HERE / "assets" / name).read_text(encoding="utf-8"))
        site.write("assets/vega.js", vega_bundle())
        for section in present:
            section.write_pages(site, Panels([other for other in present if other is not section]))
        rows: dict[str, list] = {"concepts": [], "units": []}
        for section in present:
            for key, values in section.search_rows().items():
                rows.setdefault(key, []).extend(values)
        site.write("assets/search-index.js", search_script(rows))
    return out
