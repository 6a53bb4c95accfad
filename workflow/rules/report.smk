# Provenance of the result set, then the static report site.


rule provenance:
    input:
        datasets=report_datasets(),
        results=REPORT_RESULTS,
        checkpoints=trained_models(),
    output:
        "results/dissect/provenance.json",
    log:
        "logs/provenance.log",
    params:
        config=lambda wildcards: json.dumps(config),
        datasets=provenance_datasets(),
        inputs=lambda wildcards, input: " ".join(
            [f"--results {shlex.quote(d)}" for d in input.results]
            + [f"--checkpoints {shlex.quote(d)}" for d in input.checkpoints]
        ),
    conda:
        CONDA_ENV
    shell:
        "printf '%s' {params.config:q} | python -m unitscope.provenance --config - {params.datasets} "
        "{params.inputs} --out {output} > {log} 2>&1"


rule report:
    input:
        datasets=report_datasets(),
        results=REPORT_RESULTS,
        provenance="results/dissect/provenance.json",
    output:
        directory("reports/site"),
    log:
        "logs/report.log",
    params:
        options=report_options(),
        results=lambda wildcards, input: " ".join(f"--results {shlex.quote(d)}" for d in input.results),
    threads: config["threads"]
    conda:
        CONDA_ENV
    shell:
        "unitscope report {params.results} --provenance {input.provenance} {params.options} --workers {threads} "
        "--out {output} > {log} 2>&1"
