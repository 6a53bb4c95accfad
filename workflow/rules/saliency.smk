# Saliency maps of the configured models and their sanity checks (Adebayo et al. 2018; docs/saliency.md):
# one job per model for its maps, one for its randomisation tests; the digits CNNs trained on true and on
# permuted labels for the paper's MNIST setting.

SALIENCY = config.get("saliency") or {}
DIGITS = SALIENCY.get("digits")
DIGITS_MODEL = "digits-cnn"


def _architecture(model: str) -> tuple:
    entry = config["models"][model]
    train = entry.get("train") or {}
    return entry["spec"], entry.get("arch"), *(train.get(key) for key in ARCHITECTURE_KEYS)


def _check_saliency() -> None:
    for model, entry in SALIENCY.get("models", {}).items():
        if (model in config["models"]) == ("spec" in entry):
            raise config_error(f"saliency.models.{model}", "name a model under `models`, or give a model not dissected "
                               "its own `spec`" if "spec" not in entry else "has a `spec` but is also under `models`")
        if "normalize" in entry and "spec" not in entry:
            raise config_error(f"saliency.models.{model}.normalize", "applies to a `spec` model; set `models.<name>.normalize`")
        check_images(f"saliency.models.{model}.images", entry["images"])
        other = (entry.get("sanity") or {}).get("random_labels")
        if other is not None and (other not in config["models"] or
                                  config["models"][other].get("train", {}).get("labels") != "permuted"):
            raise config_error(f"saliency.models.{model}.sanity.random_labels",
                               f"{other!r} must be a model under `models` trained with `train.labels: permuted`")
        if other is not None and ("spec" in entry or _architecture(other) != _architecture(model)):
            raise config_error(f"saliency.models.{model}.sanity.random_labels",
                               f"{other!r} is not the same architecture as {model!r} (spec, "
                               f"{', '.join(ARCHITECTURE_KEYS)})")
        if "data" in (entry.get("sanity") or {}).get("tests", []) and other is None:
            raise config_error(f"saliency.models.{model}.sanity.tests", "`data` needs `random_labels`")
    if DIGITS_MODEL in SALIENCY.get("models", {}):
        raise config_error(f"saliency.models.{DIGITS_MODEL}", "is the name of the digits experiment (`saliency.digits`)")


_check_saliency()


def saliency_results() -> list[str]:
    """The saliency and sanity-check result directories of the config."""
    models = list(SALIENCY.get("models", {}))
    sanity = [model for model, entry in SALIENCY.get("models", {}).items() if entry.get("sanity")]
    if DIGITS is not None:
        models.append(DIGITS_MODEL)
        if DIGITS.get("sanity"):
            sanity.append(DIGITS_MODEL)
    return [f"results/saliency/{model}" for model in models] + [f"results/sanity/{model}" for model in sanity]


REPORT_RESULTS.extend(saliency_results())


def _model_weights(model: str) -> tuple[str, dict]:
    """`--model/--arch/--normalize` of a model's explained weights (a trained model's final checkpoint), and the
    inputs they need."""
    if model == DIGITS_MODEL:
        return f"--model file:results/models/{DIGITS_MODEL}-true/final.pt --arch {DIGITS_MODEL}", {
            "weights": f"results/models/{DIGITS_MODEL}-true"}
    entry = SALIENCY["models"][model]
    if "spec" in entry:
        normalize = f" --normalize {entry['normalize']}" if "normalize" in entry else ""
        return f"--model {shlex.quote(entry['spec'])}{normalize}", {}
    source = RUNS[model].source
    inputs = {"weights": f"results/models/{source.training}"} if source.iteration is not None else {}
    return model_options(source), inputs


def saliency_inputs(wildcards) -> dict:
    check_device()
    _, inputs = _model_weights(wildcards.model)
    if wildcards.model == DIGITS_MODEL:
        return inputs
    datasets = image_datasets(SALIENCY["models"][wildcards.model]["images"])
    other = (SALIENCY["models"][wildcards.model].get("sanity") or {}).get("random_labels")
    if other is not None:
        inputs["random_labels"] = f"results/models/{RUNS[other].source.training}"
    return {**inputs, "datasets": datasets}


def _listed(option: str, values) -> list[str]:
    return [f"{option} {shlex.quote(str(value))}" for value in values]


def saliency_options(wildcards, sanity: bool = False) -> str:
    """Every option of `unitscope saliency` (or `sanity-check`) for a model but `--out`."""
    model = wildcards.model
    weights, _ = _model_weights(model)
    if model == DIGITS_MODEL:
        entry = {"images": [f"results/models/{DIGITS_MODEL}-true/test-images"], "sanity": DIGITS.get("sanity")}
        size = 28
    else:
        entry = SALIENCY["models"][model]
        size = entry.get("size", SALIENCY["size"])
    images = image_paths(entry["images"])
    check = entry.get("sanity") or {} if sanity else {}
    options = [weights, *_listed("--image", images), f"--size {size}", f"--device {config['device']}",
               f"--smoothgrad-samples {SALIENCY['smoothgrad_samples']}", f"--smoothgrad-noise {SALIENCY['smoothgrad_noise']}",
               f"--ig-steps {SALIENCY['ig_steps']}", f"--seed {SALIENCY['seed']}"]
    limit = check.get("max_images") or entry.get("max_images")
    if limit:
        options.append(f"--max-images {limit}")
    options += _listed("--method", check.get("methods") or SALIENCY.get("methods") or [])
    if entry.get("layer"):
        options.append(f"--layer {shlex.quote(entry['layer'])}")
    if sanity:
        options += _listed("--test", check["tests"])
        options += [f"--order {check['order']}", f"--explain {check['explain']}",
                    f"--figure-images {check['figure_images']}"]
        if check["reset_statistics"]:
            options.append("--reset-statistics")
        if model == DIGITS_MODEL and "data" in check["tests"]:
            options.append(f"--random-labels file:results/models/{DIGITS_MODEL}-permuted/final.pt")
        elif check.get("random_labels"):
            other = RUNS[check["random_labels"]].source
            options.append(f"--random-labels file:{checkpoint_path(other)}")
    return " ".join(options)


rule saliency_maps:
    input:
        unpack(saliency_inputs),
    output:
        directory("results/saliency/{model}"),
    log:
        "logs/saliency_maps/{model}.log",
    params:
        options=saliency_options,
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope saliency {params.options} --out {output} > {log} 2>&1"


rule sanity_check:
    input:
        unpack(saliency_inputs),
        digits=lambda wildcards: [f"results/models/{DIGITS_MODEL}-permuted"]
        if wildcards.model == DIGITS_MODEL and "data" in DIGITS["sanity"]["tests"] else [],
    output:
        directory("results/sanity/{model}"),
    log:
        "logs/sanity_check/{model}.log",
    params:
        options=lambda wildcards: saliency_options(wildcards, sanity=True),
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope sanity-check {params.options} --out {output} > {log} 2>&1"


rule train_digits:
    output:
        directory("results/models/digits-cnn-{labels}"),
    log:
        "logs/train_digits/{labels}.log",
    params:
        options=lambda wildcards: f"--labels {wildcards.labels} --seed {DIGITS['seed']} --epochs {DIGITS['epochs']} "
        f"--test-images {DIGITS['images']}",
    threads: config["threads"]
    wildcard_constraints:
        labels="true|permuted",
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
        "unitscope train-digits {params.options} --out {output} > {log} 2>&1"


wildcard_constraints:
    model=one_of([*SALIENCY.get("models", {}), DIGITS_MODEL]),
