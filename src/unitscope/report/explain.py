"""The explanations section: one page per model with every explained image (its class map, its logit split over
the units, the units that carry most of it with their labels and where they fire), and panels on the unit and
layer pages (:mod:`unitscope.explain`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from unitscope.explain.run import CONCEPTS_COLUMNS, IMAGES_COLUMNS, UNITS_COLUMNS
from unitscope.report.collect import ReportInputError, read_result, read_table, slugify
from unitscope.report.sections import NavLink, Panel, Panels, Section, SiteInputs
from unitscope.report.strips import overlay, save_webp, upsample

if TYPE_CHECKING:
    from unitscope.report.site import SiteWriter

#: Sides of the explained image and of each unit's view on the page, in pixels.
IMAGE_TILE, UNIT_TILE = 192, 96
WEIGHTING_TEXT = {
    "cam": "the classifier is a linear layer on the global average of this layer, so the logit is exactly the bias "
           "plus the units' contributions w<sub>c,k</sub> · mean(A<sub>k</sub>) (Zhou et al. 2018); the class map is "
           "Σ<sub>k</sub> w<sub>c,k</sub> A<sub>k</sub> (CAM)",
    "grad-cam": "the classifier is not a linear layer on this layer's global average, so each unit's weight is "
                "Grad-CAM's (the mean gradient of the logit over its map) and its contribution that weight times its "
                "summed activation: the contributions need not add up to the logit",
}


@dataclass
class _Model:
    directory: Path
    meta: dict
    images: pd.DataFrame
    units: pd.DataFrame
    concepts: pd.DataFrame

    @property
    def folder(self) -> str:
        return f"explain/{slugify(self.meta['model'])}"

    def picture(self, image: str, unit: int | None = None) -> str:
        return f"{self.folder}/{slugify(image)}-{'cam' if unit is None else f'unit-{unit:04d}'}.webp"


class ExplanationSection(Section):
    """Predictions explained by interpreted units (Zhou et al. 2018)."""

    kind = "prediction-explanation"

    def __init__(self, directories: Sequence[Path], inputs: SiteInputs) -> None:
        super().__init__(directories, inputs)
        self.models: dict[str, _Model] = {}
        for directory in self.directories:
            meta = read_result(directory, ("meta.json", "images.csv", "units.csv", "concepts.csv", "maps.npz"),
                               "explain")
            if meta["model"] in self.models:
                raise ReportInputError(f"{directory}: a second explanation of {meta['model']}; give one per model")
            names = {"image": str, "source": str, "class_name": str, "label": str, "name": str}  # "000016" is a name
            options = {"keep_default_na": False, "dtype": names}
            self.models[meta["model"]] = _Model(
                directory, meta, read_table(directory / "images.csv", IMAGES_COLUMNS, na_values=[""], **options),
                read_table(directory / "units.csv", UNITS_COLUMNS, **options),
                read_table(directory / "concepts.csv", CONCEPTS_COLUMNS, **options))

    def nav(self) -> list[NavLink]:
        return [NavLink("Explanations", "explain/index.html", "explain")]

    def write_pages(self, site: SiteWriter, panels: Panels) -> None:
        for model, entry in sorted(self.models.items()):
            self._pictures(site, entry)
            cards = [self._card(entry, row) for row in entry.images.to_dict("records")]
            site.page(f"explain/{slugify(model)}.html", "explain.html", title=f"Explanations · {model}",
                      section="explain", entry=entry, cards=cards, weighting=WEIGHTING_TEXT[entry.meta["weighting"]],
                      unit_page=partial(panels.unit_page, entry.meta["model"], entry.meta["layer"]),
                      image_tile=IMAGE_TILE, unit_tile=UNIT_TILE,
                      crumbs=[("Explanations", "index.html"), (model, None)])
        site.page("explain/index.html", "explain_index.html", title="Explanations", section="explain",
                  models=[{"name": model, "path": f"{slugify(model)}.html", "layer": entry.meta["layer"],
                           "images": len(entry.images), "share": _mean_share(entry)}
                          for model, entry in sorted(self.models.items())])

    @staticmethod
    def _pictures(site: SiteWriter, entry: _Model) -> None:
        """Each image dimmed where its class map is low, and each top unit's mask (above T_u) over the image."""
        (site.root / entry.folder).mkdir(parents=True, exist_ok=True)
        with np.load(entry.directory / "maps.npz") as maps:
            pixels, cams, thresholds = maps["pixels"], maps["cam"], maps["thresholds"]
            top_units, top_maps = maps["top_units"], maps["top_maps"]
        size = pixels.shape[1:3]
        for i, name in enumerate(entry.images["image"]):
            heat = np.clip(upsample(cams[i], size), 0, None)
            heat = heat / heat.max() if heat.max() > 0 else heat
            save_webp(_resized((pixels[i] * (0.2 + 0.8 * heat[..., None])).round().astype(np.uint8), IMAGE_TILE),
                      site.root / entry.picture(name))
            masks = upsample(top_maps[i], size) > thresholds[top_units[i] - 1][:, None, None]
            tiles = np.repeat(_resized(pixels[i], UNIT_TILE)[None], len(masks), axis=0)
            for unit, tile in zip(top_units[i], overlay(tiles, masks)):
                save_webp(tile, site.root / entry.picture(name, int(unit)))

    @staticmethod
    def _card(entry: _Model, row: dict) -> dict:
        units = entry.units[entry.units["image"] == row["image"]].sort_values("rank")
        concepts = entry.concepts[entry.concepts["image"] == row["image"]]
        return {"row": row, "picture": entry.picture(row["image"]),
                "units": [{**unit, "picture": entry.picture(row["image"], int(unit["unit"]))}
                          for unit in units.to_dict("records")],
                "categories": concepts[concepts["kind"] == "category"].to_dict("records"),
                "concepts": concepts[concepts["kind"] == "concept"].head(5).to_dict("records")}

    def unit_panels(self, model: str, layer: str, unit: int) -> list[Panel]:
        entry = self.models.get(model)
        if entry is None or entry.meta["layer"] != layer:
            return []
        rows = entry.units[entry.units["unit"] == unit]
        if rows.empty:
            return []
        names = entry.images.set_index("image")["class_name"]
        items = "".join(f"<li>{escape(str(r.image))} ({escape(str(names[r.image]))}): rank {r.rank}, "
                        f"{r.contribution:+.3f}</li>" for r in rows.itertuples())
        return [Panel("In explained predictions",
                      f"<p>Among the {len(entry.units['rank'].unique())} units contributing most to the predicted "
                      f"logit of these images (<a href=\"../../explain/{slugify(model)}.html\">all explained "
                      f"images</a>):</p><ul>{items}</ul>")]

    def layer_panels(self, model: str, layer: str) -> list[Panel]:
        entry = self.models.get(model)
        if entry is None or entry.meta["layer"] != layer:
            return []
        return [Panel("Explained predictions",
                      f"<p>{len(entry.images)} images' predictions are split over this layer's units "
                      f"({'CAM: exact' if entry.meta['weighting'] == 'cam' else 'Grad-CAM weights'}); its "
                      f"{entry.meta['interpretable_units']} interpretable units carry on average "
                      f"{_mean_share(entry)} of the units' part of the logit "
                      f'(<a href="../../explain/{slugify(model)}.html">the images</a>).</p>')]


def _mean_share(entry: _Model) -> str:
    share = entry.images["interpretable_share"].dropna()
    return f"{share.mean():.0%}" if len(share) else "–"


def _resized(pixels: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.BILINEAR))
