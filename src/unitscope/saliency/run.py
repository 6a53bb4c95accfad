"""Saliency maps of a model for a set of images, and their sanity checks, written as results (docs/outputs.md).

:func:`explain_images` writes the maps (kind ``saliency``); :func:`sanity_check` re-computes them for every
stage of the model-parameter randomisation tests, and for a model trained on permuted labels (the data
randomisation test), and writes how similar each is to the original's (kind ``sanity-check``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from unitscope import __version__
from unitscope.io import staged_directory, write_csv, write_json, write_npz
from unitscope.models.normalize import normalizer
from unitscope.models.registry import LoadedModel
from unitscope.progress import progress
from unitscope.saliency.images import Image
from unitscope.saliency.maps import diverging, grayscale
from unitscope.saliency.methods import LAYER_METHODS, Explainer, Explanation, method_settings, seed_of
from unitscope.saliency.randomization import randomization_blocks, stages
from unitscope.saliency.similarity import HOG_MIN_SIDE, METRICS, noise_map, similarities, sobel_map
from unitscope.settings import SALIENCY_DEFAULTS, SANITY_DEFAULTS, SaliencySettings, SanitySettings

SALIENCY_KIND = "saliency"
SANITY_KIND = "sanity-check"
SCHEMA_VERSION = 1
#: The stage name of the data randomisation test (the model trained on permuted labels).
RANDOM_LABELS = "random-labels"
SIMILARITY_COLUMNS = ["test", "method", "stage", "image", "metric", "value"]


@dataclass
class Subject:
    """A model to explain: the loaded model, its input normalisation, Grad-CAM's layer and the device."""

    model: LoadedModel
    normalize: str | None = None
    layer: str | None = None
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        self.normalize = self.normalize or self.model.default_normalize
        self.layer = self.layer or self.model.anatomy.feature_layer
        self.model.module.to(self.device).eval()

    def inputs(self, images: Sequence[Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised images (N, 3, H, W) and Integrated Gradients' black baseline (1, 3, H, W)."""
        pixels = torch.from_numpy(np.stack([image.pixels for image in images])).permute(0, 3, 1, 2).contiguous()
        normalize = normalizer(self.normalize)
        return normalize(pixels).to(self.device), normalize(torch.zeros_like(pixels[:1])).to(self.device)

    def grad_cam_layer(self, settings: SaliencySettings) -> str | None:
        """The layer Grad-CAM's maps come from, ``None`` where no Grad-CAM method runs."""
        return self.layer if LAYER_METHODS & set(settings.methods) else None

    def meta(self, kind: str) -> dict:
        return {"kind": kind, "schema_version": SCHEMA_VERSION, "model": self.model.name,
                "model_spec": self.model.spec, "weights_sha256": self.model.weights_sha256(),
                "checkpoint": self.model.checkpoint, "normalize": self.normalize, "unitscope_version": __version__}


def resolve_targets(target: str | None, classes: Sequence[str] | None, outputs: int,
                    predicted: torch.Tensor) -> torch.Tensor:
    """The class each image's maps explain: the model's own top class (``None``), or one class for every image
    given by index or by name."""
    if target is None:
        return predicted
    if target.lstrip("-").isdigit():
        index = int(target)
        if not 0 <= index < outputs:
            raise ValueError(f"--target {index} is out of range: the model has {outputs} classes (0 to {outputs - 1})")
    else:
        names = [name.lower() for name in classes or []]
        if not names:
            raise ValueError(f"--target {target!r}: the model's classes have no names; give a class index")
        if target.lower() not in names:
            close = difflib.get_close_matches(target.lower(), names, n=3, cutoff=0.6)
            raise ValueError(f"--target {target!r} is not a class of the model"
                             + (f"; did you mean {', '.join(close)}?" if close else ""))
        index = names.index(target.lower())
    return torch.full_like(predicted, index)


def explain_all(explainer: Explainer, inputs: torch.Tensor, targets: torch.Tensor,
                show_progress: bool = False) -> Explanation:
    """Every method's maps of every input, ``batch_size`` images at a time, on the CPU (with a progress bar over
    the images when ``show_progress``)."""
    parts = []
    starts = range(0, len(inputs), explainer.settings.batch_size)
    for start in progress(starts, desc="saliency maps", unit="batch") if show_progress else starts:
        stop = start + explainer.settings.batch_size
        parts.append(explainer.explain(inputs[start:stop], targets[start:stop], first_index=start))
    joined = Explanation({m: torch.cat([p.maps[m] for p in parts]).cpu() for m in parts[0].maps})
    if parts[0].completeness is not None:
        joined.completeness = torch.cat([p.completeness for p in parts]).cpu()
        joined.difference = torch.cat([p.difference for p in parts]).cpu()
    return joined


def _images_meta(images: Sequence[Image]) -> list[dict]:
    return [{"name": image.name, "source": image.source, "sha256": image.sha256} for image in images]


def _class_name(classes: Sequence[str] | None, index: int) -> str:
    return classes[index] if classes and index < len(classes) else ""


def explain_images(subject: Subject, images: Sequence[Image], out_dir: str | Path, target: str | None = None,
                   settings: SaliencySettings = SALIENCY_DEFAULTS) -> Path:
    """Every method's map of every image, written to ``out_dir``: ``maps.npz`` (raw maps, one array per method,
    (N, C, H, W) float32), ``images.npz`` (the fitted images), ``predictions.csv`` and ``meta.json``."""
    inputs, baseline = subject.inputs(images)
    explainer = Explainer(subject.model.module, baseline, subject.layer, settings)
    with torch.no_grad():
        probabilities = torch.cat([subject.model.module(part).softmax(1)
                                   for part in inputs.split(settings.batch_size)]).cpu()
    targets = resolve_targets(target, subject.model.classes, probabilities.shape[1], probabilities.argmax(1))
    explanation = explain_all(explainer, inputs, targets.to(inputs.device), show_progress=True)
    predicted = probabilities.argmax(1)
    table = pd.DataFrame({
        "image": [image.name for image in images],
        "predicted": predicted.numpy(), "predicted_name": [_class_name(subject.model.classes, int(i)) for i in predicted],
        "probability": probabilities.max(1).values.numpy().astype(np.float64),
        "target": targets.numpy(), "target_name": [_class_name(subject.model.classes, int(i)) for i in targets],
    })
    if explanation.completeness is not None:
        table["ig_difference"] = explanation.difference.numpy().astype(np.float64)
        table["ig_completeness_error"] = explanation.completeness.numpy().astype(np.float64)
    out_dir = Path(out_dir)
    with staged_directory(out_dir) as staged:
        write_npz({m: maps.numpy() for m, maps in explanation.maps.items()}, staged / "maps.npz")
        write_npz({"pixels": np.stack([image.pixels for image in images])}, staged / "images.npz", compressed=True)
        write_csv(table, staged / "predictions.csv")
        layer = subject.grad_cam_layer(settings)
        write_json({**subject.meta(SALIENCY_KIND), "layer": layer, "images": _images_meta(images),
                    "target": target or "predicted", "settings": method_settings(settings, layer, subject.normalize)},
                   staged / "meta.json")
    return out_dir


def _post(explanation: Explanation, percentile: float) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Each method's grayscale and signed maps, per image."""
    return {method: [(grayscale(raw, percentile), diverging(raw, percentile)) for raw in maps.numpy()]
            for method, maps in explanation.maps.items()}


class _Comparison:
    """The similarity rows of every stage against the original maps, with the two controls."""

    def __init__(self, original: dict, images: Sequence[Image], seed: int) -> None:
        self.original, self.images, self.seed, self.rows = original, images, seed, []
        shape = images[0].pixels.shape[:2]
        self.sobel = [sobel_map(image.pixels) for image in images]
        self.noise = [noise_map(shape, seed_of(seed, "noise-control", i)) for i in range(len(images))]
        self.stages = 0

    def add(self, test: str, stage: str, maps: dict) -> None:
        self.stages += 1
        for method, pairs in maps.items():
            for image, (gray, signed), (gray0, signed0) in zip(self.images, pairs, self.original[method], strict=True):
                self._rows(test, method, stage, image.name, similarities(gray0, gray, signed0, signed))
        for i, image in enumerate(self.images):
            edges = self.sobel[i]
            self._rows(test, "sobel", stage, image.name, similarities(edges, edges, edges, edges))
            noise = noise_map(edges.shape, seed_of(self.seed, "noise-control", len(self.images) * self.stages + i))
            self._rows(test, "noise", stage, image.name,
                       similarities(self.noise[i], noise, 2 * self.noise[i] - 1, 2 * noise - 1))

    def _rows(self, test: str, method: str, stage: str, image: str, values: dict[str, float]) -> None:
        self.rows += [(test, method, stage, image, metric, values[metric]) for metric in METRICS]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=SIMILARITY_COLUMNS)


def _check_same_architecture(model: torch.nn.Module, other: torch.nn.Module) -> None:
    """Refuse a random-label model whose parameters and buffers differ in name or shape from ``model``'s."""
    ours = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    theirs = {name: tuple(value.shape) for name, value in other.state_dict().items()}
    for name in sorted(ours.keys() | theirs.keys()):
        if ours.get(name) != theirs.get(name):
            shapes = ("in only one of them" if name not in ours or name not in theirs
                      else f"{theirs[name]} where the model has {ours[name]}")
            raise ValueError(f"--random-labels is not the same architecture as --model: {name} is {shapes}; "
                             "give the same network trained on permuted labels")


def sanity_check(subject: Subject, images: Sequence[Image], out_dir: str | Path,
                 settings: SaliencySettings = SALIENCY_DEFAULTS, sanity: SanitySettings = SANITY_DEFAULTS,
                 random_labels: LoadedModel | None = None) -> Path:
    """The randomisation tests of Adebayo et al. on ``images``, written to ``out_dir``: ``similarity.csv``
    (``test,method,stage,image,metric,value``), ``stages.csv``, ``figure.npz`` (the cascading test's grayscale
    maps of the first ``figure_images`` images) and ``meta.json``. ``random_labels`` is the same architecture
    trained on permuted labels: its maps against the original's are the data randomisation test."""
    sanity.validate()
    side = min(images[0].pixels.shape[:2]) if images else 0
    if side < HOG_MIN_SIDE:
        raise ValueError(f"--size {side}: the sanity checks compare maps by HOG descriptors, which need images of "
                         f"{HOG_MIN_SIDE} pixels a side at least")
    if ("data" in sanity.tests) != (random_labels is not None):
        raise ValueError("the data randomisation test (--test data) needs the model trained on permuted labels "
                         "(--random-labels SPEC), and that model needs --test data")
    if random_labels is not None:
        _check_same_architecture(subject.model.module, random_labels.module)
    inputs, baseline = subject.inputs(images)
    model = subject.model.module
    explainer = Explainer(model, baseline, subject.layer, settings)
    predicted = explainer.predict(inputs)
    original = _post(explain_all(explainer, inputs, predicted), settings.percentile)
    blocks = randomization_blocks(model, subject.model.anatomy, inputs[:1])
    comparison = _Comparison(original, images, sanity.seed)
    figure_count = min(sanity.figure_images, len(images))
    height, width = images[0].pixels.shape[:2]

    def figure_maps(maps: dict) -> np.ndarray:  # (methods, figure images, H, W)
        return np.stack([np.stack([gray for gray, _ in maps[m][:figure_count]]) if figure_count
                         else np.zeros((0, height, width), np.float32) for m in maps])

    figure = [figure_maps(original)]
    stage_rows = []

    def run(test: str, name: str, stage_model: torch.nn.Module, seed: int | None, modules: Iterable[str]) -> None:
        stage_explainer = Explainer(stage_model, baseline, subject.layer, settings)
        own = stage_explainer.predict(inputs)
        maps = _post(explain_all(stage_explainer, inputs, own if sanity.explain == "own" else predicted),
                     settings.percentile)
        comparison.add(test, name, maps)
        stage_rows.append({"test": test, "position": len([r for r in stage_rows if r["test"] == test]) + 1,
                           "stage": name, "modules": " ".join(modules), "seed": seed,
                           "agreement": float((own == predicted).float().mean())})
        if test == "cascading":
            figure.append(figure_maps(maps))

    parameter_tests = [test for test in sanity.tests if test != "data"]
    modules_of = {block.name: block.modules for block in blocks}
    total = len(parameter_tests) * len(blocks) + (random_labels is not None)
    with progress(total=total, desc="sanity check", unit="stage") as bar:
        for test in parameter_tests:
            for stage in stages(model, blocks, test, sanity.seed, sanity.order, sanity.reset_statistics):
                run(test, stage.block, stage.model, stage.seeds[stage.block], modules_of[stage.block])
                bar.update()
        if random_labels is not None:
            run("data", RANDOM_LABELS, random_labels.module.to(subject.device).eval(), None, [])
            bar.update()
    out_dir = Path(out_dir)
    layer = subject.grad_cam_layer(settings)
    meta = {**subject.meta(SANITY_KIND), "layer": layer, "images": _images_meta(images),
            "settings": method_settings(settings, layer, subject.normalize), "sanity": asdict(sanity),
            "blocks": [{"name": b.name, "modules": list(b.modules)} for b in blocks],
            "random_labels": None if random_labels is None else {
                "model_spec": random_labels.spec, "weights_sha256": random_labels.weights_sha256(),
                "checkpoint": random_labels.checkpoint},
            "figure": {"images": [image.name for image in images[:figure_count]], "methods": list(original),
                       "stages": ["original"] + [r["stage"] for r in stage_rows if r["test"] == "cascading"]}}
    with staged_directory(out_dir) as staged:
        write_csv(comparison.table(), staged / "similarity.csv")
        write_csv(pd.DataFrame(stage_rows), staged / "stages.csv")
        write_npz({"maps": np.stack(figure).astype(np.float16)}, staged / "figure.npz", compressed=True)
        write_json(meta, staged / "meta.json")
    return out_dir


def summarize(similarity: pd.DataFrame) -> pd.DataFrame:
    """Per test, method, stage and metric: the median and quartiles over images, and how many values are NaN
    (constant maps), in the order the rows first appear."""
    keys = ["test", "method", "stage", "metric"]
    grouped = similarity.groupby(keys, sort=False)["value"]
    summary = grouped.agg(median="median", q1=lambda v: v.quantile(0.25), q3=lambda v: v.quantile(0.75),
                          images="size", nan=lambda v: int(v.isna().sum()))
    return summary.reset_index()
