"""The Snakemake workflow: every shipped config and profile plans a DAG, bad configs fail naming the key,
and the whole DAG runs on the tiny config (sharded results equal unsharded ones), resumes after a kill, and runs
through the SLURM profile on a real single-node cluster with the local run's results."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from unitscope import __version__
from unitscope.provenance import collect_provenance, find_seeds, main as provenance_main

REPO = Path(__file__).resolve().parents[1]
#: What a fresh clone holds that the workflow reads.
WORKFLOW_FILES = ("Snakefile", "Makefile", "workflow", "config", "envs", "CITATION.cff", "tests/configs",
                  "tests/data/sanity-images")
TINY = "tests/configs/tiny.yaml"
RESULT_FILES = ("tally.csv", "thresholds.csv", "ious.csv", "top_images.csv", "top_maps.npy", "summary.json", "meta.json",
                "null.csv")  # null.csv: the tiny config runs the permutation null


def copy_workflow(directory: Path) -> Path:
    """A scratch copy of the workflow files in ``directory``, as in a fresh clone."""
    for name in WORKFLOW_FILES:
        source, target = REPO / name, directory / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return directory


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path)


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir, capture_output=True, text=True, timeout=timeout,
    )


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The dry run's job-count table, {rule: count}."""
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout + result.stderr
    table = text[text.index("Job stats:"):].splitlines()[3:]
    counts = {}
    for line in table:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


# ------------------------------------------------------------------------------------------- dry runs


def test_default_config_plans_every_stage(clone: Path) -> None:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    counts = planned_jobs(snakemake(clone, "-n"))
    models = config["models"]
    trainings = extracts = dissects = dimensions = 0
    for m in models.values():
        train = m.get("train")
        seeds = train["seeds"] if train else [None]
        followed = train.get("layers", []) if train else []  # the raw config: schema defaults not filled in
        checkpoints = set(train.get("checkpoints", [])) - {train["iterations"]} if followed else set()
        trainings += len(seeds) if train else 0
        extracts += len(seeds) + len(checkpoints)  # one forward pass per set of weights (not per layer)
        repeated = followed or m["layers"]
        dissects += len(m["layers"]) + len(repeated) * (len(seeds) - 1) + len(checkpoints) * len(repeated)
        dimensions += 1 + len(checkpoints)  # repeated trainings have no effective-dimension job
        if "quantiles" in m:
            dissects += len(m["quantiles"]["layers"]) * len(m["quantiles"]["values"])
        if "rotation" in m:
            rotation = m["rotation"]
            every_seed = rotation.get("seeds_at", rotation["alphas"])
            per_layer = sum(len(rotation["seeds"]) if alpha in every_seed and alpha != 0 else 1
                            for alpha in rotation["alphas"])
            dissects += per_layer * len(rotation["layers"])
    saliency = config["saliency"]
    explained = len(saliency["models"]) + 1  # and the digits CNN
    checked = sum("sanity" in entry for entry in saliency["models"].values()) + 1
    assert counts == {
        "all": 1, "probe_dataset": 1, "train_probecnn": trainings, "extract": extracts, "dissect": dissects,
        "dimension": dimensions, "provenance": 1, "report": 1, "saliency_maps": explained, "sanity_check": checked,
        "train_digits": 2, "visualize_units": sum(len(entry["layers"]) for entry in config["visualize"]["runs"].values()),
        "invert_layers": len(config["visualize"]["invert"]["runs"]),
        "compositional": sum(len(entry["layers"]) for entry in config["compositional"]["runs"].values()),
        "ablation": sum(len(entry["layers"]) for entry in config["ablation"]["runs"].values()),
        "explain": len(config["explain"]["runs"]),
        "net2vec": sum(len(entry["layers"]) for entry in config["net2vec"]["runs"].values()),
    }
    # Counted by hand for the shipped config: dissections 15 ProbeCNN (4 layers, 2 repeats, 4 checkpoints, 5 rotated)
    # + 4 untrained + 12 conditions (4 × 3 seeds) + 1 on permuted labels + 26 EfficientNet (3 layers, 9 swept,
    # 2 × 7 rotated); forward passes 7 + 1 + 12 + 1 + 1; effective dimensions 5 + 1 + 4 + 1 + 1.
    assert (trainings, dissects, extracts, dimensions) == (16, 58, 22, 12)


