# Predictions explained by interpreted units (Zhou et al. 2018; docs/explain.md): each image's class logit split
# over the units of the dissected layer that feeds the model's classifier, with their dissection labels. One job
# per run under `explain.runs`.

EXPLAIN = config.get("explain") or {}


def _check_explain() -> None:
    for run, entry in EXPLAIN.get("runs", {}).items():
        if run not in RUNS:
            raise config_error(f"explain.runs.{run}", f"is not a dissected run; choose from {', '.join(RUNS)}")
        if RUNS[run].alpha is not None:
            raise config_error(f"explain.runs.{run}", "is dissected in a rotated basis; explain works on the model's own "
                               "units: name the unrotated run")
        if entry["layer"] not in RUNS[run].layers:
            raise config_error(f"explain.runs.{run}.layer", f"{entry['layer']!r} is not dissected for {run!r} "
                               f"(its layers: {', '.join(RUNS[run].layers)})")
        check_images(f"explain.runs.{run}.images", entry["images"])


_check_explain()

REPORT_RESULTS.extend(f"results/explain/{run}" for run in EXPLAIN.get("runs", {}))


def explain_inputs(wildcards) -> dict:
    """The layer's dissection, the weights it was computed with and the datasets the images come from."""
    entry = EXPLAIN["runs"][wildcards.run]
    inputs = forward_inputs(RUNS[wildcards.run].source)
    return {**inputs, "dissection": f"results/dissect/{wildcards.run}/{entry['layer']}",
            "dataset": [inputs["dataset"], *image_datasets(entry["images"])]}


def explain_options(wildcards) -> str:
    """Every option of `unitscope explain` for a run but `--out`."""
    entry = EXPLAIN["runs"][wildcards.run]
    options = [model_options(RUNS[wildcards.run].source),
               f"--dissection results/dissect/{wildcards.run}/{shlex.quote(entry['layer'])}",
               *(f"--image {shlex.quote(image)}" for image in image_paths(entry["images"])),
               f"--size {EXPLAIN['size']}", f"--weights {EXPLAIN['weights']}", f"--device {config['device']}"]
    if entry.get("max_images"):
        options.append(f"--max-images {entry['max_images']}")
    return " ".join(options)


rule explain:
    input:
        unpack(explain_inputs),
    output:
        directory("results/explain/{run}"),
    log:
        "logs/explain/{run}.log",
    params:
        options=explain_options,
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope explain {params.options} --out {output} > {log} 2>&1"
