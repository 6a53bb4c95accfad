"""The report's sections: each kind of result contributes to the site through one small protocol.

A :class:`Section` gets the result directories of its kind (``meta.json`` ``kind``; the report reads only the
directories it is given) and contributes its pages, its navigation links, panels on the pages of other
sections (a unit, a layer, a concept) and rows of the site search. Dissection is the first section
(:mod:`unitscope.report.dissection`); ``docs/report.md`` ("Adding an analysis") shows how to add one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unitscope.report.site import SiteWriter


@dataclass(frozen=True)
class NavLink:
    """A link of the site's navigation bar; ``section`` marks the pages on which it is the current one."""

    title: str
    path: str
    section: str


@dataclass(frozen=True)
class Panel:
    """A piece of another section's page: a heading and trusted HTML (rendered by the section that made it)."""

    title: str
    html: str


def table_html(headers: Sequence[str], rows: str, css_class: str = "") -> str:
    """A panel's table: ``headers`` (trusted HTML) as the column headings over ``rows`` (trusted ``<tr>`` HTML), in the
    scrolling wrapper the site's stylesheet gives tables."""
    attribute = f' class="{css_class}"' if css_class else ""
    head = "".join(f'<th scope="col">{header}</th>' for header in headers)
    return f'<div class="table-wrap"><table{attribute}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


@dataclass
class SiteInputs:
    """What every section may read besides its own result directories."""

    dataset: Path
    reference: Path | None = None
    citation: str | None = None
    tile_height: int | None = None
    workers: int | None = None
    provenance: Sequence[Path] = ()


@dataclass
class Panels:
    """The panels every section adds to the pages of the others, looked up by the page they belong on."""

    sections: Sequence[Section] = field(default_factory=list)

    def unit(self, model: str, layer: str, unit: int) -> list[Panel]:
        return [panel for section in self.sections for panel in section.unit_panels(model, layer, unit)]

    def layer(self, model: str, layer: str) -> list[Panel]:
        return [panel for section in self.sections for panel in section.layer_panels(model, layer)]

    def concept(self, name: str) -> list[Panel]:
        return [panel for section in self.sections for panel in section.concept_panels(name)]

    def unit_page(self, model: str, layer: str, unit: int) -> str | None:
        """The site path of the page of 1-based ``unit`` of (model, layer), ``None`` where no section has one."""
        return next((page for section in self.sections if (page := section.unit_page(model, layer, unit))), None)


class Section:
    """One kind of result on the site. Subclasses set :attr:`kind` and override what they contribute."""

    #: The ``kind`` of ``meta.json`` this section shows.
    kind: str = ""

    def __init__(self, directories: Sequence[Path], inputs: SiteInputs) -> None:
        """Read and validate the result directories (raise ``ReportInputError`` on bad input)."""
        self.directories, self.inputs = list(directories), inputs

    def nav(self) -> list[NavLink]:
        return []

    def write_pages(self, site: SiteWriter, panels: Panels) -> None:
        """Write this section's pages; ``panels`` holds what the other sections add to them."""

    def unit_panels(self, model: str, layer: str, unit: int) -> list[Panel]:
        return []

    def layer_panels(self, model: str, layer: str) -> list[Panel]:
        return []

    def concept_panels(self, name: str) -> list[Panel]:
        return []

    def unit_page(self, model: str, layer: str, unit: int) -> str | None:
        """The site path of this section's page of 1-based ``unit`` of (model, layer), if it writes one."""
        return None

    def search_rows(self) -> Mapping[str, list[list]]:
        """Rows of the site search by list (``concepts``, ``units``); see :mod:`unitscope.report.search`."""
        return {}
