# Unit ablation (Bau et al. 2020; docs/ablation.md): every unit of a dissected layer of a pipeline-trained scene
# classifier zeroed in turn, with each class's accuracy and logit on the dataset's held-out scenes, and each class's
# most important units removed together, kept alone and against as many random ones. One job per (run, layer)
# under `ablation.runs`.

ABLATION = config.get("ablation") or {}


def _check_ablation() -> None:
    for run, entry in ABLATION.get("runs", {}).items():
        if run not in RUNS:
            raise config_error(f"ablation.runs.{run}", f"is not a dissected run; choose from {', '.join(RUNS)}")
        if RUNS[run].alpha is not None:
            raise config_error(f"ablation.runs.{run}", "is dissected in a rotated basis; ablation works on the model's own "
                               "units: name the unrotated run")
        if RUNS[run].source.iteration is None:
            raise config_error(f"ablation.runs.{run}", "needs a classifier of the dataset's scenes: a model trained "
                               "by the workflow (`train`), whose checkpoint names its classes")
        unknown = [layer for layer in entry["layers"] if layer not in RUNS[run].layers]
        if unknown:
            raise config_error(f"ablation.runs.{run}.layers", f"{unknown[0]!r} is not dissected for {run!r} "
                               f"(its layers: {', '.join(RUNS[run].layers)})")


_check_ablation()

REPORT_RESULTS.extend(f"results/ablation/{run}/{layer}" for run, entry in ABLATION.get("runs", {}).items()
                      for layer in entry["layers"])


def ablation_inputs(wildcards) -> dict:
    """The dissection (the labels of the important units), the checkpoint and its dataset."""
    return {"dissection": f"results/dissect/{wildcards.run}/{wildcards.layer}",
            **forward_inputs(RUNS[wildcards.run].source)}


def ablation_options(wildcards) -> str:
    """Every option of `unitscope ablate` for a (run, layer) but `--out`."""
    source = RUNS[wildcards.run].source
    return " ".join([model_options(source), f"--layer {shlex.quote(wildcards.layer)}",
                     f"--dataset {shlex.quote(dataset_dir(model_dataset(source.model)))}",
                     f"--dissection results/dissect/{wildcards.run}/{shlex.quote(wildcards.layer)}",
                     f"--seed {ABLATION['seed']}", f"--device {config['device']}"])


rule ablation:
    input:
        unpack(ablation_inputs),
    output:
        directory("results/ablation/{run}/{layer}"),
    log:
        "logs/ablation/{run}/{layer}.log",
    params:
        options=ablation_options,
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope ablate {params.options} --out {output} > {log} 2>&1"
