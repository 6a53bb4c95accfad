"""The unit-visualisation section: each unit's optimised image(s) on its unit page, and one page per model with
every visualised unit of every layer (:mod:`unitscope.visualize`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from unitscope.report.collect import ReportInputError, layer_key, read_result, read_table, slugify
from unitscope.report.sections import NavLink, Panel, Panels, Section, SiteInputs, table_html
from unitscope.report.strips import save_webp
from unitscope.visualize.run import UNITS_COLUMNS, VIEW_TILE

if TYPE_CHECKING:
    from unitscope.report.site import SiteWriter

METHOD_NAMES = {"lucid": "Lucid (Fourier image, transforms)", "pixel": "pixels (Yosinski et al.)"}
VIEW_NAMES = {"image": "top image", "deconvnet": "DeconvNet", "guided-backprop": "guided backprop"}
#: Side of an optimised image on the pages, in pixels.
TILE = 128


@dataclass
class _Layer:
    directory: Path
    meta: dict
    units: pd.DataFrame
    views: pd.DataFrame | None

    @property
    def folder(self) -> str:
        return f"visualize/{slugify(self.meta['model'])}/{slugify(self.meta['layer'])}"

    def image(self, unit: int, method: str, copy: int) -> str:
        return f"{self.folder}/unit-{unit:04d}-{method}-{copy}.webp"

    def view(self, unit: int, rank: int, kind: str) -> str:
        return f"{self.folder}/unit-{unit:04d}-top{rank}-{kind}.webp"


class VisualizationSection(Section):
    """Activation maximisation: the image each unit prefers beside its activation on it and its highest
    activation over the dataset (flagged where the image does not reach it)."""

    kind = "unit-visualization"

    def __init__(self, directories: Sequence[Path], inputs: SiteInputs) -> None:
        super().__init__(directories, inputs)
        self.layers: dict[tuple[str, str], _Layer] = {}
        for directory in self.directories:
            meta = read_result(directory, ("meta.json", "units.csv", "images.npz"), "visualize")
            units = read_table(directory / "units.csv", UNITS_COLUMNS)
            key = layer_key(meta, self.layers, directory, "visualisation")
            views = pd.read_csv(directory / "views.csv", keep_default_na=False) if meta.get("top_images") else None
            self.layers[key] = _Layer(directory, meta, units, views)

    def nav(self) -> list[NavLink]:
        return [NavLink("Visualisations", "visualize/index.html", "visualize")]

    def write_pages(self, site: SiteWriter, panels: Panels) -> None:
        models: dict[str, list[dict]] = {}
        for (model, layer), entry in sorted(self.layers.items()):
            (site.root / entry.folder).mkdir(parents=True, exist_ok=True)
            with np.load(entry.directory / "images.npz") as images:
                for method in entry.meta["settings"]["methods"]:
                    for u, unit in enumerate(entry.meta["units"]):
                        for copy, pixels in enumerate(images[method][u]):
                            save_webp(_tile(pixels), site.root / entry.image(unit, method, copy))
            if entry.views is not None:
                position = {unit: u for u, unit in enumerate(entry.meta["units"])}
                with np.load(entry.directory / "views.npz") as views:
                    for row in entry.views.itertuples():
                        for kind in VIEW_NAMES:
                            save_webp(views[kind][position[row.unit], row.rank - 1],
                                      site.root / entry.view(row.unit, row.rank, kind))
            models.setdefault(model, []).append({
                "layer": layer, "entry": entry, "methods": entry.meta["settings"]["methods"],
                "cards": [self._card(entry, unit) for unit in entry.meta["units"]],
                "reached": _reached(entry.units)})
        for model, layers in models.items():
            site.page(f"visualize/{slugify(model)}.html", "visualize.html", title=f"Visualisations · {model}",
                      section="visualize", model=model, layers=layers, names=METHOD_NAMES, tile=TILE,
                      unit_page=partial(panels.unit_page, model),
                      crumbs=[("Visualisations", "index.html"), (model, None)])
        site.page("visualize/index.html", "visualize_index.html", title="Visualisations", section="visualize",
                  models=[{"name": model, "path": f"{slugify(model)}.html",
                           "layers": [layer["layer"] for layer in layers]} for model, layers in models.items()])

    def _card(self, entry: _Layer, unit: int) -> dict:
        rows = entry.units[entry.units["unit"] == unit]
        return {"unit": unit, "rows": rows.to_dict("records")}

    def unit_panels(self, model: str, layer: str, unit: int) -> list[Panel]:
        entry = self.layers.get((model, layer))
        if entry is None or unit not in entry.meta["units"]:
            return []
        rows = entry.units[entry.units["unit"] == unit]
        settings = entry.meta["settings"]
        figures = []
        for row in rows.itertuples():
            figures.append(
                f'<figure class="tile"><img src="../../{entry.image(unit, row.method, row.copy)}" width="{TILE}" '
                f'height="{TILE}" loading="lazy" alt="{escape(METHOD_NAMES[row.method])} image of unit {unit}">'
                f"<figcaption>{escape(METHOD_NAMES[row.method])}<br>{_activation_text(row)}</figcaption></figure>")
        objective = "mean over its map" if entry.meta["objective"] == "channel" else "centre neuron"
        where = (f" before its rectifier (<code>{escape(entry.meta['objective_layer'])}</code>)"
                 if entry.meta["objective_layer"] != layer else "")
        steps = "; ".join(({"lucid": f"Lucid: {settings['steps']} Adam steps on a {settings['size']} px Fourier image",
                             "pixel": f"pixels: {settings['pixel_steps']} steps"})[m] for m in settings["methods"])
        html = (f"<p>Images optimised to maximise this unit's {objective}{where} ({steps}). "
                f"The activation under each image is the unit's own "
                f'(after its rectifier). <a href="../../visualize/{slugify(model)}.html">All visualised units of '
                f'{escape(model)}</a>.</p><div class="tiles">{"".join(figures)}</div>')
        panels = [Panel("Activation maximisation", html)]
        if entry.views is not None:
            panels.append(Panel("Where it looks in its top images", self._views_html(entry, unit)))
        return panels

    def _views_html(self, entry: _Layer, unit: int) -> str:
        rows = []
        for row in entry.views[entry.views["unit"] == unit].itertuples():
            cells = "".join(f'<td><img src="../../{entry.view(unit, row.rank, kind)}" width="{VIEW_TILE}" '
                            f'height="{VIEW_TILE}" loading="lazy" alt="{name}, top image {row.rank}"></td>'
                            for kind, name in VIEW_NAMES.items())
            side = row.bottom - row.top
            rows.append(f"<tr><th scope=\"row\">{row.rank}</th>{cells}<td>{row.activation:.3g} at map position "
                        f"({row.row}, {row.column}); crop {side}×{side} px</td></tr>")
        return ("<p>The unit's strongest activation on each of its top images, everything else in the layer zeroed, "
                "projected back to the pixels: by DeconvNet (Zeiler &amp; Fergus 2014; the positive signal passes every "
                "rectifier) and by guided backprop (only where the rectifier's input was in its linear range too, so a "
                "ReLU6 unit kept at its ceiling of 6 passes nothing and its guided view is grey). Grey is 0; the "
                "crop is the square the projections reach.</p>"
                + table_html(["rank", *VIEW_NAMES.values(), "kept activation"], "".join(rows), "maps"))

    def layer_panels(self, model: str, layer: str) -> list[Panel]:
        entry = self.layers.get((model, layer))
        if entry is None:
            return []
        if not entry.meta["units"]:
            return [Panel("Activation maximisation", "<p>The dissection found no detector in this layer: no unit "
                                                     "was visualised.</p>")]
        html = (f'<p>{len(entry.meta["units"])} units of this layer are visualised by activation maximisation '
                f'(<a href="../../visualize/{slugify(model)}.html">their images</a>). '
                f'{escape(_reached(entry.units))}</p>')
        return [Panel("Activation maximisation", html)]


def _tile(pixels: np.ndarray) -> np.ndarray:
    """An image scaled (nearest) to about :data:`TILE` pixels a side."""
    factor = max(1, math.floor(TILE / pixels.shape[0])) if pixels.shape[0] < TILE else 1
    scaled = np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)
    return np.ascontiguousarray(scaled)


def _activation_text(row) -> str:
    text = f"peak activation {row.peak:.3g}"
    if pd.notna(row.dataset_peak):
        mark = "" if row.reaches_dataset else ' <strong class="flag">below the dataset\'s best</strong>'
        text += f" (dataset's highest: {row.dataset_peak:.3g}){mark}"
    return text


def _reached(units: pd.DataFrame) -> str:
    """How many optimised images reach the unit's highest activation over the dataset, by method."""
    known = units.dropna(subset=["dataset_peak"])
    if known.empty:
        return ""
    parts = [f"{METHOD_NAMES[method]}: {int(group['reaches_dataset'].astype(bool).sum())} of {len(group)}"
             for method, group in known.groupby("method", sort=False)]
    return ("Images whose peak activation of the unit reaches its highest over the dataset's images — "
            + "; ".join(parts) + ".")


