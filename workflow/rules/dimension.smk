# The effective dimension (participation ratio) of every dissected layer in its original basis: a rotation
# leaves it unchanged, and it tells whether a layer's rotation series can test axis alignment at all.


def measured() -> list[str]:
    """Every (run, layer) of an unrotated run (config key `dimension`)."""
    if not config["dimension"]:
        return []
    return [f"results/dimension/{run.name}/{layer}" for run in RUNS.values() if run.alpha is None
            for layer in run.layers]


REPORT_RESULTS.extend(measured())


rule dimension:
    input:
        unpack(lambda wildcards: dissect_inputs(wildcards, all_shards=True)),
    output:
        directory("results/dimension/{run}/{layer}"),
    log:
        "logs/dimension/{run}/{layer}.log",
    params:
        source=source_option,
        options=lambda wildcards: f"{common_options()} --name {shlex.quote(RUNS[wildcards.run].source.name)}",
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope dimension --dataset {input.dataset} {params.source} --layer {wildcards.layer:q} "
        "--out results/dimension/{wildcards.run} {params.options} > {log} 2>&1"