def test_paper_config_plans_downloads_and_every_network(clone: Path) -> None:
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    missing = snakemake(clone, "-n", "--configfile", "config/paper.yaml")
    assert missing.returncode != 0
    assert "data/imagenet-samples does not exist: put the images there" in missing.stdout + missing.stderr
    (clone / "data/imagenet-samples").mkdir(parents=True)  # where the user puts ImageNet validation images
    result = snakemake(clone, "-n", "-p", "--configfile", "config/paper.yaml")
    counts = planned_jobs(result)
    assert counts["saliency_maps"] == counts["sanity_check"] == 3  # ResNet-50, VGG16, Inception v3
    assert "train_probecnn" not in counts and "probe_dataset" not in counts
    text = result.stdout
    # The cache plan fits the budget: AlexNet's five layers (124.6 GB) and VGG16's (330.3 GB) recompute their
    # forward pass in each dissection; the small caches stay on disk.
    plan = re.search(r"Activation caches \(cache: auto, budget 80 GB\): ([\d.]+) GB on disk at most", result.stderr)
    assert plan and float(plan.group(1)) <= 80, result.stderr[-2000:]
    assert "  alexnet-imagenet: 124.6 GB, recomputed" in result.stderr
    assert "  resnet18-imagenet: 6.4 GB, cached on disk" in result.stderr
    cached = len(re.findall(r", cached on disk$", result.stderr, re.M))
    assert counts["download_broden"] == 2 and counts["extract"] == cached < len(config["models"])
    # AlexNet runs on the 227 variant, its conv layers after ReLU; the others on 224.
    assert "--dataset data/broden1_227 --model torchvision:alexnet@imagenet --normalize imagenet --cache recompute --layer features.11" in text
    assert "--dataset data/broden1_224 --out results/activations/resnet152-imagenet/shard-0" in text
    assert "--activations results/activations/resnet152-imagenet/shard-0 --layer layer4" in text


def test_tiny_config_plans_the_sharded_flow(clone: Path) -> None:
    counts = planned_jobs(snakemake(clone, "-n", "--configfile", TINY, "--config", "shards=2"))
    results = 2 + 1 + 1 + 4 + 1 + 1 + 1 + 2 + 1  # probecnn conv2/conv4, checkpoint 0, seed 1, rotations 0, 0.5 and 1
    # (two seeds), untrained, untrained at τ = 0.02, tiny, width ×2 with seeds 0 and 1, permuted labels
    sources = 8  # probecnn final, checkpoint 0, seed 1, untrained, tiny, width ×2 seeds 0 and 1, permuted labels
    assert counts["train_probecnn"] == 5 and counts["extract"] == 2 * sources
    assert counts["dissect_topk"] == counts["dissect_tally"] == 2 * results
    assert counts["merge_topk"] == counts["merge_tally"] == results
    assert counts["dimension"] == sources - 2  # one per run in the original basis but the repeated trainings
    assert "dissect" not in counts


