REPORT_RESULTS.extend(dissected())


# One forward pass per (source, shard) caches every layer; each (run, layer) is dissected from the cache. A source
# whose cache the plan does not put on disk (config keys cache, cache_budget_gb) has no extract job: each of its
# dissections runs the forward pass itself (docs/workflow.md, Disk).


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
            unpack(dissect_inputs),
        output:
            directory("results/dissect/{run}/{layer}"),
        log:
            "logs/dissect/{run}/{layer}.log",
        params:
            source=activations_option,
            options=dissect_options,
        threads: config["threads"]
        resources:
            gpu=GPU_PER_JOB,
        conda:
            CONDA_ENV
        shell:
            "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
            "unitscope dissect --dataset {input.dataset} {params.source} --layer {wildcards.layer:q} "
            "--out results/dissect/{wildcards.run} {params.options} > {log} 2>&1"

else:
    # Thresholds need every image: per-shard top-k lists are merged into exact thresholds first,
    # then each shard is tallied against them and the tallies are added up (docs/cli.md, Sharding).

    rule dissect_topk:
        input:
            unpack(dissect_inputs),
        output:
            temp(directory("results/shards/{run}/{layer}/topk-{shard}")),
        log:
            "logs/dissect_topk/{run}/{layer}/shard-{shard}.log",
        params:
            source=activations_option,
            options=dissect_options,
            shard=shard_option,
        threads: config["threads"]
        resources:
            gpu=GPU_PER_JOB,
        conda:
            CONDA_ENV
        shell:
            "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
            "unitscope dissect --dataset {input.dataset} {params.source} --layer {wildcards.layer:q} "
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
            unpack(dissect_inputs),
            thresholds="results/shards/{run}/{layer}/topk",
        output:
            temp(directory("results/shards/{run}/{layer}/tally-{shard}")),
        log:
            "logs/dissect_tally/{run}/{layer}/shard-{shard}.log",
        params:
            source=activations_option,
            options=dissect_options,
            shard=shard_option,
        threads: config["threads"]
        resources:
            gpu=GPU_PER_JOB,
        conda:
            CONDA_ENV
        shell:
            "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
            "unitscope dissect --dataset {input.dataset} {params.source} --layer {wildcards.layer:q} "
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
