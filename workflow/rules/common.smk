"""The workflow's Python logic: the validated config turned into the jobs the rules run.

Vocabulary (docs/workflow.md):
  dataset  a Broden-format directory (generated probe set, downloaded Broden, or an existing path)
  source   one set of weights of one model; a single forward pass per image shard extracts every
           layer any run of the source needs (`results/activations/<source>/shard-<i>`, temporary)
  run      one result set: a source seen in one basis (original, or rotated by alpha), dissected
           per layer into `results/dissect/<run>/<layer>/` from the source's activation cache
"""

import functools
import hashlib
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from unitscope.pipeline import prepare_job_environment

prepare_job_environment(os.getcwd())  # this Python's `unitscope` first on PATH, the working directory on PYTHONPATH


def config_error(key: str, message: str) -> WorkflowError:
    """A config problem, naming the key."""
    return WorkflowError(f"config key `{key}`: {message} (every key: docs/workflow.md)")


for _name, _entry in (config.get("models") or {}).items():  # renamed keys, before the schema's generic message
    for _key, _example in (("rotation", "[1, 2, 3]"), ("train", "[0, 1, 2]")):
        if isinstance(_entry, dict) and isinstance(_entry.get(_key), dict) and "seed" in _entry[_key]:
            raise config_error(f"models.{_name}.{_key}.seed", f"is now `seeds`, a list (e.g. seeds: {_example})")

# `saliency: null`, `visualize: null` (and `saliency.digits: null`) switch an analysis off: dropped before the schema fills in defaults,
# which it cannot do below a null.
for analysis in ("saliency", "visualize"):
    if analysis in config and config[analysis] is None:
        del config[analysis]
if isinstance(config.get("saliency"), dict) and "digits" in config["saliency"] and config["saliency"]["digits"] is None:
    del config["saliency"]["digits"]

try:  # fills in the schema's defaults too
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError as error:
    invalid = error.__context__
    if not isinstance(invalid, jsonschema.ValidationError):
        raise
    raise config_error(".".join(map(str, invalid.absolute_path)) or "(top level)", invalid.message) from None

SHARDS = config["shards"]
CONDA_ENV = "../../envs/unitscope.yaml"
GPU_PER_JOB = 1 if config["device"] == "cuda" else 0


# ---------------------------------------------------------------------------------------------
# datasets


def dataset_dir(name: str) -> str:
    """Where dataset ``name`` lives: generated under data/, or the configured path."""
    dataset = config["datasets"][name]
    if dataset["source"] == "probe":
        return f"data/{name}"
    if dataset["source"] == "broden":
        return f"data/broden1_{dataset['variant']}"
    return dataset["path"]


DATASET_KEYS = {"probe": {"images", "size", "seed"}, "broden": {"variant", "mirrors", "zip"}, "path": {"path"}}


def _check_datasets() -> None:
    seen: dict[str, str] = {}
    for name, dataset in config["datasets"].items():
        misplaced = sorted(set(dataset) - DATASET_KEYS[dataset["source"]] - {"source"})
        if misplaced:
            raise config_error(f"datasets.{name}.{misplaced[0]}", f"does not apply to source: {dataset['source']}")
        path = os.path.normpath(dataset_dir(name))
        if path in seen:
            raise config_error(f"datasets.{name}", f"uses the same directory {path} as datasets.{seen[path]}")
        seen[path] = name
        if dataset["source"] == "path" and not Path(path, "index.csv").is_file():
            raise config_error(
                f"datasets.{name}.path", f"{path} holds no index.csv; point it at a Broden-format directory"
            )


_check_datasets()
PROBE_DATASETS = [n for n, d in config["datasets"].items() if d["source"] == "probe"]


def probe_options(wildcards) -> str:
    dataset = config["datasets"][wildcards.dataset]
    return " ".join(f"--{key} {dataset[key]}" for key in ("images", "size", "seed") if key in dataset)


def broden_options(wildcards) -> str:
    dataset = next(
        d for d in config["datasets"].values() if d["source"] == "broden" and str(d["variant"]) == wildcards.variant
    )
    options = [f"--mirror {shlex.quote(url)}" for url in dataset.get("mirrors", [])]
    if "zip" in dataset:
        options.append(f"--from-zip {shlex.quote(dataset['zip'])}")
    return " ".join(options)


