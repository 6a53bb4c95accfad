"""Unit visualisations and layer inversions, written as results (docs/outputs.md): activation maximisation of a
layer's units (kind ``unit-visualization``: every unit's optimised image(s) by each method, with the unit's
activation on them beside its highest over the dissection's dataset, and the DeconvNet views of its top images),
and the inversion of a model's layers for a few images (kind ``inversion``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from unitscope import __version__
from unitscope.io import staged_directory, write_csv, write_json, write_npz
from unitscope.models.registry import LoadedModel
from unitscope.progress import progress
from unitscope.saliency.images import Image
from unitscope.settings import INVERSION_DEFAULTS, VISUALIZE_DEFAULTS, InversionSettings, VisualizeSettings
from unitscope.dissect.result import Dissected
from unitscope.visualize.inversion import TV_WEIGHTS
from unitscope.visualize.maximize import maximize, unit_peaks
from unitscope.visualize.objectives import Objective, check
from unitscope.visualize.preactivation import pre_activation_layer

VISUALIZATION_KIND = "unit-visualization"
SCHEMA_VERSION = 1
#: The objectives that optimise one unit of the layer (``direction`` and ``logit`` are the library's).
UNIT_OBJECTIVES = ("channel", "neuron")
UNITS_COLUMNS = ["unit", "method", "copy", "objective", "peak", "dataset_peak", "reaches_dataset"]
VIEWS_COLUMNS = ["unit", "rank", "image", "activation", "row", "column", "top", "left", "bottom", "right"]
#: Side of the stored crops of the top images and their projections, and the smallest crop, in pixels.
VIEW_TILE = 64
MIN_CROP = 16


def objective_layer(model: LoadedModel, layer: str, settings: VisualizeSettings, device) -> str:
    """The layer the objective reads: ``layer``'s pre-activation where it ends in a rectifier and
    ``settings.pre_activation``, else ``layer`` itself."""
    if not settings.pre_activation:
        return layer
    side = settings.input_size or settings.size
    return pre_activation_layer(model.module, layer, torch.zeros(1, 3, side, side, device=device)) or layer


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"{path}: cannot read the top image ({error}); is --dataset the dissected dataset?") from None


def _tile(pixels: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((VIEW_TILE, VIEW_TILE), Image.Resampling.BILINEAR))


def top_image_views(model: LoadedModel, layer: str, units: Sequence[int], dissected: Dissected, dataset: Path,
                    k: int, normalize: str, batch_size: int, device) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """For each unit's first ``k`` top images: the image, its DeconvNet and guided-backprop projections of the
    unit's strongest activation, cropped to the pixels they reach and resized to :data:`VIEW_TILE` (one uint8
    array (units, k, T, T, 3) each), and a :data:`VIEWS_COLUMNS` table."""
    from unitscope.models.normalize import normalizer
    from unitscope.visualize.projections import PROJECTIONS, project, signed_rgb, support_box

    top = dissected.top[dissected.top["rank"] <= k]
    pairs = [(unit, int(row.rank), str(row.image)) for unit in units
             for row in top[top["unit"] == unit].sort_values("rank").itertuples()]
    arrays = {name: np.zeros((len(units), k, VIEW_TILE, VIEW_TILE, 3), np.uint8) for name in ("image", *PROJECTIONS)}
    rows = []
    position = {unit: i for i, unit in enumerate(units)}
    normalize_images = normalizer(normalize)
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start:start + batch_size]
        pixels = np.stack([_load_image(dataset / "images" / image) for _, _, image in batch])
        inputs = normalize_images(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()).to(device)
        projected = {name: project(model.module, layer, [u - 1 for u, _, _ in batch], inputs, name)
                     for name in PROJECTIONS}
        for i, (unit, rank, image) in enumerate(batch):
            maps = {name: result.maps[i].cpu().numpy() for name, result in projected.items()}
            row, column = (int(v) for v in projected["deconvnet"].position[i])
            scale = pixels.shape[1] / projected["deconvnet"].map_size[0]
            top_, left, bottom, right = support_box(np.stack(list(maps.values())),
                                                    (int(row * scale), int(column * scale)), MIN_CROP)
            u, r = position[unit], rank - 1
            arrays["image"][u, r] = _tile(pixels[i, top_:bottom, left:right])
            for name, values in maps.items():
                arrays[name][u, r] = _tile(signed_rgb(values[:, top_:bottom, left:right]))
            rows.append((unit, rank, image, float(projected["deconvnet"].activation[i]), row, column, top_, left,
                         bottom, right))
    return arrays, pd.DataFrame(rows, columns=VIEWS_COLUMNS)


def item_seed(seed: int, item: int, copy: int) -> int:
    """The seed of image ``copy`` of ``item`` (a unit, or an inverted image) in a run seeded ``seed``: independent
    of the other items and of how they are batched."""
    return int(np.random.SeedSequence([seed, item, copy]).generate_state(1)[0])


def _layer_shape(model: LoadedModel, layer: str, settings: VisualizeSettings, device) -> tuple[int, ...]:
    from unitscope.hooks import Trace

    side = settings.input_size or settings.size
    with torch.no_grad(), Trace(model.module, [layer]) as trace:
        return tuple(trace(torch.zeros(1, 3, side, side, device=device))[layer].shape[1:])


def visualize_units(model: LoadedModel, layer: str, units: Sequence[int], out_dir: str | Path,
                    settings: VisualizeSettings = VISUALIZE_DEFAULTS, normalize: str | None = None,
                    objective: str = "channel", device: torch.device | str = "cpu",
                    dissected: Dissected | None = None, views: int = 0, dataset: str | Path | None = None) -> Path:
    """Optimised images of ``units`` (1-based, as the dissection tables number them) of ``layer``, by every
    method of ``settings``, written to ``out_dir``: ``images.npz`` (one uint8 array (units, copies, S, S, 3) per
    method), ``units.csv`` and ``meta.json``; with ``views`` > 0 also the DeconvNet and guided views of each unit's
    first ``views`` top images of the ``dissected`` ``dataset`` (``views.npz``, ``views.csv``). With
    ``dissected``, ``units`` may be empty (a layer without detectors): the result then says so."""
    settings.validate()
    if views and (dissected is None or dataset is None):
        raise ValueError("--top-images needs --dissection (whose top images they are) and --dataset (their files)")
    if views and not (Path(dataset) / "index.csv").is_file():
        raise ValueError(f"--dataset {dataset}: no index.csv; give the Broden-format dataset the layer was dissected on")
    if dissected is not None:
        dissected.check_weights(model)
    if objective not in UNIT_OBJECTIVES:
        raise ValueError(f"--objective {objective!r} is not one of {', '.join(UNIT_OBJECTIVES)}")
    if not units and dissected is None:
        raise ValueError("no unit to visualise: give --unit N, or --dissection DIR")
    normalize = normalize or model.default_normalize
    module = model.module.to(device).eval()
    shape = _layer_shape(model, layer, settings, device)
    bad = [u for u in units if not 1 <= u <= shape[0]]
    if bad:
        raise ValueError(f"--unit {bad[0]} is out of range: layer {layer!r} has units 1 to {shape[0]}")
    items = [(unit, copy) for unit in units for copy in range(settings.copies)]
    objectives = [Objective(objective, unit - 1) for unit, _ in items]
    if objectives:
        check(objectives, shape, layer)
    optimised = objective_layer(model, layer, settings, device)
    per_batch = max(settings.copies, settings.batch_size // settings.copies * settings.copies)
    batches = [range(start, min(start + per_batch, len(items))) for start in range(0, len(items), per_batch)]
    steps = {"lucid": settings.steps, "pixel": settings.pixel_steps}
    images, rows = {}, []
    with progress(total=sum(steps[m] for m in settings.methods) * len(batches), desc="visualize",
                  unit="step") as bar:
        for method in settings.methods:
            parts = []
            for batch in batches:
                chosen = [items[i] for i in batch]
                groups = [[j for j, (u, _) in enumerate(chosen) if u == unit] for unit in dict.fromkeys(u for u, _ in chosen)]
                result = maximize(module, optimised, [objectives[i] for i in batch], normalize, settings,
                                  [item_seed(settings.seed, u, c) for u, c in chosen], method, groups,
                                  step=lambda: bar.update(1))
                parts.append(result.images.cpu())
                peaks = unit_peaks(module, layer, [u - 1 for u, _ in chosen], result.images, normalize,
                                   settings.input_size, pad=method == "lucid")
                for (unit, copy), value, peak in zip(chosen, result.objective.tolist(), peaks.tolist()):
                    best = dissected.peaks.get(unit) if dissected else None
                    rows.append((unit, method, copy, value, peak, best, None if best is None else bool(peak >= best)))
            side = settings.size if method == "lucid" else settings.input_size or settings.size
            pixels = (torch.cat(parts) if parts else torch.zeros(0, 3, side, side)).clamp(0, 1)
            pixels = (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            images[method] = pixels.reshape(len(units), settings.copies, *pixels.shape[1:])
    table = pd.DataFrame(rows, columns=UNITS_COLUMNS)
    if views:
        view_arrays, view_table = top_image_views(model, layer, units, dissected, Path(dataset), views, normalize,
                                                  settings.batch_size, device)
    meta = {"kind": VISUALIZATION_KIND, "schema_version": SCHEMA_VERSION,
            "model": dissected.meta["model"] if dissected else model.name,
            "model_spec": model.spec, "weights_sha256": model.weights_sha256(), "checkpoint": model.checkpoint,
            "normalize": normalize, "layer": layer, "objective_layer": optimised, "units": list(units),
            "objective": objective,
            "settings": {**asdict(settings), "methods": list(settings.methods)},
            "dissection": None if dissected is None else {"path": str(dissected.path), "run": dissected.path.parent.name},
            "top_images": views,
            "unitscope_version": __version__}
    out_dir = Path(out_dir)
    with staged_directory(out_dir) as staged:
        write_npz(images, staged / "images.npz", compressed=True)
        write_csv(table, staged / "units.csv")
        if views:
            write_npz(view_arrays, staged / "views.npz", compressed=True)
            write_csv(view_table, staged / "views.csv")
        write_json(meta, staged / "meta.json")
    return out_dir


INVERSION_KIND = "inversion"
INVERSION_COLUMNS = ["layer", "depth", "lambda_tv", "image", "status", "relative_error", "ssim", "lr_scale"]


def invert_layers(model: LoadedModel, layers: Sequence[str], images: Sequence[Image], out_dir: str | Path,
                  settings: InversionSettings = INVERSION_DEFAULTS, normalize: str | None = None,
                  device: torch.device | str = "cpu", name: str | None = None) -> Path:
    """Mahendran & Vedaldi's inversion (:mod:`unitscope.visualize.inversion`) of every one of ``layers`` for every
    image, written to ``out_dir``:
    ``reconstructions.npz`` (``original`` (N, S, S, 3) and ``reconstructions`` (layers, N, S, S, 3), uint8, layers
    in depth order), ``layers.csv`` (:data:`INVERSION_COLUMNS`) and ``meta.json``; ``name`` is the model's name in
    the report (default: the spec's)."""
    from unitscope.saliency.images import BUILTIN, load_images
    from unitscope.visualize.inversion import invert, layer_depths, natural_image_norm, ssim, tv_weight

    settings.validate()
    if not layers:
        raise ValueError("no layer to invert: give --layer NAME")
    if not images:
        raise ValueError("no image to invert: give --image")
    normalize = normalize or model.default_normalize
    module = model.module.to(device).eval()
    pixels = np.stack([image.pixels for image in images])
    side = pixels.shape[1]
    inputs = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255).to(device)
    depths = layer_depths(module, list(layers), inputs[:1])
    ordered = sorted(layers, key=lambda layer: depths[layer])
    natural = load_images([f"builtin:{photo}" for photo in BUILTIN], side)
    norm = natural_image_norm(torch.from_numpy(np.stack([p.pixels for p in natural])).permute(0, 3, 1, 2).float() / 255)
    seeds = [item_seed(settings.seed, i, 0) for i in range(len(images))]
    reconstructions, rows = [], []
    with progress(ordered, desc="invert", unit="layer") as bar:
        for layer in bar:
            result = invert(module, layer, inputs, normalize, settings, norm, seeds, tv_weight(depths[layer]))
            recon = (result.images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            reconstructions.append(recon)
            rows += [(layer, depths[layer], tv_weight(depths[layer]), image.name, status, error,
                      ssim(pixels[i], recon[i]), scale)
                     for i, (image, status, error, scale) in enumerate(zip(images, result.status, result.error.tolist(),
                                                                           result.lr_scale.tolist()))]
    meta = {"kind": INVERSION_KIND, "schema_version": SCHEMA_VERSION, "model": name or model.name,
            "model_spec": model.spec, "weights_sha256": model.weights_sha256(), "checkpoint": model.checkpoint,
            "normalize": normalize, "layers": ordered, "size": side,
            "images": [{"name": image.name, "source": image.source, "sha256": image.sha256} for image in images],
            "settings": {**asdict(settings), "tv_weights": list(TV_WEIGHTS), "natural_image_norm": norm,
                         "natural_images": [f"builtin:{photo}" for photo in BUILTIN]},
            "unitscope_version": __version__}
    out_dir = Path(out_dir)
    with staged_directory(out_dir) as staged:
        write_npz({"original": pixels, "reconstructions": np.stack(reconstructions)}, staged / "reconstructions.npz",
                  compressed=True)
        write_csv(pd.DataFrame(rows, columns=INVERSION_COLUMNS), staged / "layers.csv")
        write_json(meta, staged / "meta.json")
    return out_dir
