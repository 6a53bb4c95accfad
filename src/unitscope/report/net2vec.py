"""The Net2Vec section: per model, each probed layer's concepts as combinations of units against the best single
unit, under both IoU protocols, beside the paper's numbers; panels on concept and layer pages (:mod:`unitscope.net2vec`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from unitscope.net2vec.run import CONCEPTS_COLUMNS, SPARSITY_COLUMNS
from unitscope.report.collect import layer_key, read_json, read_result, read_table, slugify
from unitscope.report.sections import NavLink, Panel, Panels, Section, SiteInputs, table_html

if TYPE_CHECKING:
    from unitscope.report.site import SiteWriter


@dataclass
class _Layer:
    directory: Path
    meta: dict
    summary: dict
    concepts: pd.DataFrame
    sparsity: pd.DataFrame

    def curve(self) -> list[dict]:
        """Mean val IoU (both protocols) of the combinations kept to their k largest weights, by k."""
        evaluated = self.concepts.loc[self.concepts["val_images"] > 0, "number"]
        rows = self.sparsity[self.sparsity["number"].isin(evaluated)]
        return [{"k": int(k), "iou": group["iou"].mean(), "iou_dissection": group["iou_dissection"].mean()}
                for k, group in rows.groupby("k")]


class Net2VecSection(Section):
    """Net2Vec (Fong & Vedaldi 2018): how much better a weighted combination of units segments and detects each
    concept than the best single unit."""

    kind = "net2vec"

    def __init__(self, directories: Sequence[Path], inputs: SiteInputs) -> None:
        super().__init__(directories, inputs)
        self.layers: dict[tuple[str, str], _Layer] = {}
        for directory in self.directories:
            meta = read_result(directory, ("meta.json", "concepts.csv", "sparsity.csv", "summary.json"), "net2vec")
            options = {"keep_default_na": False, "na_values": [""]}
            self.layers[layer_key(meta, self.layers, directory, "Net2Vec result")] = _Layer(
                directory, meta, read_json(directory / "summary.json"),
                read_table(directory / "concepts.csv", CONCEPTS_COLUMNS, **options),
                read_table(directory / "sparsity.csv", SPARSITY_COLUMNS, **options))

    def nav(self) -> list[NavLink]:
        return [NavLink("Net2Vec", "net2vec/index.html", "net2vec")]

    def write_pages(self, site: SiteWriter, panels: Panels) -> None:
        models: dict[str, list[dict]] = {}
        for (model, layer), entry in sorted(self.layers.items()):
            rows = entry.concepts.sort_values(["iou", "number"], ascending=[False, True])
            means = {protocol: {name: _number(value) for name, value in values.items()}
                     for protocol, values in entry.summary["mean"].items()}
            models.setdefault(model, []).append({"layer": layer, "entry": entry, "curve": entry.curve(),
                                                 "rows": rows.to_dict("records"), "means": means})
        for model, layers in models.items():
            site.page(f"net2vec/{slugify(model)}.html", "net2vec.html", title=f"Net2Vec · {model}", section="net2vec",
                      model=model, layers=layers, number=_number,
                      unit_page=partial(panels.unit_page, model),
                      crumbs=[("Net2Vec", "index.html"), (model, None)])
        reference = next(iter(self.layers.values())).summary["reference"] if self.layers else {}
        site.page("net2vec/index.html", "net2vec_index.html", title="Net2Vec", section="net2vec", reference=reference,
                  models=[{"name": model, "path": f"{slugify(model)}.html", "layers": layers}
                          for model, layers in models.items()])

    def concept_panels(self, name: str) -> list[Panel]:
        rows = []
        for (model, layer), entry in sorted(self.layers.items()):
            found = entry.concepts[entry.concepts["concept"] == name]
            for row in found.itertuples():
                rows.append(f"<tr><td>{escape(model)} · {escape(layer)}</td><td>{_number(row.iou)}</td>"
                            f"<td>{_number(row.unit_iou)} (unit {row.unit})</td><td>{row.units_90}</td>"
                            f"<td>{row.val_images}</td></tr>")
        if not rows:
            return []
        html = ("<p>The concept as a weighted combination of a layer's binarised units (Net2Vec, Fong &amp; Vedaldi "
                "2018), trained on the train images, against the layer's best single unit; IoU on the val images that "
                "contain the concept (Net2Vec's protocol).</p>"
                + table_html(["layer", "combination", "best single unit", "units carrying 90 % of |w|", "val images"],
                             "".join(rows)))
        return [Panel("Net2Vec", html)]

    def layer_panels(self, model: str, layer: str) -> list[Panel]:
        entry = self.layers.get((model, layer))
        if entry is None:
            return []
        mean = entry.summary["mean"]["net2vec"]
        html = (f"<p>Over the {entry.summary['evaluated']} concepts with val images, a weighted combination of this "
                f"layer's units segments a concept with a mean IoU of {_number(mean['combination'])}, the best single "
                f"unit {_number(mean['single unit'])} (Net2Vec's protocol; "
                f'<a href="../../net2vec/{slugify(model)}.html">every concept</a>).</p>')
        return [Panel("Net2Vec", html)]


def _number(value: float | None) -> str:
    """Three decimals, or a dash where there is nothing to show (no val image, or NaN)."""
    return "–" if value is None or value != value else f"{value:.3f}"
