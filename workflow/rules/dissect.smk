# One forward pass per (source, shard) caches every layer; each (run, layer) is dissected from the cache.


rule extract:
    input:
        unpack(source_inputs),
    output:
        temp(directory("results/activations/{source}/shard-{shard}")),
    log:
        "logs/extract/{source}/shard-{shard}.log",
    params:
        options=extract_options,
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope extract --dataset {input.dataset} --out {output} {params.options} > {log} 2>&1"


if SHARDS == 1:

    rule dissect:
        input:
            dataset=run_dataset,
            cache=lambda wildcards: cache_dir(wildcards, 0),
        output:
            directory("results/dissect/{run}/{layer}"),
        log:
            "logs/dissect/{run}/{layer}.log",
        params:
            options=dissect_options,
        threads: config["threads"]
        resources:
            gpu=GPU_PER_JOB,
        conda:
            CONDA_ENV
        shell:
            "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
            "unitscope dissect --dataset {input.dataset} --activations {input.cache} --layer {wildcards.layer:q} "
            "--out results/dissect/{wildcards.run} {params.options} > {log} 2>&1"

else:
    # Thresholds need every image: per-shard top-k lists are merged into exact thresholds first,
    # then each shard is tallied against them and the tallies are added up (docs/cli.md, Sharding).

    rule dissect_topk:
        input:
            dataset=run_dataset,
            cache=cache_dir,
        output:
            temp(directory("results/shards/{run}/{layer}/topk-{shard}")),
        log:
            "logs/dissect_topk/{run}/{layer}/shard-{shard}.log",
        params:
            options=dissect_options,
            shard=shard_option,
        threads: config["threads"]
        resources:
            gpu=GPU_PER_JOB,
        conda:
            CONDA_ENV
        shell:
            "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
            "unitscope dissect --dataset {input.dataset} --activations {input.cache} --layer {wildcards.layer:q} "
            "{params.shard} --stage topk --out {output} {params.options} > {log} 2>&1"

    rule merge_topk:
        input:
            expand("results/shards/{{run}}/{{layer}}/topk-{shard}", shard=range(SHARDS)),
        output:
            temp(directory("results/shards/{run}/{layer}/topk")),
        log:
            "logs/merge_topk/{run}/{layer}.log",
        conda:
            CONDA_ENV
        shell:
            "unitscope merge {input} --out {output} > {log} 2>&1"

    rule dissect_tally:
        input:
            dataset=run_dataset,
            cache=cache_dir,
            thresholds="results/shards/{run}/{layer}/topk",
        output:
            temp(directory("results/shards/{run}/{layer}/tally-{shard}")),
        log:
            "logs/dissect_tally/{run}/{layer}/shard-{shard}.log",
        params:
            options=dissect_options,
            shard=shard_option,
        threads: config["threads"]
        resources:
            gpu=GPU_PER_JOB,
        conda:
            CONDA_ENV
        shell:
            "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
            "unitscope dissect --dataset {input.dataset} --activations {input.cache} --layer {wildcards.layer:q} "
            "{params.shard} --stage tally --thresholds {input.thresholds} --out {output} {params.options} "
            "> {log} 2>&1"

    rule merge_tally:
        input:
            expand("results/shards/{{run}}/{{layer}}/tally-{shard}", shard=range(SHARDS)),
        output:
            directory("results/dissect/{run}/{layer}"),
        log:
            "logs/merge_tally/{run}/{layer}.log",
        conda:
            CONDA_ENV
        shell:
            "unitscope merge {input} --out results/dissect/{wildcards.run} > {log} 2>&1"