def model_dataset(model: str) -> str:
    """The dataset name a model is dissected on (`dataset`, or the only one configured)."""
    chosen = config["models"][model].get("dataset")
    if chosen is None:
        if len(config["datasets"]) != 1:
            raise config_error(
                f"models.{model}.dataset", f"required when several datasets are configured ({', '.join(config['datasets'])})"
            )
        return next(iter(config["datasets"]))
    if chosen not in config["datasets"]:
        raise config_error(f"models.{model}.dataset", f"{chosen!r} is not under `datasets` ({', '.join(config['datasets'])})")
    return chosen


# ---------------------------------------------------------------------------------------------
# models: sources (weights) and runs (result sets)


@dataclass(frozen=True)
class Source:
    """One set of weights of a model; one forward pass per shard extracts all ``layers``."""

    name: str
    model: str
    iteration: int | None  # checkpoint of a pipeline-trained model (None: the spec's own weights)
    layers: tuple[str, ...]
    training: str | None = None  # the training run that wrote the checkpoint (`results/models/<training>`)


@dataclass(frozen=True)
class Run:
    """One result set: a source in one basis (``alpha`` None: the original basis)."""

    name: str
    source: Source
    layers: tuple[str, ...]
    tags: dict = field(hash=False)
    alpha: float | None = None
    seed: int | None = None  # of the rotation
    quantile: float | None = None  # of a threshold-sweep run (None: `dissect.quantile`)


def training_name(model: str, seed: int) -> str:
    """The training run of ``model`` with ``seed``: the model's name for its first seed, else `<model>-seed<s>`."""
    return model if seed == config["models"][model]["train"]["seeds"][0] else f"{model}-seed{seed}"


def _check_subset(model: str, key: str, layers: list) -> None:
    missing = [layer for layer in layers if layer not in config["models"][model]["layers"]]
    if missing:
        raise config_error(f"models.{model}.{key}", f"{', '.join(missing)} not in models.{model}.layers")


def _runs_of(model: str) -> list[Run]:
    entry = config["models"][model]
    model_dataset(model)
    tags = {"series": model, **{str(k): str(v) for k, v in entry.get("tags", {}).items()}}
    train = entry.get("train")
    if train is None:
        main = Source(model, model, None, tuple(entry["layers"]))
        runs = [Run(main.name, main, main.layers, tags)]
    else:
        if entry["spec"] != "probecnn":
            raise config_error(f"models.{model}.train", f"the pipeline trains spec `probecnn` only, not {entry['spec']!r}")
        final = train["iterations"]
        tags = {"weights": "trained", **tags, "iteration": str(final)}
        _check_subset(model, "train.layers", train["layers"])
        late = [it for it in train["checkpoints"] if it > final]
        if late:
            raise config_error(f"models.{model}.train.checkpoints", f"{late} exceed train.iterations ({final})")
        first, *repeats = train["seeds"]
        main = Source(model, model, final, tuple(entry["layers"]), training_name(model, first))
        runs = [Run(main.name, main, main.layers, tags)]
        if train["layers"]:
            runs += [Run(s.name, s, s.layers, {**tags, "iteration": str(s.iteration)}) for s in (
                Source(f"{model}-iter{it}", model, it, tuple(train["layers"]), main.training)
                for it in sorted(set(train["checkpoints"]) - {final}))]
        for seed in repeats:  # the same training with another seed: `train.layers` (else `layers`) for the spread
            layers = tuple(train["layers"]) or main.layers
            source = Source(training_name(model, seed), model, final, layers, training_name(model, seed))
            runs.append(Run(source.name, source, source.layers, {**tags, "repeat": str(seed)}))
    rotation = entry.get("rotation")
    if rotation is not None:
        _check_subset(model, "rotation.layers", rotation["layers"])
        seeds = rotation["seeds"]
        seeds_at = rotation.get("seeds_at", rotation["alphas"])
        stray = [alpha for alpha in seeds_at if alpha not in rotation["alphas"]]
        if stray:
            raise config_error(f"models.{model}.rotation.seeds_at", f"{stray} not in rotation.alphas")
        runs += [
            Run(f"{model}-rot{alpha:.2f}-s{seed}", main, tuple(rotation["layers"]), tags, float(alpha), seed)
            for alpha in rotation["alphas"]  # alpha = 0 is the identity up to a permutation: once
            for seed in (seeds if alpha in seeds_at and alpha != 0 else seeds[:1])
        ]
    sweep = entry.get("quantiles")
    if sweep is not None:
        _check_subset(model, "quantiles.layers", sweep["layers"])
        runs += [
            Run(f"{model}-tau{tau:g}", main, tuple(sweep["layers"]), {**tags, "quantile": f"{tau:g}"}, quantile=tau)
            for tau in sweep["values"]
        ]
    return runs


