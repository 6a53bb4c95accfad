"""The saliency sections: each model's maps (image × method grid) and its sanity checks (the cascading figure,
similarity curves with their spread over images, the data randomisation table beside the paper's numbers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from unitscope.report.charts import sanity_chart
from unitscope.report.collect import ReportInputError, read_result, slugify
from unitscope.report.sections import NavLink, Panels, Section, SiteInputs
from unitscope.report.strips import save_webp
from unitscope.saliency.maps import diverging, grayscale
from unitscope.saliency.methods import SETTING_METHODS
from unitscope.saliency.run import RANDOM_LABELS, SIMILARITY_COLUMNS, summarize
from unitscope.saliency.similarity import CONTROLS, METRICS

#: Side of a map on the saliency pages and in the cascading figure, in pixels.
MAP_TILE = 112
FIGURE_TILE = 64
#: Adebayo et al. (2018), Fig. 5 (MNIST, data randomisation): rank correlation (absolute value) of the maps of the
#: true-label and the random-label model, as the issue and the paper's text give them (approximate).
PAPER_DATA_RANDOMIZATION = {"gradient": 0.17, "grad-cam": 0.0, "guided-backprop": 0.57, "gradient-input": 1.0,
                            "integrated-gradients": 1.0}
#: Where ours counts as different from the paper's number (their values are read off a figure).
PAPER_TOLERANCE = 0.15
if TYPE_CHECKING:
    from unitscope.report.site import SiteWriter

METHOD_NAMES = {"gradient": "Gradient", "gradient-input": "Gradient ⊙ Input", "integrated-gradients": "Integrated Gradients",
                "smoothgrad": "SmoothGrad", "smoothgrad-ig": "SmoothGrad (IG)", "guided-backprop": "Guided Backprop",
                "deconvnet": "DeconvNet", "grad-cam": "Grad-CAM", "guided-grad-cam": "Guided Grad-CAM",
                "sobel": "control: Sobel edges", "noise": "control: noise"}
METRIC_NAMES = {"spearman-abs": "Spearman (|map|)", "spearman": "Spearman (signed)", "ssim": "SSIM",
                "hog-pearson": "HOG Pearson"}


def _save_webp(site: SiteWriter, path: str, pixels: np.ndarray, side: int) -> None:
    target = site.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    save_webp(np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.BILINEAR)), target)


def _gray(values: np.ndarray) -> np.ndarray:
    return (np.clip(values, 0.0, 1.0) * 255).round().astype(np.uint8)


def _diverging_rgb(values: np.ndarray) -> np.ndarray:
    """A signed map in [−1, 1] as colours: white at 0, red for positive, blue for negative values."""
    values = np.clip(values, -1.0, 1.0)
    fade = 1.0 - np.abs(values)
    red = np.where(values >= 0, 1.0, fade)
    blue = np.where(values <= 0, 1.0, fade)
    return (np.stack([red, fade, blue], axis=-1) * 255).round().astype(np.uint8)


def _keyed(directories: Sequence[Path]) -> dict[str, Path]:
    """Each result directory under its name (the model's name in the workflow), made unique."""
    keyed: dict[str, Path] = {}
    for directory in directories:
        key = slugify(directory.name)
        if key in keyed:
            raise ReportInputError(f"{directory} and {keyed[key]}: two results of one name; give one per model")
        keyed[key] = directory
    return keyed


class SaliencySection(Section):
    """Every model's maps: one page per model with an image × method grid, predictions and IG's completeness."""

    kind = "saliency"

    def __init__(self, directories: Sequence[Path], inputs: SiteInputs) -> None:
        super().__init__(directories, inputs)
        self.models = {key: (directory, read_result(directory, ("maps.npz", "images.npz", "predictions.csv", "meta.json"),
                                              "saliency")) for key, directory in _keyed(self.directories).items()}

    def nav(self) -> list[NavLink]:
        return [NavLink("Saliency", "saliency/index.html", "saliency")]

    def write_pages(self, site: SiteWriter, panels: Panels) -> None:
        entries = []
        for key, (directory, meta) in sorted(self.models.items()):
            maps = np.load(directory / "maps.npz")
            pixels = np.load(directory / "images.npz")["pixels"]
            predictions = pd.read_csv(directory / "predictions.csv", keep_default_na=False)
            methods = meta["settings"]["methods"]
            rows = []
            for i, image in enumerate(meta["images"]):
                base = f"saliency/{key}/{i:03d}"
                _save_webp(site, f"{base}-image.webp", pixels[i], MAP_TILE)
                for method in methods:
                    raw, percentile = maps[method][i], meta["settings"]["percentile"]
                    _save_webp(site, f"{base}-{method}.webp", _gray(grayscale(raw, percentile)), MAP_TILE)
                    _save_webp(site, f"{base}-{method}-signed.webp", _diverging_rgb(diverging(raw, percentile)),
                               MAP_TILE)
                row = predictions.iloc[i]
                rows.append({"name": image["name"], "source": image["source"], "base": f"{key}/{i:03d}",
                             "predicted": f"{row['predicted_name'] or row['predicted']}", "probability": row["probability"],
                             "target": f"{row['target_name'] or row['target']}",
                             "completeness": _completeness(row)})
            entries.append({"key": key, "model": meta["model"], "images": len(rows)})
            site.page(f"saliency/{key}.html", "saliency.html", title=f"Saliency · {meta['model']}", section="saliency",
                      meta=meta, rows=rows, methods=methods, names=METHOD_NAMES, tile=MAP_TILE,
                      shown={part for part, users in SETTING_METHODS.items() if users & set(methods)},
                      crumbs=[("Saliency", "index.html"), (meta["model"], None)])
        sanity = [entry for section in panels.sections if isinstance(section, SanitySection)
                  for entry in section.entries()]
        site.page("saliency/index.html", "saliency_index.html", title="Saliency", section="saliency", entries=entries,
                  sanity=sanity)


def _completeness(row: pd.Series) -> str:
    if "ig_completeness_error" not in row or row["ig_completeness_error"] == "":
        return ""
    error, difference = float(row["ig_completeness_error"]), float(row["ig_difference"])
    relative = f" ({abs(error) / abs(difference):.0%} of it)" if difference else ""
    return f"{error:+.3g} of F(x) − F(x₀) = {difference:.3g}{relative}"


@dataclass
class _Check:
    directory: Path
    meta: dict
    similarity: pd.DataFrame
    stages: pd.DataFrame


class SanitySection(Section):
    """Every model's sanity checks: one page per model."""

    kind = "sanity-check"

    def __init__(self, directories: Sequence[Path], inputs: SiteInputs) -> None:
        super().__init__(directories, inputs)
        self.checks: dict[str, _Check] = {}
        for key, directory in _keyed(self.directories).items():
            meta = read_result(directory, ("similarity.csv", "stages.csv", "figure.npz", "meta.json"), "sanity-check")
            similarity = pd.read_csv(directory / "similarity.csv")
            if similarity.columns.tolist() != SIMILARITY_COLUMNS:
                raise ReportInputError(f"{directory / 'similarity.csv'}: expected columns {','.join(SIMILARITY_COLUMNS)}")
            self.checks[key] = _Check(directory, meta, similarity, pd.read_csv(directory / "stages.csv"))

    def nav(self) -> list[NavLink]:
        return [NavLink("Sanity checks", "sanity/index.html", "sanity")]

    def entries(self) -> list[dict]:
        return [{"key": key, "model": check.meta["model"]} for key, check in sorted(self.checks.items())]

    def write_pages(self, site: SiteWriter, panels: Panels) -> None:
        for key, check in sorted(self.checks.items()):
            summary = summarize(check.similarity)
            tests = [t for t in ("cascading", "independent") if t in set(summary["test"])]
            charts = []
            for test in tests:
                part = summary[summary["test"] == test]
                shown = part.assign(kind=part["method"].map(lambda m: "control" if m in CONTROLS else "method"),
                                    method=part["method"].map(lambda m: METHOD_NAMES.get(m, m)),
                                    metric=part["metric"].map(METRIC_NAMES))
                charts.append({"id": f"sanity-{test}", "test": test, "spec": sanity_chart(shown, test),
                               "verdict": _verdict(part, test, check.meta["sanity"]["order"])})
            site.page(f"sanity/{key}.html", "sanity.html", title=f"Sanity checks · {check.meta['model']}",
                      section="sanity", charts=bool(charts), meta=check.meta, tests=charts,
                      figure=self._figure(site, key, check), data=_data_table(summary, check.meta),
                      nans=_nan_table(summary), stages=_stage_rows(check.stages), names=METHOD_NAMES,
                      metric_names=[METRIC_NAMES[m] for m in METRICS],
                      crumbs=[("Sanity checks", "index.html"), (check.meta["model"], None)])
        site.page("sanity/index.html", "sanity_index.html", title="Sanity checks", section="sanity",
                  entries=self.entries())

    def _figure(self, site: SiteWriter, key: str, check: _Check) -> list[dict]:
        """The paper's cascading figure per image: rows = methods, columns = original, then each randomised stage."""
        figure = check.meta["figure"]
        if len(figure["stages"]) < 2:
            return []
        maps = np.load(check.directory / "figure.npz")["maps"].astype(np.float32)  # (stages, methods, images, H, W)
        images = []
        for i, image in enumerate(figure["images"]):
            rows = []
            for m, method in enumerate(figure["methods"]):
                cells = []
                for s, stage in enumerate(figure["stages"]):
                    path = f"sanity/{key}/{i:02d}-{m:02d}-{s:02d}.webp"
                    _save_webp(site, path, _gray(maps[s, m, i]), FIGURE_TILE)
                    cells.append({"src": path.removeprefix("sanity/"), "alt": f"{method} after {stage}"})
                rows.append({"method": METHOD_NAMES.get(method, method), "cells": cells})
            images.append({"name": image, "rows": rows})
        return [{"stages": figure["stages"], "images": images, "tile": FIGURE_TILE}]


#: The method pairs of the paper's finding: the first changes at once, the second stays close (Adebayo et al., Fig. 2).
PAIRS = (("gradient", "guided-backprop"), ("grad-cam", "guided-grad-cam"))


def _verdict(summary: pd.DataFrame, test: str, order: str) -> str:
    """The paper's expectation at the first two randomised blocks, and whether these maps meet it, pair by pair."""
    if order != "top-down":
        return ("The paper's expectation concerns the top blocks; these blocks were randomised bottom-up, so it is not "
                "checked here.")
    rho = summary[summary["metric"] == "spearman-abs"]
    stages = list(dict.fromkeys(rho["stage"]))[:2]
    table = rho[rho["stage"].isin(stages)].pivot_table(index="method", columns="stage", values="median", sort=False)
    pairs = [pair for pair in PAIRS if set(pair) <= set(table.index)]
    if not pairs or len(stages) < 2:
        return ""
    how = " and then ".join(stages) + " (cumulatively)" if test == "cascading" else " alone and ".join(stages) + " alone"
    values, verdicts = [], []
    for changes, stays in pairs:
        values += [f"{', '.join(f'{table.at[m, s]:.2f}' for s in stages)} for {METHOD_NAMES[m]}" for m in (changes, stays)]
        held = all(table.at[stays, s] > table.at[changes, s] for s in stages)
        verdicts.append(f"{METHOD_NAMES[stays]} above {METHOD_NAMES[changes]}: "
                        + ("reproduced" if held else "not reproduced"))
    return (f"Adebayo et al. found that randomising the top blocks changes the Gradient and Grad-CAM maps at once, while "
            f"the Guided Backprop and Guided Grad-CAM maps stay close to the original. Here, after randomising {how}, "
            f"the median rank correlation (|map|) with the original is {'; '.join(values)}. "
            + "; ".join(verdicts) + ".")


def _data_table(summary: pd.DataFrame, meta: dict) -> dict | None:
    data = summary[(summary["test"] == "data") & (summary["stage"] == RANDOM_LABELS)]
    if data.empty:
        return None
    table = data.pivot_table(index="method", columns="metric", values="median", sort=False)
    rows = [{"method": METHOD_NAMES.get(method, method),
             "paper": f"≈ {PAPER_DATA_RANDOMIZATION[method]:g}" if method in PAPER_DATA_RANDOMIZATION else "",
             "cells": [_number(table.at[method, metric]) for metric in METRICS]} for method in table.index]
    differ = [f"{METHOD_NAMES[m]} {table.at[m, 'spearman-abs']:.2f} (paper ≈ {paper:g})"
              for m, paper in PAPER_DATA_RANDOMIZATION.items()
              if m in table.index and abs(table.at[m, "spearman-abs"] - paper) > PAPER_TOLERANCE]
    inputs = [m for m in ("gradient-input", "integrated-gradients") if m in table.index]
    gradients = [m for m in ("gradient", "grad-cam") if m in table.index]
    ordered = ""
    if inputs and gradients:
        held = min(table.at[m, "spearman-abs"] for m in inputs) > max(table.at[m, "spearman-abs"] for m in gradients)
        ordered = ("The input-dominated maps (Gradient ⊙ Input, Integrated Gradients) stay more similar than the Gradient "
                   "and Grad-CAM maps, as in the paper." if held else
                   "Unlike the paper, the input-dominated maps do not stay more similar than the Gradient and Grad-CAM maps.")
    notes = (f"Where ours differs from the paper's by more than {PAPER_TOLERANCE}: {'; '.join(differ)}." if differ
             else "Every method is within 0.15 of the paper's number.") if any(
        m in table.index for m in PAPER_DATA_RANDOMIZATION) else ""
    accuracy = []
    for label, record in (("true labels", meta.get("checkpoint")), ("permuted labels",
                                                                     (meta.get("random_labels") or {}).get("checkpoint"))):
        record = record or {}
        test = record.get("test_accuracy", record.get("val_accuracy"))
        accuracy.append({"model": label, "train": _number(record.get("train_accuracy")), "test": _number(test)})
    return {"rows": rows, "metrics": [METRIC_NAMES[m] for m in METRICS], "accuracy": accuracy,
            "notes": " ".join(text for text in (ordered, notes) if text)}


def _stage_rows(stages: pd.DataFrame) -> list[dict]:
    return [{**row, "seed": "" if pd.isna(row["seed"]) else int(row["seed"]),
             "modules": "" if pd.isna(row["modules"]) else row["modules"]} for row in stages.to_dict("records")]


def _nan_table(summary: pd.DataFrame) -> list[dict]:
    """Per test and method with undefined values: how many of its values over stages and images each metric lost."""
    totals = summary.groupby(["test", "method", "metric"], sort=False)[["nan", "images"]].sum().reset_index()
    rows = []
    for (test, method), part in totals.groupby(["test", "method"], sort=False):
        if part["nan"].sum():
            counts = dict(zip(part["metric"], zip(part["nan"], part["images"], strict=True), strict=True))
            rows.append({"test": test, "method": METHOD_NAMES.get(method, method),
                         "cells": [f"{counts[m][0]} / {counts[m][1]}" if m in counts else "" for m in METRICS]})
    return rows


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.2f}"
