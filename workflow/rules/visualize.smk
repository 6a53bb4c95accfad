# Activation maximisation of dissected units, and DeconvNet and guided views of their top images
# (docs/visualize.md): one job per (run, layer) under `visualize.runs`, on the run's dissection (its detectors,
# best IoU first, their highest activations and top images).

VISUALIZE = config.get("visualize") or {}


def _check_visualize() -> None:
    for run, entry in VISUALIZE.get("runs", {}).items():
        if run not in RUNS:
            raise config_error(f"visualize.runs.{run}", f"is not a dissected run; choose from {', '.join(RUNS)}")
        unknown = [layer for layer in entry["layers"] if layer not in RUNS[run].layers]
        if unknown:
            raise config_error(f"visualize.runs.{run}.layers", f"{unknown[0]!r} is not dissected for {run!r} "
                               f"(its layers: {', '.join(RUNS[run].layers)})")


_check_visualize()


def visualized() -> list[str]:
    """The unit-visualisation result directories of the config."""
    return [f"results/visualize/{run}/{layer}" for run, entry in VISUALIZE.get("runs", {}).items()
            for layer in entry["layers"]]


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
