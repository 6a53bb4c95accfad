# Net2Vec (Fong & Vedaldi 2018; docs/net2vec.md): every concept of the dataset as a weighted combination of a
# dissected layer's binarised units, by segmentation and classification probes trained on the train split and scored
# on the val split against the best single unit. One job per (run, layer) under `net2vec.runs`: it reads the source's
# activation cache where the plan caches it (kept until these jobs are done), else runs the layer's forward pass.

NET2VEC = config.get("net2vec") or {}


def _check_net2vec() -> None:
    for run, entry in NET2VEC.get("runs", {}).items():
        if run not in RUNS:
            raise config_error(f"net2vec.runs.{run}", f"is not a dissected run; choose from {', '.join(RUNS)}")
        unknown = [layer for layer in entry["layers"] if layer not in RUNS[run].layers]
        if unknown:
            raise config_error(f"net2vec.runs.{run}.layers", f"{unknown[0]!r} is not dissected for {run!r} "
                               f"(its layers: {', '.join(RUNS[run].layers)})")


_check_net2vec()

REPORT_RESULTS.extend(f"results/net2vec/{run}/{layer}" for run, entry in NET2VEC.get("runs", {}).items()
                      for layer in entry["layers"])


def net2vec_inputs(wildcards) -> dict:
    """The dissection (its thresholds), and the activation caches of every shard or what a forward pass needs."""
    return {"dissection": f"results/dissect/{wildcards.run}/{wildcards.layer}",
            **dissect_inputs(wildcards, all_shards=True)}


def net2vec_options(wildcards, input) -> str:
    """Every option of `unitscope net2vec` for a (run, layer) but `--out`."""
    source = RUNS[wildcards.run].source
    return " ".join([
        source_option(wildcards, input),
        f"--dataset {shlex.quote(dataset_dir(model_dataset(source.model)))}",
        f"--dissection results/dissect/{wildcards.run}/{shlex.quote(wildcards.layer)}",
        f"--epochs {NET2VEC['epochs']}", f"--lr {NET2VEC['lr']}", f"--seed {NET2VEC['seed']}",
        f"--step-images {NET2VEC['step_images']}", f"--sparsity-epochs {NET2VEC['sparsity_epochs']}",
        *(f"--concept {shlex.quote(name)}" for name in NET2VEC["concepts"]),
        f"--batch-size {config['batch_size']}", f"--device {config['device']}", f"--workers {config['loader_workers']}"])


rule net2vec:
    input:
        unpack(net2vec_inputs),
    output:
        directory("results/net2vec/{run}/{layer}"),
    log:
        "logs/net2vec/{run}/{layer}.log",
    params:
        options=net2vec_options,
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope net2vec {params.options} --out {output} > {log} 2>&1"
