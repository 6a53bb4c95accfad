# Compositional explanations (Mu & Andreas 2020; docs/compositional.md): every unit of a dissected layer labelled
# with its best formula over concepts, from the dissection's own masks. One job per (run, layer) under
# `compositional.runs`: it reads the source's activation cache where the plan caches it (kept until these jobs are
# done), else runs the layer's forward pass again.

COMPOSITIONAL = config.get("compositional") or {}


def _check_compositional() -> None:
    for run, entry in COMPOSITIONAL.get("runs", {}).items():
        if run not in RUNS:
            raise config_error(f"compositional.runs.{run}", f"is not a dissected run; choose from {', '.join(RUNS)}")
        unknown = [layer for layer in entry["layers"] if layer not in RUNS[run].layers]
        if unknown:
            raise config_error(f"compositional.runs.{run}.layers", f"{unknown[0]!r} is not dissected for {run!r} "
                               f"(its layers: {', '.join(RUNS[run].layers)})")


_check_compositional()

REPORT_RESULTS.extend(f"results/compositional/{run}/{layer}" for run, entry in COMPOSITIONAL.get("runs", {}).items()
                      for layer in entry["layers"])


def compositional_inputs(wildcards) -> dict:
    """The dissection, and the activation caches of every shard or what a forward pass needs."""
    return {"dissection": f"results/dissect/{wildcards.run}/{wildcards.layer}",
            **dissect_inputs(wildcards, all_shards=True)}


def compositional_options(wildcards, input) -> str:
    """Every option of `unitscope compositional` for a (run, layer) but `--out`."""
    source = RUNS[wildcards.run].source
    return " ".join([
        source_option(wildcards, input), f"--dataset {shlex.quote(dataset_dir(model_dataset(source.model)))}",
        f"--dissection results/dissect/{wildcards.run}/{shlex.quote(wildcards.layer)}",
        f"--max-length {COMPOSITIONAL['max_length']}", f"--beam {COMPOSITIONAL['beam']}",
        f"--union {COMPOSITIONAL['union']}", f"--batch-size {config['batch_size']}", f"--device {config['device']}",
        f"--workers {config['loader_workers']}"])


rule compositional:
    input:
        unpack(compositional_inputs),
    output:
        directory("results/compositional/{run}/{layer}"),
    log:
        "logs/compositional/{run}/{layer}.log",
    params:
        options=compositional_options,
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope compositional {params.options} --out {output} > {log} 2>&1"