def _all_runs() -> dict[str, Run]:
    runs: dict[str, Run] = {}
    for model in config["models"]:
        for run in _runs_of(model):
            if run.name in runs:
                raise config_error(f"models.{model}", f"its result set {run.name!r} clashes with another model's; rename one")
            runs[run.name] = run
    return runs


RUNS = _all_runs()
SOURCES = {run.source.name: run.source for run in RUNS.values()}


PLAN_VARIABLE = "UNITSCOPE_CACHE_PLAN"


def _plan_caches() -> dict[str, bool]:
    """Model specs, layer names and local files, checked before any job runs (snakemake -n too); then which
    sources cache their activations on disk (`cache`, `cache_budget_gb`), printed with their sizes by the
    main process. Cluster jobs parse this file again: the main process hands them its plan in the environment
    (PLAN_VARIABLE, keyed by the config), so that a job need not import torch and build every model to redo it."""
    key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    if not workflow.is_main_process:
        try:
            inherited = json.loads(os.environ.get(PLAN_VARIABLE) or "{}")
        except json.JSONDecodeError:
            inherited = {}
        if inherited.get("config") == key:
            return inherited["plan"]

    from unitscope.config_check import check_config
    from unitscope.pipeline import dataset_images, plan_caches
    from unitscope.settings import Shard, format_bytes

    check = check_config(config)
    if check.problems and workflow.is_main_process:
        raise config_error(*check.problems[0])
    needs = {}
    for source in SOURCES.values():
        values = check.layer_values.get(source.model, {})
        images = dataset_images(config["datasets"][model_dataset(source.model)], config["max_images"])
        known = images is not None and all(layer in values for layer in source.layers)
        needs[source.name] = 4 * images * sum(values[layer] for layer in source.layers) if known else None
    for name, dataset in config["datasets"].items():
        images = dataset_images(dataset, config["max_images"])
        empty = [i for i in range(SHARDS) if images is not None and not Shard(i, SHARDS).range(images, config["batch_size"])]
        if empty and workflow.is_main_process:
            raise config_error("shards", f"{SHARDS} shards of the {images} images of dataset {name} leave shard {empty[0]} "
                               f"empty (shards split at multiples of batch_size {config['batch_size']}); use fewer shards")
    plan = plan_caches(needs, config["cache"], config["cache_budget_gb"] * 1e9)
    if workflow.is_main_process:
        on_disk = sum(need for name, need in needs.items() if plan[name] and need)
        print(f"Activation caches (cache: {config['cache']}, budget {config['cache_budget_gb']:g} GB): "
              f"{format_bytes(on_disk)} on disk at most", file=sys.stderr)
        for name, need in needs.items():
            size = "size unknown" if need is None else format_bytes(need)
            print(f"  {name}: {size}, {'cached on disk' if plan[name] else 'recomputed'}", file=sys.stderr)
    os.environ[PLAN_VARIABLE] = json.dumps({"config": key, "plan": plan})
    return plan


CACHED = _plan_caches()  # source name -> its activations are cached on disk (else recomputed per dissection)


@functools.cache
def check_device() -> None:
    """`device: cuda` needs CUDA where the jobs run: checked while the DAG is built (the executor is known
    then, not when this file is parsed). A local run stops before its first job; a dry run, whose executor
    does not tell whether the real jobs go to a cluster, warns."""
    from unitscope.config_check import device_problem

    problem = device_problem(config) if workflow.local_exec and workflow.is_main_process else None
    if problem is None:
        return
    if workflow.dryrun:
        print(f"Warning: {config_error(*problem)}; jobs run on this machine would fail", file=sys.stderr)
    else:
        raise config_error(*problem)
#: training run -> (model, seed): each is one `unitscope train-probecnn` job writing results/models/<training>.
TRAININGS = {training_name(model, seed): (model, seed) for model, entry in config["models"].items()
             if "train" in entry for seed in entry["train"]["seeds"]}


