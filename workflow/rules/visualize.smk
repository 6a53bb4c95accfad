# Activation maximisation of dissected units, and DeconvNet and guided views of their top images
# (docs/visualize.md): one job per (run, layer) under `visualize.runs`, on the run's dissection (its detectors,
# best IoU first, their highest activations and top images); and the inversion of every dissected layer of the
# runs under `visualize.invert.runs`, one job per run.

VISUALIZE = config.get("visualize") or {}
INVERT = VISUALIZE.get("invert") or {}


def _check_visualize() -> None:
    for run, entry in VISUALIZE.get("runs", {}).items():
        if run not in RUNS:
            raise config_error(f"visualize.runs.{run}", f"is not a dissected run; choose from {', '.join(RUNS)}")
        unknown = [layer for layer in entry["layers"] if layer not in RUNS[run].layers]
        if unknown:
            raise config_error(f"visualize.runs.{run}.layers", f"{unknown[0]!r} is not dissected for {run!r} "
                               f"(its layers: {', '.join(RUNS[run].layers)})")
    for run in INVERT.get("runs", {}):
        if run not in RUNS:
            raise config_error(f"visualize.invert.runs.{run}", f"is not a dissected run; choose from {', '.join(RUNS)}")
    if INVERT:
        check_images("visualize.invert.images", INVERT["images"])


_check_visualize()


def visualized() -> list[str]:
    """The unit-visualisation and inversion result directories of the config."""
    return [f"results/visualize/{run}/{layer}" for run, entry in VISUALIZE.get("runs", {}).items()
            for layer in entry["layers"]] + [f"results/invert/{run}" for run in INVERT.get("runs", {})]


REPORT_RESULTS.extend(visualized())


def visualize_inputs(wildcards) -> dict:
    """The dissection, the weights it was computed with and its dataset (whose top images are projected)."""
    return {"dissection": f"results/dissect/{wildcards.run}/{wildcards.layer}",
            **forward_inputs(RUNS[wildcards.run].source)}


def visualize_options(wildcards) -> str:
    """Every option of `unitscope visualize` for a (run, layer) but `--out`."""
    entry = VISUALIZE["runs"][wildcards.run]
    options = [model_options(RUNS[wildcards.run].source),
               f"--dissection results/dissect/{wildcards.run}/{shlex.quote(wildcards.layer)}",
               f"--size {VISUALIZE['size']}", f"--input-size {entry.get('input_size', VISUALIZE['input_size'])}",
               f"--steps {VISUALIZE['steps']}", f"--pixel-steps {VISUALIZE['pixel_steps']}",
               f"--seed {VISUALIZE['seed']}", f"--device {config['device']}"]
    options += [f"--method {method}" for method in entry["methods"]]
    if entry["top_images"]:
        dataset = dataset_dir(model_dataset(RUNS[wildcards.run].source.model))
        options.append(f"--top-images {entry['top_images']} --dataset {shlex.quote(dataset)}")
    if entry.get("max_units"):
        options.append(f"--max-units {entry['max_units']}")
    return " ".join(options)


rule visualize_units:
    input:
        unpack(visualize_inputs),
    output:
        directory("results/visualize/{run}/{layer}"),
    log:
        "logs/visualize_units/{run}/{layer}.log",
    params:
        options=visualize_options,
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope visualize {params.options} --out {output} > {log} 2>&1"


def invert_inputs(wildcards) -> dict:
    """The weights of the run and the datasets its images come from."""
    inputs = forward_inputs(RUNS[wildcards.run].source)
    return {**inputs, "dataset": [inputs["dataset"], *image_datasets(INVERT["images"])]}


def invert_options(wildcards) -> str:
    """Every option of `unitscope invert` for a run but `--out`."""
    run = RUNS[wildcards.run]
    options = [model_options(run.source), f"--name {shlex.quote(run.source.name)}",
               *(f"--layer {shlex.quote(layer)}" for layer in run.layers),
               *(f"--image {shlex.quote(image)}" for image in image_paths(INVERT["images"])),
               f"--size {INVERT['size']}", f"--steps {INVERT['steps']}", f"--seed {INVERT['seed']}",
               f"--device {config['device']}"]
    limit = (INVERT["runs"][wildcards.run] or {}).get("max_images")
    if limit:
        options.append(f"--max-images {limit}")
    return " ".join(options)


rule invert_layers:
    input:
        unpack(invert_inputs),
    output:
        directory("results/invert/{run}"),
    log:
        "logs/invert_layers/{run}.log",
    params:
        options=invert_options,
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope invert {params.options} --out {output} > {log} 2>&1"
