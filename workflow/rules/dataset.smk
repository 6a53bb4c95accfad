# Probe datasets in Broden format: generated, downloaded, or (source: path) used where they are.


rule probe_dataset:
    output:
        directory("data/{dataset}"),
    log:
        "logs/probe_dataset/{dataset}.log",
    params:
        options=probe_options,
    threads: config["threads"]
    conda:
        CONDA_ENV
    shell:
        "unitscope probe-dataset --out {output} {params.options} --workers {threads} > {log} 2>&1"


rule download_broden:
    output:
        protected(directory("data/broden1_{variant}")),
    log:
        "logs/download_broden/{variant}.log",
    params:
        options=broden_options,
    retries: 3
    conda:
        CONDA_ENV
    shell:
        "unitscope download broden --variant {wildcards.variant} --dest data {params.options} > {log} 2>&1"
