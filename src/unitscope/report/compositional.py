"""The compositional-explanations section: each unit's best formula of each length on its unit page, the mean IoU by
formula length on its layer page, and one page per model with every explained unit (:mod:`unitscope.compositional`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from unitscope.compositional.run import FORMULAS_COLUMNS
from unitscope.report.collect import layer_key, read_json, read_result, read_table, slugify
from unitscope.report.sections import NavLink, Panel, Panels, Section, SiteInputs, table_html

if TYPE_CHECKING:
    from unitscope.report.site import SiteWriter

UNION_TEXT = {"dissection": "the union counts the unit's pixels as the dissection does (its presence rule), so a "
                            "single label scores its dissection IoU (where no pixel carries it in two layers)",
              "plain": "the plain IoU over every pixel of the dataset (Mu & Andreas)"}


@dataclass
class _Layer:
    directory: Path
    meta: dict
    summary: dict
    formulas: pd.DataFrame

    def rows(self, unit: int) -> pd.DataFrame:
        return self.formulas[self.formulas["unit"] == unit].sort_values("max_length")

    def best(self) -> pd.DataFrame:
        """Per unit: its best label (length 1) and its best formula (the longest allowed), IoUs and the gain."""
        longest = self.formulas["max_length"].max()
        one = self.formulas[self.formulas["max_length"] == 1].set_index("unit")
        best = self.formulas[self.formulas["max_length"] == longest].set_index("unit")
        table = pd.DataFrame({"label": one["formula"], "label_iou": one["iou"], "formula": best["formula"],
                              "length": best["length"], "iou": best["iou"]})
        table["gain"] = table["iou"] - table["label_iou"]
        return table.sort_values(["iou", "label_iou"], ascending=False).reset_index()


class CompositionalSection(Section):
    """Compositional explanations: formulas over concepts (OR, AND, AND NOT) that fit a unit's masks better than
    any single concept, with the IoU each length reaches."""

    kind = "compositional"

    def __init__(self, directories: Sequence[Path], inputs: SiteInputs) -> None:
        super().__init__(directories, inputs)
        self.layers: dict[tuple[str, str], _Layer] = {}
        for directory in self.directories:
            meta = read_result(directory, ("meta.json", "formulas.csv", "summary.json"), "compositional")
            formulas = read_table(directory / "formulas.csv", FORMULAS_COLUMNS, keep_default_na=False)
            key = layer_key(meta, self.layers, directory, "compositional explanation")
            self.layers[key] = _Layer(directory, meta, read_json(directory / "summary.json"), formulas)

    def nav(self) -> list[NavLink]:
        return [NavLink("Formulas", "compositional/index.html", "compositional")]

    def write_pages(self, site: SiteWriter, panels: Panels) -> None:
        models: dict[str, list[dict]] = {}
        for (model, layer), entry in sorted(self.layers.items()):
            models.setdefault(model, []).append({"layer": layer, "entry": entry, "best": entry.best().to_dict("records"),
                                                 "means": _means(entry)})
        for model, layers in models.items():
            site.page(f"compositional/{slugify(model)}.html", "compositional.html", title=f"Formulas · {model}",
                      section="compositional", model=model, layers=layers, union=UNION_TEXT,
                      unit_page=partial(panels.unit_page, model),
                      crumbs=[("Formulas", "index.html"), (model, None)])
        site.page("compositional/index.html", "compositional_index.html", title="Formulas", section="compositional",
                  models=[{"name": model, "path": f"{slugify(model)}.html", "layers": layers}
                          for model, layers in models.items()])

    def unit_panels(self, model: str, layer: str, unit: int) -> list[Panel]:
        entry = self.layers.get((model, layer))
        if entry is None:
            return []
        rows = entry.rows(unit)
        if rows.empty:
            return []
        if rows["length"].max() == 0:
            return [Panel("Compositional explanation", "<p>No concept occurs under this unit's masks.</p>")]
        body = "".join(
            f"<tr><td>{row.max_length}</td><td>{escape(row.formula)}</td><td>{row.iou:.3f}</td>"
            f"<td>{row.intersect:,} / {row.union:,}</td></tr>" for row in rows.itertuples())
        settings = entry.meta["settings"]
        html = (f"<p>The formula over concepts whose pixels best match this unit's masks over the dataset, by beam "
                f"search (beam {settings['beam']}; Mu &amp; Andreas 2020) on the exact IoU; "
                f"{escape(UNION_TEXT[settings['union']])}. Each row is the best formula of at most that many concepts (the "
                f"row above again where no longer one fits better). "
                f'<a href="../../compositional/{slugify(model)}.html">Every unit of {escape(model)}</a>.</p>'
                + table_html(["length at most", "formula", "IoU", "intersection / union (pixels)"], body))
        return [Panel("Compositional explanation", html)]

    def layer_panels(self, model: str, layer: str) -> list[Panel]:
        entry = self.layers.get((model, layer))
        if entry is None:
            return []
        means = "; ".join(f"length ≤ {m['length']}: {m['all']:.3f} ({m['detectors']})" for m in _means(entry))
        html = (f"<p>Mean IoU of the units' best formulas by the longest length allowed, over all "
                f"{entry.summary['units']} units (and over the dissection's {entry.summary['detectors']} detectors): "
                f"{escape(means)}. {entry.summary['longer_than_one']} units are fitted better by a formula than by "
                f'their best single concept (<a href="../../compositional/{slugify(model)}.html">formulas of every '
                f"unit</a>).</p>")
        return [Panel("Compositional explanations", html)]


def _means(entry: _Layer) -> list[dict]:
    detectors = entry.summary["mean_iou_detectors"]
    return [{"length": int(n), "all": value,
             "detectors": "–" if detectors.get(n) is None else f"{detectors[n]:.3f}"}
            for n, value in entry.summary["mean_iou"].items()]