def test_net2vec_options_reach_the_command(clone: Path) -> None:
    config = yaml.safe_load((REPO / TINY).read_text())
    config["net2vec"].update(concepts=["car", "sky blue"], step_images=8, sparsity_epochs=0)
    (clone / "concepts.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(clone, "results/net2vec/probecnn/conv4", "-n", "-p", "--configfile", "concepts.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--concept car --concept 'sky blue'" in result.stdout
    assert "--step-images 8 --sparsity-epochs 0" in result.stdout


def test_slurm_profile_dry_run_requests_gpus_for_forward_passes(clone: Path) -> None:
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[slurm]'")
    (clone / "data/imagenet-samples").mkdir(parents=True)  # the paper config's saliency images
    result = snakemake(clone, "-n", "--profile", "workflow/profiles/slurm", "--configfile", "config/paper.yaml")
    planned_jobs(result)
    blocks = (result.stdout + result.stderr).split("\nrule ")
    extract = next(b for b in blocks if b.startswith("extract:"))
    report = next(b for b in blocks if b.startswith("report:"))
    sanity = next(b for b in blocks if b.startswith("sanity_check:"))
    assert "gpu=1" in extract and "mem_mb=16000" in extract and "runtime=240" in extract
    assert "gpu=1" in sanity and "runtime=240" in sanity
    assert "gpu=" not in report


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"shards": "two"}, "shards"),
        ({"shards": 2}, "shards`: 2 shards of the 4 images of dataset probe leave shard 0 empty"),
        ({"models": {"m": {"spec": "probecnn", "layers": ["conv1"], "layer": ["x"]}}}, "'layer' was unexpected"),
        ({"models": {"m": {"spec": "probecnn", "layers": ["conv1"], "rotation": {"layers": ["conv9"], "alphas": [1]}}}},
         "models.m.rotation.layers"),
        ({"models": {"m": {"spec": "probecnn", "layers": ["conv1"], "rotation": {"layers": ["conv1"], "alphas": [1],
                                                                                  "seeds_at": [0.5]}}}},
         "models.m.rotation.seeds_at`: [0.5] not in rotation.alphas"),
        ({"models": {"m": {"spec": "probecnn", "layers": ["conv1"], "train": {"iterations": 2, "seed": 1}}}},
         "models.m.train.seed`: is now `seeds`, a list (e.g. seeds: [0, 1, 2])"),
        ({"models": {"m": {"spec": "probecnn", "layers": ["conv1"], "train": {"iterations": 2, "width": 0}}}},
         "models.m.train.width"),
        # Checked from the model definition (no weights) before any job runs:
        ({"models": {"m": {"spec": "probecnn", "layers": ["conv9"]}}}, "models.m.layers`: model ProbeCNN has no layer 'conv9'"),
        ({"models": {"m": {"spec": "torchvision:resnt18@imagenet", "layers": ["layer4"]}}}, "models.m.spec`: unknown model"),
        ({"models": {"m": {"spec": "torchvision:vgg16@imagenet", "layers": ["features.30", "features.99"]}}},
         "models.m.layers`: model VGG has no layer 'features.99'"),
        ({"models": {"m": {"spec": "file:missing.pt", "arch": "probecnn", "layers": ["conv1"]}}},
         "models.m.spec`: missing.pt does not exist"),
        ({"models": {"m": {"spec": "python:tests.configs.tiny_model:nope", "layers": ["3"]}}}, "has no callable 'nope'"),
        ({"saliency": {"models": {"x": {"images": ["builtin:chelsea"]}}}},
         "saliency.models.x`: name a model under `models`, or give a model not dissected its own `spec`"),
        ({"saliency": {"models": {"m": {"images": ["builtin:chelsea"], "sanity": {"tests": ["data"]}}}}},
         "saliency.models.m.sanity.tests`: `data` needs `random_labels`"),
        ({"saliency": {"models": {"m": {"images": ["builtin:chelsea"], "sanity": {"random_labels": "m"}}}}},
         "saliency.models.m.sanity.random_labels`: 'm' must be a model under `models` trained with `train.labels: permuted`"),
        ({"saliency": {"models": {"m": {"images": ["dataset:nope"]}}}}, "saliency.models.m.images`: dataset:nope"),
        ({"saliency": {"models": {"m": {"images": ["photos"]}}}}, "saliency.models.m.images`: photos does not exist"),
        ({"saliency": {"models": {"m": {"images": ["builtin:chelsea"]}}, "methods": ["lime"]}}, "saliency.methods.0"),
        ({"visualize": {"runs": {"x": {"layers": ["conv1"]}}}}, "visualize.runs.x`: is not a dissected run"),
        ({"visualize": {"runs": {"m": {"layers": ["conv2"]}}}},
         "visualize.runs.m.layers`: 'conv2' is not dissected for 'm' (its layers: conv1)"),
        ({"visualize": {"runs": {"m": {"layers": ["conv1"], "methods": ["deepdream"]}}}}, "visualize.runs.m.methods.0"),
        ({"visualize": {"invert": {"images": ["builtin:lena"], "runs": {"m": None}}}},
         "visualize.invert.images`: builtin:lena: built-in photographs are astronaut"),
        ({"visualize": {"invert": {"images": ["builtin:chelsea"], "runs": {"x": None}}}},
         "visualize.invert.runs.x`: is not a dissected run"),
        ({"compositional": {"runs": {"x": {"layers": ["conv1"]}}}}, "compositional.runs.x`: is not a dissected run"),
        ({"compositional": {"runs": {"m": {"layers": ["conv2"]}}}},
         "compositional.runs.m.layers`: 'conv2' is not dissected for 'm' (its layers: conv1)"),
        ({"compositional": {"max_length": 0, "runs": {"m": {"layers": ["conv1"]}}}}, "compositional.max_length"),
        ({"explain": {"runs": {"m": {"layer": "conv2", "images": ["builtin:chelsea"]}}}},
         "explain.runs.m.layer`: 'conv2' is not dissected for 'm' (its layers: conv1)"),
        ({"explain": {"runs": {"m": {"layer": "conv1", "images": ["photos"]}}}}, "explain.runs.m.images`: photos"),
        ({"net2vec": {"runs": {"m": {"layers": ["conv2"]}}}},
         "net2vec.runs.m.layers`: 'conv2' is not dissected for 'm' (its layers: conv1)"),
        ({"net2vec": {"epochs": 0, "runs": {"m": {"layers": ["conv1"]}}}}, "net2vec.epochs"),
        ({"ablation": {"runs": {"m": {"layers": ["conv1"]}}}},
         "ablation.runs.m`: needs a classifier of the dataset's scenes: a model trained by the workflow"),
        ({"models": {"m": {"spec": "efficientnet-lite0", "layers": ["_blocks.4._swish"]}}},
         "models.m.layers`: layer '_blocks.4._swish' is called more than once per forward pass; name one call: "
         "_blocks.4._swish:0, _blocks.4._swish:1"),
    ],
)
def test_bad_config_fails_naming_the_key(clone: Path, override: dict, key: str) -> None:
    config = {"datasets": {"probe": {"source": "probe", "images": 4}},
              "models": {"m": {"spec": "probecnn", "layers": ["conv1"]}}}
    config.update(override)
    (clone / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(clone, "-n", "--configfile", "bad.yaml")
    assert result.returncode != 0
    message = next(line for line in (result.stdout + result.stderr).splitlines() if line.startswith("config key"))
    assert key in message


def test_cache_sizes_follow_the_architecture_the_pipeline_trains() -> None:
    from unitscope.config_check import check_config

    config = {"datasets": {"p": {"source": "probe", "size": 224}},
              "models": {"wide": {"spec": "probecnn", "layers": ["conv4"], "train": {"iterations": 1, "width": 4}},
                         "plain": {"spec": "probecnn", "layers": ["conv3", "conv4"]}}}
    values = check_config(config).layer_values
    assert values == {"wide": {"conv4": 1024 * 7 * 7}, "plain": {"conv3": 128 * 14 * 14, "conv4": 256 * 7 * 7}}


def test_cuda_without_cuda_stops_a_local_run_before_any_job(clone: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    config = {"device": "cuda", "datasets": {"probe": {"source": "probe", "images": 4}},
              "models": {"m": {"spec": "probecnn", "layers": ["conv1"]}}}
    (clone / "cuda.yaml").write_text(yaml.safe_dump(config))
    planned = snakemake(clone, "-n", "--configfile", "cuda.yaml")  # a dry run may plan for a cluster: it warns
    assert planned.returncode == 0 and "config key `device`: cuda, but CUDA is not available here" in planned.stderr
    result = snakemake(clone, "--configfile", "cuda.yaml")
    assert result.returncode != 0
    assert "config key `device`: cuda, but CUDA is not available here" in result.stderr
    assert not (clone / "data").exists() and not (clone / "logs").exists(), "no job ran"


# ------------------------------------------------------------------------------------------- provenance


def test_provenance_records_versions_checksums_and_seeds(tmp_path: Path, monkeypatch) -> None:
    from importlib import metadata

    monkeypatch.setenv("UNITSCOPE_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    files = {"index.csv": b"image,split\nx.jpg,train\n", "images/x.jpg": b"\xff\xd8jpeg", "images/x_object.png": b"png"}
    for name, content in files.items():
        (data / name).write_bytes(content)
    (data / ".hidden").write_bytes(b"not part of the dataset")
    result = tmp_path / "run" / "conv4"
    result.mkdir(parents=True)
    (result / "meta.json").write_text(json.dumps({"model_spec": "probecnn", "weights_sha256": "ab" * 32}))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "checkpoint-4.pt").write_bytes(b"weights")
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"# comment\ntorch=={metadata.version('torch')}\nnot-installed-package==1.0\n")
    config = {"device": "cpu", "datasets": {"p": {"seed": 3}}, "models": {"m": {"rotation": {"seeds": [1, 2]}}}}
    record = collect_provenance(config, {"p": data}, [result], [tmp_path / "models"], lock)
    assert record["unitscope_version"] == __version__
    assert record["versions"]["torch"] == metadata.version("torch")
    assert record["versions"]["snakemake"] == metadata.version("snakemake")
    sha = lambda content: hashlib.sha256(content).hexdigest()  # noqa: E731
    dataset = record["datasets"]["p"]
    assert dataset["index_sha256"] == sha(files["index.csv"])
    # `sha256sum` lines of every file but hidden ones, sorted by relative path.
    listing = "".join(f"{sha(files[name])}  {name}\n" for name in sorted(files))
    assert dataset["content_sha256"] == sha(listing.encode()) and dataset["files"] == 3
    assert record["weights"] == {"results": {str(result): {"model_spec": "probecnn", "weights_sha256": "ab" * 32}},
                                 "checkpoints": {str(tmp_path / "models" / "checkpoint-4.pt"): sha(b"weights")}}
    environment = record["environment"]
    assert environment["lock_sha256"] == sha(lock.read_bytes())
    assert environment["packages"]["torch"] == metadata.version("torch") and len(environment["packages"]) > 20
    assert "not-installed-package: 1.0 locked, not installed" in environment["differs_from_lock"]
    assert not any(line.startswith("torch:") for line in environment["differs_from_lock"])
    # Per-file digests are cached by size and mtime: an unchanged file's cached digest is used as it stands
    # (planted here), a changed file is hashed again.
    (cache,) = (tmp_path / "cache" / "checksums").glob("*.json")
    cached = json.loads(cache.read_text())
    cached["index.csv"][2] = "planted"
    cache.write_text(json.dumps(cached))
    (data / "images" / "x_object.png").write_bytes(b"png2")
    digests = {**{name: sha(content) for name, content in files.items()}, "index.csv": "planted",
               "images/x_object.png": sha(b"png2")}
    listing = "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
    assert collect_provenance(config, {"p": data})["datasets"]["p"]["content_sha256"] == sha(listing.encode())
    assert record["seeds"] == {"datasets.p.seed": 3, "models.m.rotation.seeds": [1, 2]}
    assert record["config"] == config and record["device"]["configured"] == "cpu"
    assert record["git"]["commit"] is None or len(record["git"]["commit"]) == 40
    assert find_seeds({"a": {"train": {"seed": 0}, "rotation_seed": 5}}) == {"a.train.seed": 0, "a.rotation_seed": 5}


def test_provenance_command_fails_cleanly_without_a_dataset(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("device: cpu\n")
    out = tmp_path / "provenance.json"
    assert provenance_main(["--config", str(config), "--dataset", f"p={tmp_path / 'missing'}", "--out", str(out)]) == 1
    assert "index.csv does not exist" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


# ------------------------------------------------------------------------------------------- end to end


def _check_summary_against_tally(layer_dir: Path) -> dict:
    """summary.json recomputed from tally.csv (docs/outputs.md: detector = best IoU > threshold)."""
    summary = json.loads((layer_dir / "summary.json").read_text())
    meta = json.loads((layer_dir / "meta.json").read_text())
    tally = pd.read_csv(layer_dir / "tally.csv", keep_default_na=False)
    threshold = meta["iou_threshold"]
    detectors = tally[tally["score"] > threshold]
    assert summary["units"] == meta["units"] == len(tally)
    assert summary["detectors"] == len(detectors)
    assert summary["unique_top_label"]["all"] == detectors["label"].nunique()
    for category in meta["categories"]:
        assert summary["top_label_detectors_per_category"][category] == int((detectors["category"] == category).sum())
        hits = tally[tally[f"{category}-iou"] > threshold]
        assert summary["detectors_per_category"][category] == len(hits)
        assert summary["unique_per_category"]["per_category"][category] == hits[f"{category}-label"].nunique()
    return summary


@pytest.mark.slow
def test_tiny_workflow_end_to_end(clone: Path) -> None:
    done = snakemake(clone, "--configfile", TINY)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = clone / "results/dissect"
    expected = {
        "probecnn/conv2": {"iteration": "4", "weights": "trained"},
        "probecnn/conv4": {"iteration": "4", "weights": "trained"},
        "probecnn-iter0/conv4": {"iteration": "0", "weights": "trained"},
        "probecnn-seed1/conv4": {"iteration": "4", "weights": "trained", "repeat": "1"},
        "probecnn-rot0.00-s1/conv4": {"iteration": "4"},
        "probecnn-rot0.50-s1/conv4": {"iteration": "4"},
        "probecnn-rot1.00-s1/conv4": {"iteration": "4"},
        "probecnn-rot1.00-s2/conv4": {"iteration": "4"},
        "probecnn-untrained/conv4": {"weights": "untrained"},
        "probecnn-untrained-tau0.02/conv4": {"weights": "untrained", "quantile": "0.02"},
        "tiny/3": {"weights": "untrained"},
        "probecnn-wide2/conv4": {"series": "probecnn-wide2", "weights": "trained"},
        "probecnn-wide2-seed1/conv4": {"series": "probecnn-wide2", "repeat": "1"},
        "probecnn-random/conv4": {"series": "probecnn-random", "weights": "trained"},
    }
    index_sha = hashlib.sha256((clone / "data/probe/index.csv").read_bytes()).hexdigest()
    summaries = {}
    for run, tags in expected.items():
        layer_dir = results / run
        assert sorted(p.name for p in layer_dir.iterdir() if not p.name.startswith(".")) == sorted(RESULT_FILES), run
        meta = json.loads((layer_dir / "meta.json").read_text())
        assert tags.items() <= meta["tags"].items(), (run, meta["tags"])
        assert meta["dataset"]["index_sha256"] == index_sha and meta["top_k"] == 3
        assert meta["unitscope_version"] == __version__
        assert meta["kind"] == "dissection" and meta["schema_version"] == 1
        assert str(clone) not in (layer_dir / "meta.json").read_text(), "no absolute path in a result"
        summaries[run] = _check_summary_against_tally(layer_dir)
    for seed in (1, 2):
        rotated = json.loads((results / f"probecnn-rot1.00-s{seed}/conv4/meta.json").read_text())
        assert rotated["rotation"] == {"alpha": 1.0, "seed": seed, "unpermute": True}
        assert rotated["model"] == "probecnn" and rotated["null"]["permutations"] == 4
    assert (results / "probecnn-rot1.00-s1/conv4/thresholds.csv").read_bytes() != \
        (results / "probecnn-rot1.00-s2/conv4/thresholds.csv").read_bytes()
    swept = json.loads((results / "probecnn-untrained-tau0.02/conv4/meta.json").read_text())
    assert swept["quantile"] == 0.02 and swept["quantile_level"] == pytest.approx(0.98)
    # Each checkpoint's record reaches its dissections: the training conditions comparison reads it.
    for run, (seed, width) in {"probecnn": (0, 1), "probecnn-seed1": (1, 1), "probecnn-wide2-seed1": (1, 2)}.items():
        meta = json.loads((results / f"{run}/conv4/meta.json").read_text())
        assert (meta["checkpoint"]["seed"], meta["checkpoint"]["architecture"]["width"]) == (seed, width), run
        assert meta["checkpoint"]["iteration"] == 4 and meta["units"] == 256 * width
    saved = {name: sorted(p.name for p in (clone / "results/models" / name).glob("checkpoint-*.pt"))
             for name in ("probecnn", "probecnn-seed1")}
    assert saved == {"probecnn": ["checkpoint-0.pt", "checkpoint-4.pt"], "probecnn-seed1": ["checkpoint-4.pt"]}
    # α = 0 is a permutation of the units (un-permuting): every count is unchanged.
    assert summaries["probecnn-rot0.00-s1/conv4"] == summaries["probecnn/conv4"]

    provenance = json.loads((results / "provenance.json").read_text())
    assert provenance["datasets"]["probe"]["index_sha256"] == index_sha
    assert provenance["config"]["shards"] == 1 and provenance["unitscope_version"] == __version__
    assert (clone / "reports/site/index.html").is_file()
    dimension = json.loads((clone / "results/dimension/probecnn/conv4/dimension.json").read_text())
    assert 1 <= dimension["participation_ratio"] <= dimension["units"]
    assert "Effective dimension" in (clone / "reports/site/probecnn/conv4/index.html").read_text()
    compare = (clone / "reports/site/compare.html").read_text()
    assert "width × · conv4" in compare and "held-out accuracy" in compare
    assert not any((clone / "results/activations").rglob("*.npy")), "activation caches are temporary"
    assert (clone / "logs/report.log").is_file() and (clone / "logs/train_probecnn/probecnn.log").is_file()
    random_labels = json.loads((results / "probecnn-random/conv4/meta.json").read_text())["checkpoint"]
    assert random_labels["labels"] == "permuted" and 0 <= random_labels["train_accuracy"] <= 1

    # Saliency maps and the sanity checks: model randomisation, data randomisation, the digits CNNs.
    maps = json.loads((clone / "results/saliency/probecnn/meta.json").read_text())
    sources = [image["source"] for image in maps["images"]]
    assert maps["kind"] == "saliency" and sources[0] == "builtin:chelsea" and len(sources) == 3
    assert all("/" not in source for source in sources) and maps["checkpoint"]["iteration"] == 4
    for model, tests in {"probecnn": {"cascading", "data"}, "digits-cnn": {"independent", "data"}}.items():
        similarity = pd.read_csv(clone / f"results/sanity/{model}/similarity.csv")
        assert set(similarity["test"]) == tests and set(similarity["method"]) == {
            "gradient", "guided-backprop", "grad-cam", "sobel", "noise"}, model
        page = (clone / f"reports/site/sanity/{model}.html").read_text()
        assert "Data randomisation" in page and "What these checks cannot tell" in page
    page = (clone / "reports/site/saliency/probecnn.html").read_text()
    lead = re.search(r'<p class="lead">(.*?)</p>', page, re.S).group(1)  # the settings of the methods that ran
    assert "Grad-CAM at <code>conv4</code>" in lead and "Guided Backprop" in lead
    assert "Integrated Gradients" not in lead and "SmoothGrad" not in lead
    assert (clone / "reports/site/saliency/digits-cnn/002-grad-cam.webp").is_file()

    # Unit visualisations of the best detectors by both methods, on the unit pages and the model's page.
    visualized = json.loads((clone / "results/visualize/probecnn/conv4/meta.json").read_text())
    tally = pd.read_csv(results / "probecnn/conv4/tally.csv", keep_default_na=False)
    null = pd.read_csv(results / "probecnn/conv4/null.csv", keep_default_na=False).set_index("label")["level"]
    significant = (tally["score"] > 0.04) & (tally["score"] > tally["label"].map(null).fillna(0.0))
    assert visualized["units"] == tally[significant]["unit"].tolist()[:2]  # the best significant detectors
    assert visualized["settings"]["steps"] == 2 and visualized["settings"]["methods"] == ["lucid", "pixel"]
    assert len(pd.read_csv(clone / "results/visualize/probecnn/conv4/units.csv")) == 2 * len(visualized["units"])
    if visualized["units"]:
        unit = visualized["units"][0]
        assert "Activation maximisation" in (clone / f"reports/site/probecnn/conv4/unit-{unit:04d}.html").read_text()
        assert (clone / f"reports/site/visualize/probecnn/conv4/unit-{unit:04d}-pixel-0.webp").is_file()
        views = pd.read_csv(clone / "results/visualize/probecnn/conv4/views.csv")
        assert set(views["rank"]) <= {1, 2} and (clone / f"reports/site/visualize/probecnn/conv4/unit-{unit:04d}"
                                                  "-top1-deconvnet.webp").is_file()
    assert (clone / "reports/site/visualize/probecnn.html").is_file()
    inverted = pd.read_csv(clone / "results/invert/probecnn/layers.csv")
    assert list(dict.fromkeys(inverted["layer"])) == ["conv2", "conv4"] and len(inverted) == 4  # depth order
    assert "Network inversion" in (clone / "reports/site/probecnn/conv2/index.html").read_text()
    assert (clone / "reports/site/invert/probecnn.html").is_file()

    # Compositional explanations of both dissected layers, on the unit, layer and model pages.
    formulas = pd.read_csv(clone / "results/compositional/probecnn/conv4/formulas.csv", keep_default_na=False)
    single = formulas[formulas["max_length"] == 1].set_index("unit").sort_index()
    best = tally.set_index("unit").sort_index()
    assert (single["formula"] == best["label"]).all() and (single["iou"] == best["score"]).all()
    assert set(formulas["max_length"]) == {1, 2}
    assert "Compositional explanation" in (clone / "reports/site/probecnn/conv4/unit-0001.html").read_text()
    assert "Compositional explanations" in (clone / "reports/site/probecnn/conv2/index.html").read_text()
    assert "conv2" in (clone / "reports/site/compositional/probecnn.html").read_text()

    # Unit ablation of conv4 on the held-out scenes, on the unit pages and the model's page.
    ablation = pd.read_csv(clone / "results/ablation/probecnn/conv4/units.csv")
    assert len(ablation) == 256 * len(json.loads((clone / "results/ablation/probecnn/conv4/meta.json").read_text())[
        "classes"])
    assert "Removing this unit" in (clone / "reports/site/probecnn/conv4/unit-0001.html").read_text()
    assert "beach-s" in (clone / "reports/site/ablation/probecnn.html").read_text()

    # Explained predictions: ProbeCNN's logits split exactly over conv4's units (its head is pool -> linear).
    explained = pd.read_csv(clone / "results/explain/probecnn/images.csv")
    assert len(explained) == 3 and (explained["residual"].abs() < 1e-4).all()
    assert json.loads((clone / "results/explain/probecnn/meta.json").read_text())["weighting"] == "cam"
    assert "Egyptian cat" not in (clone / "reports/site/explain/probecnn.html").read_text()  # ProbeCNN: scenes
    assert "chelsea" in (clone / "reports/site/explain/probecnn.html").read_text()

    # Net2Vec of conv4: every concept with training images, the best single unit beside the combination.
    probes = pd.read_csv(clone / "results/net2vec/probecnn/conv4/concepts.csv", keep_default_na=False)
    assert len(probes) > 10 and probes["unit"].between(1, 256).all()
    assert json.loads((clone / "results/net2vec/probecnn/conv4/meta.json").read_text())["settings"]["epochs"] == 2
    assert "Net2Vec" in (clone / "reports/site/net2vec/probecnn.html").read_text()

    # A result left over from a model since removed from the config never reaches the site.
    leftover = results / "removed-model" / "conv4"
    shutil.copytree(results / "probecnn-untrained/conv4", leftover)
    meta = json.loads((leftover / "meta.json").read_text())
    (leftover / "meta.json").write_text(json.dumps({**meta, "model": "removed-model"}))
    done = snakemake(clone, "--configfile", TINY, "--forcerun", "report")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    site_text = "".join(p.read_text(errors="replace") for p in (clone / "reports/site").rglob("*") if p.is_file()
                        and p.suffix in (".html", ".js"))
    assert "probecnn-untrained" in site_text and "removed-model" not in site_text
    shutil.rmtree(results / "removed-model")

    # The same results through the two-stage sharded flow (two image shards) are identical.
    shutil.move(results, clone / "unsharded")
    targets = ["results/dissect/probecnn/conv4", "results/dissect/probecnn-rot1.00-s2/conv4"]
    done = snakemake(clone, *targets, "--configfile", TINY, "--config", "shards=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "rule train_probecnn" not in done.stdout + done.stderr, "the trained model is reused"
    for target in targets:
        sharded, unsharded = clone / target, clone / "unsharded" / target.removeprefix("results/dissect/")
        for name in ("tally.csv", "thresholds.csv", "ious.csv", "top_images.csv", "summary.json", "null.csv"):
            assert (sharded / name).read_text() == (unsharded / name).read_text(), (target, name)
        np.testing.assert_array_equal(np.load(sharded / "top_maps.npy"), np.load(unsharded / "top_maps.npy"))
    assert not (clone / "results/shards").exists() or not any((clone / "results/shards").rglob("*.npz"))

    # Recomputing the forward pass in each dissection (no activation cache) gives the same results too.
    shutil.rmtree(clone / "results/dissect")
    targets = ["results/dissect/probecnn-rot1.00-s2/conv4", "results/dissect/tiny/3"]
    done = snakemake(clone, *targets, "-p", "--configfile", TINY, "--config", "cache=recompute")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "rule extract" not in log and "--cache recompute" in log
    for target in targets:
        for name in RESULT_FILES:
            recomputed, cached = clone / target, clone / "unsharded" / target.removeprefix("results/dissect/")
            assert (recomputed / name).read_bytes() == (cached / name).read_bytes(), (target, name)


# ------------------------------------------------------------------------------------------- resuming


def make_report(workdir: Path, **popen) -> subprocess.Popen:
    """`make report` on the tiny config with this interpreter's environment (its set-up taken as done)."""
    venv = Path(sys.executable).parent.parent
    return subprocess.Popen(
        ["make", "--no-print-directory", "-o", f"{venv}/.installed", "report", f"VENV={venv}", "CORES=2",
         f"SNAKEMAKE_ARGS=--configfile {TINY}"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen,
    )


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """An uninterrupted `make report` of the tiny config: what the resumed and the cluster runs must equal."""
    reference = copy_workflow(tmp_path_factory.mktemp("reference"))
    done = make_report(reference)
    out, _ = done.communicate(timeout=600)
    assert done.returncode == 0, out[-3000:]
    return reference


@pytest.mark.slow
def test_killed_make_report_resumes_to_identical_results(clone: Path, local_run: Path) -> None:
    """Power loss mid-run (SIGKILL to every process of `make report`), then `make report` again: it finishes
    without --unlock or --rerun-incomplete, and every result file equals an uninterrupted run's."""
    import signal
    import time

    reference = local_run
    run = make_report(clone, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (clone / "results/activations").exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before it could be interrupted"
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate()
    assert not (clone / "reports/site").exists()
    assert any((clone / ".snakemake/locks").iterdir()), "a killed Snakemake leaves its lock behind"

    resumed = make_report(clone)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    results = sorted(p.relative_to(reference) for p in (reference / "results/dissect").rglob("*")
                     if p.is_file() and p.name in RESULT_FILES)
    assert len(results) == 14 * len(RESULT_FILES)  # the tiny config's 14 (run, layer) results
    for path in results:
        assert (clone / path).read_bytes() == (reference / path).read_bytes(), path
    assert (clone / "reports/site/index.html").is_file()


# ------------------------------------------------------------------------------------------- a SLURM cluster


def result_files(root: Path) -> list[Path]:
    """Every file a run leaves under results/, relative to ``root``."""
    return sorted(path.relative_to(root) for path in (root / "results").rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def slurm_available() -> None:
    """Skips (fails under CI=true) where a test cluster cannot start; before `local_run`, so a skip costs nothing."""
    from slurm_cluster import unavailable

    reason = unavailable()
    if reason is None and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        reason = "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    if reason:
        cannot_run_cluster(reason)


def cannot_run_cluster(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI runs the cluster test)")
    pytest.skip(reason)


def slurm_megabytes(value: str) -> int:
    """`scontrol`'s memory (16000M, 16G, ...) in MB."""
    number, unit = re.fullmatch(r"(\d+)([MGT])", value).groups()
    return int(number) * {"M": 1, "G": 1024, "T": 1024**2}[unit]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the cluster run took about 3 min on 2 cores here, the shared local run 2.3 min
def test_slurm_profile_on_a_real_cluster_equals_the_local_run(slurm_available: None, local_run: Path,
                                                              tmp_path: Path) -> None:
    """The tiny config through the shipped SLURM profile and the real executor plugin on a single-node cluster
    started here (tests/slurm_cluster.py), as docs/workflow.md's walkthrough runs it, with the node failing
    under the first jobs: every job goes through sbatch with its rule's resources, the failed jobs are submitted
    again, and every result file equals the local run's byte for byte (provenance.json: all but its date)."""
    from contextlib import ExitStack

    from slurm_cluster import ClusterError, slurm_cluster

    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    wanted = {rule: {**profile["default-resources"], **resources} for rule, resources in profile["set-resources"].items()}
    largest = max(resources["mem_mb"] for resources in [profile["default-resources"], *wanted.values()])
    clone = copy_workflow(tmp_path / "clone")
    log_path = tmp_path / "snakemake.log"
    with ExitStack() as stack:
        try:
            cluster = stack.enter_context(slurm_cluster(tmp_path / "cluster", memory_mb=largest))
        except ClusterError as error:
            cannot_run_cluster(str(error))
        log_file = stack.enter_context(open(log_path, "w"))
        # No accounting database here: job states come from squeue (MinJobAge keeps finished jobs a day).
        run = subprocess.Popen(  # the walkthrough's command: no --cores, the profile says how many jobs
            [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm", "--configfile", TINY,
             "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
             "--slurm-keep-successful-logs"], cwd=clone, stdout=log_file, stderr=subprocess.STDOUT, text=True)
        try:
            failed = cluster.fail_node(alive=lambda: run.poll() is None)
            run.wait(timeout=1200)
        except ClusterError as error:
            raise AssertionError(f"{error}\n{log_path.read_text()[-3000:]}") from None
        finally:
            if run.poll() is None:
                run.kill()
        jobs = [dict(item.split("=", 1) for item in line.split(" ") if "=" in item) for line in subprocess.run(
            ["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, check=True).stdout.splitlines()]
    log = log_path.read_text()
    assert run.returncode == 0, log[-5000:]

    # Every job but the local `all` went through sbatch, with its rule's resources from the profile, the config's
    # thread count as its CPUs, no GPU (device: cpu), and its SLURM log kept; the jobs on the failed node ended
    # NODE_FAIL (the profile asks SLURM not to requeue them) and Snakemake submitted them again (retries: 1).
    planned = planned_jobs(subprocess.CompletedProcess([], 0, log, ""))
    threads = yaml.safe_load((REPO / TINY).read_text())["threads"]
    ran: dict[str, int] = {}
    failed_rules: list[str] = []
    for job in jobs:
        rule = re.fullmatch(r"rule_(\w+?)(?:_wildcards_.*)?", job["Comment"]).group(1)
        ran[rule] = ran.get(rule, 0) + 1
        resources = wanted.get(rule, profile["default-resources"])
        assert job["JobState"] == ("NODE_FAIL" if job["JobId"] in failed else "COMPLETED"), job
        assert job["NumCPUs"] == str(threads) and job["Requeue"] == "0", job
        assert slurm_megabytes(job["MinMemoryNode"]) == resources["mem_mb"], (rule, job["MinMemoryNode"])
        hours, minutes = divmod(resources["runtime"], 60)
        assert job["TimeLimit"] == f"{hours:02d}:{minutes:02d}:00", (rule, job["TimeLimit"])
        assert "gpu" not in job.get("TresPerNode", "") + job.get("TresPerJob", ""), job
        assert Path(job["StdOut"]).is_file(), job["StdOut"]
        if job["JobId"] in failed:
            failed_rules.append(rule)
    assert ran == {rule: count + failed_rules.count(rule) for rule, count in planned.items() if rule != "all"}
    assert "Trying to restart job" in log

    assert result_files(clone) == result_files(local_run)
    for path in result_files(local_run):
        ours, theirs = (clone / path).read_bytes(), (local_run / path).read_bytes()
        if path.name == "provenance.json":
            ours, theirs = (json.loads(text) for text in (ours, theirs))
            assert ours.pop("date") and theirs.pop("date")
        assert ours == theirs, path
