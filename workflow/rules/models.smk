# Models the pipeline trains itself (spec `probecnn`), with checkpoints along the way: one job per training seed.


rule train_probecnn:
    input:
        dataset=lambda wildcards: check_device() or dataset_dir(model_dataset(TRAININGS[wildcards.training][0])),
    output:
        directory("results/models/{training}"),
    log:
        "logs/train_probecnn/{training}.log",
    params:
        options=train_options,
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope train-probecnn --dataset {input.dataset} --out {output} {params.options} > {log} 2>&1"