#: The `train` keys that shape a ProbeCNN (`unitscope.models.probecnn.Architecture`; the rest shape its training).
ARCHITECTURE_KEYS = ("batchnorm", "dropout", "width")


def train_options(wildcards) -> str:
    model, seed = TRAININGS[wildcards.training]
    train = config["models"][model]["train"]
    options = [f"--iterations {train['iterations']}", f"--seed {seed}", f"--device {config['device']}"]
    followed = train["checkpoints"] if seed == train["seeds"][0] else []  # further seeds: their final weights only
    saved = sorted({*followed, train["iterations"]})  # the final weights are a checkpoint too
    options.append(f"--checkpoints {','.join(map(str, saved))}")
    batchnorm, dropout, width = (train[key] for key in ARCHITECTURE_KEYS)
    options += ["--batchnorm" if batchnorm else "--no-batchnorm", f"--dropout {dropout:g}", f"--width {width}",
                f"--labels {train['labels']}"]
    return " ".join(options)


def checkpoint_path(source: Source) -> str:
    """The checkpoint `unitscope train-probecnn` writes for a trained source's iteration."""
    return f"results/models/{source.training}/checkpoint-{source.iteration}.pt"


def model_options(source: Source) -> str:
    """`--model`/`--arch`/`--normalize` of a source's forward pass (a trained source loads its checkpoint file)."""
    entry = config["models"][source.model]
    if source.iteration is not None:
        spec, arch = f"file:{checkpoint_path(source)}", entry["spec"]
    else:
        spec, arch = entry["spec"], entry.get("arch")
    options = [f"--model {shlex.quote(spec)}"]
    if arch is not None:
        options.append(f"--arch {shlex.quote(arch)}")
    if "normalize" in entry:
        options.append(f"--normalize {entry['normalize']}")
    return " ".join(options)


# ---------------------------------------------------------------------------------------------
# paths and command-line options used by the rules


def source_inputs(wildcards) -> dict:
    """What a forward pass of the source needs: its dataset, and the training output for a checkpoint."""
    return forward_inputs(SOURCES[wildcards.source])


def forward_inputs(source: Source) -> dict:
    check_device()
    inputs = {"dataset": dataset_dir(model_dataset(source.model))}
    if source.iteration is not None:
        inputs["checkpoints"] = f"results/models/{source.training}"
    return inputs


def dissect_inputs(wildcards, all_shards: bool = False) -> dict:
    """A dissection job's inputs: its source's activation cache for this shard (every shard's with
    ``all_shards``), or what its own forward passes need when the source is recomputed (`cache` plan)."""
    source = RUNS[wildcards.run].source
    if not CACHED[source.name]:
        return forward_inputs(source)
    shards = [wildcards.shard] if hasattr(wildcards, "shard") else range(SHARDS) if all_shards else [0]
    return {"dataset": dataset_dir(model_dataset(source.model)),
            "cache": [f"results/activations/{source.name}/shard-{shard}" for shard in shards]}


def source_option(wildcards, input) -> str:
    """`--activations CACHE` (each given cache), or the model's options when the source is recomputed."""
    source = RUNS[wildcards.run].source
    if CACHED[source.name]:
        return " ".join(f"--activations {shlex.quote(cache)}" for cache in input.cache)
    return model_options(source)


def activations_option(wildcards, input) -> str:
    """`--activations CACHE`, or the model's options and `--cache recompute` when the source is recomputed."""
    option = source_option(wildcards, input)
    return option if CACHED[RUNS[wildcards.run].source.name] else f"{option} --cache recompute"


def extract_options(wildcards) -> str:
    source = SOURCES[wildcards.source]
    layers = " ".join(f"--layer {shlex.quote(layer)}" for layer in source.layers)
    return f"{model_options(source)} {layers} {shard_option(wildcards)} {common_options()}"


def shard_option(wildcards) -> str:
    """`--shard I/N` (I counts from 0) when the work is split into shards."""
    return f"--shard {wildcards.shard}/{SHARDS}" if SHARDS > 1 else ""


def common_options() -> str:
    """Options of both `extract` and `dissect`: they must select the same images."""
    options = [f"--device {config['device']}", f"--batch-size {config['batch_size']}",
               f"--workers {config['loader_workers']}"]
    if config["max_images"] is not None:
        options.append(f"--max-images {config['max_images']}")
    if "categories" in config["dissect"]:
        options.append(f"--categories {','.join(config['dissect']['categories'])}")
    return " ".join(options)