@dataclass
class _Inversion:
    directory: Path
    meta: dict
    table: pd.DataFrame

    @property
    def folder(self) -> str:
        return f"invert/{slugify(self.meta['model'])}"

    def image(self, layer: str | None, index: int) -> str:
        return f"{self.folder}/{'original' if layer is None else slugify(layer)}-{index:02d}.webp"


class InversionSection(Section):
    """Network inversion: what each layer keeps of a few images, on the layer pages and in one figure per model
    (images through all layers in depth order)."""

    kind = "inversion"

    def __init__(self, directories: Sequence[Path], inputs: SiteInputs) -> None:
        super().__init__(directories, inputs)
        self.models: dict[str, _Inversion] = {}
        for directory in self.directories:
            meta = read_result(directory, ("meta.json", "layers.csv", "reconstructions.npz"), "invert")
            if meta["model"] in self.models:
                raise ReportInputError(f"{directory}: a second inversion of {meta['model']}; give one per model")
            self.models[meta["model"]] = _Inversion(directory, meta, pd.read_csv(directory / "layers.csv"))

    def nav(self) -> list[NavLink]:
        return [NavLink("Inversion", "invert/index.html", "invert")]

    def write_pages(self, site: SiteWriter, panels: Panels) -> None:
        for model, entry in sorted(self.models.items()):
            (site.root / entry.folder).mkdir(parents=True, exist_ok=True)
            with np.load(entry.directory / "reconstructions.npz") as arrays:
                for i, pixels in enumerate(arrays["original"]):
                    save_webp(pixels, site.root / entry.image(None, i))
                for layer, images in zip(entry.meta["layers"], arrays["reconstructions"], strict=True):
                    for i, pixels in enumerate(images):
                        save_webp(pixels, site.root / entry.image(layer, i))
            site.page(f"invert/{slugify(model)}.html", "invert.html", title=f"Inversion · {model}", section="invert",
                      entry=entry, rows=self._rows(entry), crumbs=[("Inversion", "index.html"), (model, None)])
        site.page("invert/index.html", "invert_index.html", title="Inversion", section="invert",
                  models=[{"name": model, "path": f"{slugify(model)}.html", "layers": entry.meta["layers"]}
                          for model, entry in sorted(self.models.items())])

    @staticmethod
    def _rows(entry: _Inversion) -> list[dict]:
        """One row per image: the original, then each layer's reconstruction with its error and SSIM."""
        rows = []
        for i, image in enumerate(entry.meta["images"]):
            cells = []
            for layer in entry.meta["layers"]:
                row = entry.table[(entry.table["layer"] == layer) & (entry.table["image"] == image["name"])].iloc[0]
                cells.append({"layer": layer, "path": entry.image(layer, i), "ssim": row["ssim"],
                              "error": _inversion_error(row["status"], row["relative_error"], row["lr_scale"])})
            rows.append({"name": image["name"], "original": entry.image(None, i), "cells": cells})
        return rows

    def layer_panels(self, model: str, layer: str) -> list[Panel]:
        entry = self.models.get(model)
        if entry is None or layer not in entry.meta["layers"]:
            return []
        figures = []
        for row in self._rows(entry):
            cell = next(c for c in row["cells"] if c["layer"] == layer)
            figures.append(
                f'<figure class="tile"><img src="../../{row["original"]}" width="{TILE}" height="{TILE}" '
                f'loading="lazy" alt="{escape(row["name"])}"><figcaption>{escape(row["name"])}</figcaption></figure>'
                f'<figure class="tile"><img src="../../{cell["path"]}" width="{TILE}" height="{TILE}" loading="lazy" '
                f'alt="reconstruction of {escape(row["name"])} from {escape(layer)}"><figcaption>from this layer: '
                f'feature error {cell["error"]}, SSIM {cell["ssim"]:.2f}</figcaption></figure>')
        html = ("<p>The image whose representation at this layer is closest to each original's, under natural-image "
                "priors (Mahendran &amp; Vedaldi 2015): what the layer still knows of the image. Feature error: "
                "‖Φ(x) − Φ₀‖² / ‖Φ₀‖²; SSIM to the original. "
                f'<a href="../../invert/{slugify(model)}.html">Every layer of {escape(model)}</a>.</p>'
                f'<div class="tiles">{"".join(figures)}</div>')
        return [Panel("Network inversion", html)]


def _inversion_error(status: str, error: float, lr_scale: float) -> str:
    """A reconstruction's relative feature error as the pages show it, with the learning rate where it was cut."""
    if status == "zero":
        return "undefined (the layer is zero on the image; not inverted)"
    if status == "diverged":
        return f"diverged down to {lr_scale:g}× the authors' rate (left grey)"
    return f"{error:.3f}" + (f" (at {lr_scale:g}× the authors' rate)" if lr_scale < 1 else "")
