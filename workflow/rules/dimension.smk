# The effective dimension (participation ratio) of every dissected layer in its original basis: a rotation
# leaves it unchanged, and it tells whether a layer's rotation series can test axis alignment at all. One job
# per run measures all its layers from one pass over the activations.


def measured() -> list[str]:
    """The result directory of every run in the original basis at the configured threshold, repeated trainings
    left out (config key `dimension`): one subdirectory per layer."""
    if not config["dimension"]:
        return []
    return [f"results/dimension/{run.name}" for run in RUNS.values()
            if run.alpha is None and run.quantile is None and "repeat" not in run.tags]


REPORT_RESULTS.extend(measured())


def dimension_options(wildcards) -> str:
    run = RUNS[wildcards.run]
    layers = " ".join(f"--layer {shlex.quote(layer)}" for layer in run.layers)
    return f"{layers} {common_options()} --name {shlex.quote(run.source.name)}"


rule dimension:
    input:
        unpack(lambda wildcards: dissect_inputs(wildcards, all_shards=True)),
    output:
        directory("results/dimension/{run}"),
    log:
        "logs/dimension/{run}.log",
    params:
        source=source_option,
        options=dimension_options,
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope dimension --dataset {input.dataset} {params.source} {params.options} --out {output} > {log} 2>&1"