def dissect_options(wildcards) -> str:
    """Every `unitscope dissect` option of a run except dataset, input, layer, output and stage."""
    run = RUNS[wildcards.run]
    settings = config["dissect"]
    options = [common_options(), f"--name {shlex.quote(run.source.name)}"]
    if run.quantile is not None:
        options.append(f"--quantile {run.quantile}")
    elif settings["netdissect_level"]:
        options.append("--netdissect-level")
    else:
        options.append(f"--quantile {settings['quantile']}")
    options += [
        f"--iou-threshold {settings['iou_threshold']}",
        f"--presence {settings['presence']}",
        f"--top-k {settings['top_k']}",
        f"--null-permutations {settings['null_permutations']} --null-seed {settings['null_seed']}",
    ]
    if run.alpha is not None:
        rotation = config["models"][run.source.model]["rotation"]
        options.append(f"--rotation-alpha {run.alpha} --rotation-seed {run.seed}")
        if not rotation["unpermute"]:
            options.append("--no-unpermute")
    options += [f"--tag {shlex.quote(f'{key}={value}')}" for key, value in run.tags.items()]
    return " ".join(options)


#: Every result directory the report shows and provenance records: each analysis's rule file adds its own.
REPORT_RESULTS: list[str] = []


def dissected() -> list[str]:
    """Every (run, layer) result directory of the config."""
    return [f"results/dissect/{run.name}/{layer}" for run in RUNS.values() for layer in run.layers]


def check_images(key: str, images: list[str]) -> None:
    """Image sources of a config key (files, folders, `dataset:NAME`, `builtin:NAME`), checked at plan time."""
    from unitscope.saliency.images import BUILTIN

    for image in images:
        if image.startswith("dataset:") and image.removeprefix("dataset:") not in config["datasets"]:
            raise config_error(key, f"{image}: no such dataset under `datasets`")
        if image.startswith("builtin:") and image.removeprefix("builtin:") not in BUILTIN:
            raise config_error(key, f"{image}: built-in photographs are {', '.join(BUILTIN)}")
        if not image.startswith(("builtin:", "dataset:")) and not Path(image).exists():
            raise config_error(key, f"{image} does not exist: put the images there, or name other files, folders, "
                               "dataset:NAME or builtin:NAME")


def image_paths(images: list[str]) -> list[str]:
    """The `--image` arguments of image sources: `dataset:NAME` becomes that dataset's directory."""
    return [dataset_dir(i.removeprefix("dataset:")) if i.startswith("dataset:") else i for i in images]


def image_datasets(images: list[str]) -> list[str]:
    """The dataset directories among image sources (job inputs)."""
    return [dataset_dir(i.removeprefix("dataset:")) for i in images if i.startswith("dataset:")]


def report_datasets() -> list[str]:
    return [dataset_dir(name) for name in config["datasets"]]


def report_options() -> str:
    """`--dataset` for the image strips and `--reference` when the configured directory exists."""
    settings = config["report"]
    name = settings.get("dataset") or next(iter(config["datasets"]))
    if name not in config["datasets"]:
        raise config_error("report.dataset", f"{name!r} is not under `datasets` ({', '.join(config['datasets'])})")
    options = [f"--dataset {shlex.quote(dataset_dir(name))}"]
    if settings["reference"] and Path(settings["reference"]).is_dir():
        options.append(f"--reference {shlex.quote(settings['reference'])}")
    return " ".join(options)


def trained_models() -> list[str]:
    """The training output directories (checkpoints) of the pipeline-trained models."""
    return [f"results/models/{training}" for training in TRAININGS]


def provenance_datasets() -> str:
    return " ".join(f"--dataset {shlex.quote(f'{name}={dataset_dir(name)}')}" for name in config["datasets"])


def one_of(names) -> str:
    """A wildcard constraint matching exactly the given names (nothing when there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    run=one_of(RUNS),
    source=one_of([name for name in SOURCES if CACHED[name]]),
    training=one_of(TRAININGS),
    dataset=one_of(PROBE_DATASETS),
    variant="224|227|384",
    shard=r"\d+",
    layer="[^/]+",
