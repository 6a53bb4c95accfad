"""The unit-ablation section: on each unit page the classes that removing the unit hurts most, on each layer page
what removing each class's most important units does, and one page per model (:mod:`unitscope.ablation`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from unitscope.ablation.run import CLASSES_COLUMNS, UNITS_COLUMNS
from unitscope.report.collect import layer_key, read_result, read_table, slugify
from unitscope.report.sections import NavLink, Panel, Panels, Section, SiteInputs, table_html

if TYPE_CHECKING:
    from unitscope.report.site import SiteWriter

#: Classes listed on a unit page, most hurt first.
SHOWN_CLASSES = 3


@dataclass
class _Layer:
    directory: Path
    meta: dict
    units: pd.DataFrame
    classes: pd.DataFrame

    def hurt(self, unit: int) -> pd.DataFrame:
        """The unit's rows, the largest drop of a class's mean logit first."""
        rows = self.units[(self.units["unit"] == unit) & (self.units["images"] > 0)].copy()
        rows["drop"] = rows["logit"] - rows["ablated_logit"]
        return rows.sort_values("drop", ascending=False, kind="stable")


class AblationSection(Section):
    """Unit ablation: what zeroing units does to each class of a scene classifier (Bau et al. 2020)."""

    kind = "ablation"

    def __init__(self, directories: Sequence[Path], inputs: SiteInputs) -> None:
        super().__init__(directories, inputs)
        self.layers: dict[tuple[str, str], _Layer] = {}
        for directory in self.directories:
            meta = read_result(directory, ("meta.json", "units.csv", "classes.csv"), "ablate")
            units = read_table(directory / "units.csv", UNITS_COLUMNS, keep_default_na=False, na_values=[""])
            classes = read_table(directory / "classes.csv", CLASSES_COLUMNS, keep_default_na=False, na_values=[""],
                                 dtype={"units": str, "labels": str})
            key = layer_key(meta, self.layers, directory, "ablation")
            self.layers[key] = _Layer(directory, meta, units, classes.fillna({"labels": ""}))

    def nav(self) -> list[NavLink]:
        return [NavLink("Ablation", "ablation/index.html", "ablation")]

    def write_pages(self, site: SiteWriter, panels: Panels) -> None:
        models: dict[str, list[dict]] = {}
        for (model, layer), entry in sorted(self.layers.items()):
            models.setdefault(model, []).append({"layer": layer, "entry": entry, "classes": _class_tables(entry)})
        for model, layers in models.items():
            site.page(f"ablation/{slugify(model)}.html", "ablation.html", title=f"Ablation · {model}",
                      section="ablation", model=model, layers=layers,
                      unit_page=partial(panels.unit_page, model),
                      crumbs=[("Ablation", "index.html"), (model, None)])
        site.page("ablation/index.html", "ablation_index.html", title="Ablation", section="ablation",
                  models=[{"name": model, "path": f"{slugify(model)}.html", "layers": [entry["layer"] for entry in layers]}
                          for model, layers in models.items()])

    def unit_panels(self, model: str, layer: str, unit: int) -> list[Panel]:
        entry = self.layers.get((model, layer))
        if entry is None:
            return []
        rows = entry.hurt(unit).head(SHOWN_CLASSES)
        if rows.empty:
            return []
        first = rows.iloc[0]
        if first["drop"] > 0:
            lead = (f"<strong>Removing this unit lowers {escape(first['class'])} by {first['drop']:.3f} in mean "
                    f"logit</strong> (accuracy {first['accuracy']:.2f} → {first['ablated_accuracy']:.2f})")
        else:
            lead = "<strong>Removing this unit lowers no class's mean logit</strong>"
        body = "".join(
            f"<tr><td>{escape(row['class'])}</td><td>{row['logit']:.3f} → {row['ablated_logit']:.3f} "
            f"({-row['drop']:+.3f})</td><td>{row['accuracy']:.2f} → {row['ablated_accuracy']:.2f}</td>"
            f"<td>{row['images']}</td></tr>" for _, row in rows.iterrows())
        html = (f"<p>{lead} on the {escape(entry.meta['split'])} images of each class: the unit zeroed, the rest of "
                f"{escape(model)} unchanged (Bau et al. 2020). The classes whose logit it changes most:</p>"
                + table_html(["class", "mean logit of the class on its images", "accuracy", "images"], body) +
                f'<p><a href="../../ablation/{slugify(model)}.html">Every class of {escape(model)}</a>.</p>')
        return [Panel("Ablation", html)]

    def layer_panels(self, model: str, layer: str) -> list[Panel]:
        entry = self.layers.get((model, layer))
        if entry is None:
            return []
        largest = entry.classes[entry.classes["n"] == entry.classes["n"].max()]
        largest = largest[largest["images"] > 0]
        if largest.empty:
            return [Panel("Ablation", "<p>No class has an image to measure ablations on.</p>")]
        html = (f"<p>Removing the {int(largest['n'].iloc[0])} units that matter most to each class leaves it a mean "
                f"accuracy of {largest['removed_accuracy'].mean():.2f} (as many random units: "
                f"{largest['random_accuracy'].mean():.2f}; every unit: {entry.meta['accuracy']:.2f}), over "
                f"{entry.meta['images']} {escape(entry.meta['split'])} images "
                f'(<a href="../../ablation/{slugify(model)}.html">per class</a>).</p>')
        return [Panel("Ablation", html)]


def _class_tables(entry: _Layer) -> list[dict]:
    """Per class: its rows by n, and its most important units (up to 8) with their dissection labels."""
    tables = []
    for name, rows in entry.classes.groupby("class", sort=False):
        rows = rows.sort_values("n")
        widest = rows.iloc[-1]
        units = widest["units"].split()
        labels = widest["labels"].split(";") if widest["labels"] else [""] * len(units)
        tables.append({"name": name, "images": int(rows["images"].iloc[0]), "rows": rows.to_dict("records"),
                       "top": [{"unit": int(u), "label": label} for u, label in zip(units[:8], labels[:8])]})
    return tables
