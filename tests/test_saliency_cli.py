"""``unitscope saliency``, ``sanity-check`` and ``train-digits`` as a user runs them, and the papers' outcomes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from unitscope.cli import main
from unitscope.saliency.run import SIMILARITY_COLUMNS, summarize
from unitscope.settings import SALIENCY_METHODS

FAST = ["--smoothgrad-samples", "2", "--ig-steps", "4"]
IMAGES = ["--image", "builtin:chelsea", "--image", "builtin:coffee"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_saliency_writes_every_method_with_the_paper_settings(tmp_path) -> None:
    result = invoke("saliency", "--model", "probecnn", *IMAGES, "--size", "64", *FAST, "--out", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "s"
    maps = np.load(out / "maps.npz")
    assert sorted(maps.files) == sorted(SALIENCY_METHODS)
    assert maps["gradient"].shape == (2, 3, 64, 64) and maps["grad-cam"].shape == (2, 1, 64, 64)
    assert np.load(out / "images.npz")["pixels"].shape == (2, 64, 64, 3)
    predictions = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert predictions["image"].tolist() == ["chelsea", "coffee"]
    assert (predictions["target"] == predictions["predicted"]).all()  # the model's own class by default
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "saliency" and meta["layer"] == "conv4"  # ProbeCNN's declared feature layer
    assert meta["settings"]["grad_cam"] == {"layer": "conv4", "relu": True, "upsample": "bilinear"}
    assert meta["settings"]["smoothgrad"]["samples"] == 2 and meta["settings"]["integrated_gradients"]["steps"] == 4
    assert meta["images"][0]["source"] == "builtin:chelsea" and len(meta["images"][0]["sha256"]) == 64


def test_saliency_explains_a_chosen_class(tmp_path) -> None:
    result = invoke("saliency", "--model", "probecnn", "--image", "builtin:rocket", "--size", "64", "--target", "3",
                    "--method", "gradient", "--out", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "s" / "predictions.csv")["target"].tolist() == [3]
    assert np.load(tmp_path / "s" / "maps.npz").files == ["gradient"]
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["layer"] is None and meta["settings"]["grad_cam"]["layer"] is None  # no Grad-CAM ran


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "99"], "--target 99 is out of range: the model has 10 classes (0 to 9)"),
    (["--target", "cat"], "--target 'cat': the model's classes have no names; give a class index"),
    (["--layer", "fc", "--method", "grad-cam"], "layer 'fc' gives outputs of shape (1, 10)"),
    (["--layer", "conv9", "--method", "grad-cam"], "has no layer 'conv9'"),
    (["--image", "builtin:lena"], "unknown image 'builtin:lena'; built-in photographs: builtin:astronaut"),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, args, message) -> None:
    out = tmp_path / "s"
    base = [] if "--image" in args else ["--image", "builtin:chelsea"]
    result = CliRunner().invoke(main, ["saliency", "--model", "probecnn", *base, "--size", "64", *args,
                                       "--out", str(out)])
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.output.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_an_image_that_cannot_be_decoded_is_named(tmp_path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    result = CliRunner().invoke(main, ["saliency", "--model", "probecnn", "--image", str(broken),
                                       "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and f"{broken}: cannot decode the image" in result.output


def test_guided_methods_refuse_a_model_with_functional_relus(tmp_path) -> None:
    result = CliRunner().invoke(main, ["saliency", "--model", "python:test_saliency_methods:FunctionalConv", "--image",
                                       "builtin:chelsea", "--method", "guided-backprop", "--out", str(tmp_path / "s")])
    assert result.exit_code == 1, result.output
    assert "rectifies with functions (relu" in result.output and not (tmp_path / "s").exists()


def test_a_random_label_model_of_another_architecture_or_a_file_as_out_is_refused(tmp_path) -> None:
    out = tmp_path / "sc"
    result = CliRunner().invoke(main, ["sanity-check", "--model", "probecnn", "--image", "builtin:chelsea", "--size",
                                       "64", "--random-labels", "python:test_saliency_methods:FunctionalConv",
                                       "--test", "data", "--out", str(out)])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "--random-labels is not the same architecture as --model: conv.bias is in only one of them" in result.output
    result = CliRunner().invoke(main, ["sanity-check", "--model", "probecnn", "--image", "builtin:chelsea",
                                       "--random-labels", "file:nope.pt", "--test", "data", "--out", str(out)])
    assert result.exit_code == 1 and "--random-labels file:nope.pt: " in result.output, result.output
    assert not out.exists()
    out.write_text("a file the user keeps")
    result = CliRunner().invoke(main, ["saliency", "--model", "probecnn", "--image", "builtin:chelsea", "--out",
                                       str(out)])
    assert result.exit_code == 2 and "'--out'" in result.output and "is a file" in result.output, result.output
    assert out.read_text() == "a file the user keeps" and sorted(p.name for p in tmp_path.iterdir()) == ["sc"]


def test_sanity_check_writes_the_similarity_table_for_both_tests(tmp_path) -> None:
    out = tmp_path / "sc"
    methods = ["gradient", "guided-backprop", "grad-cam"]
    args = [a for m in methods for a in ("--method", m)]
    result = invoke("sanity-check", "--model", "probecnn", *IMAGES, "--size", "64", *args, "--out", str(out))
    assert result.exit_code == 0, result.output
    similarity = pd.read_csv(out / "similarity.csv")
    assert similarity.columns.tolist() == SIMILARITY_COLUMNS
    blocks = ["fc", "conv4", "conv3", "conv2", "conv1"]
    stages = pd.read_csv(out / "stages.csv")
    assert stages["stage"].tolist() == blocks * 2 and stages["test"].tolist() == ["cascading"] * 5 + ["independent"] * 5
    # every (test, stage) × (3 methods + 2 controls) × 2 images × 4 metrics
    assert len(similarity) == 10 * 5 * 2 * 4
    assert set(similarity["method"]) == {*methods, "sobel", "noise"}
    sobel = similarity[similarity["method"] == "sobel"]
    assert np.allclose(sobel["value"], 1.0)  # the control rows are there: a model-independent map cannot change
    noise = similarity[(similarity["method"] == "noise") & (similarity["metric"] == "spearman-abs")]
    assert noise["value"].abs().max() < 0.3  # unrelated maps: rank correlations near 0 (64 × 64 pixels)
    figure = np.load(out / "figure.npz")["maps"]
    assert figure.shape == (6, 3, 2, 64, 64)  # original + 5 cascading stages, methods, figure images
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "sanity-check" and meta["figure"]["stages"] == ["original", *blocks]
    assert [b["name"] for b in meta["blocks"]] == blocks and meta["sanity"]["explain"] == "own"
    assert meta["layer"] == meta["settings"]["grad_cam"]["layer"] == "conv4"
    assert "median Spearman rank correlation" in result.output


def test_sanity_check_options_reach_the_run(tmp_path) -> None:
    out = tmp_path / "sc"
    result = invoke("sanity-check", "--model", "probecnn", "--image", "builtin:chelsea", "--size", "64", "--method",
                    "gradient", "--test", "independent", "--order", "bottom-up", "--explain", "original",
                    "--reset-statistics", "--figure-images", "0", "--out", str(out))
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sanity"] | {"tests": list(meta["sanity"]["tests"])} == {
        "tests": ["independent"], "order": "bottom-up", "explain": "original", "reset_statistics": True, "seed": 0,
        "figure_images": 0}
    assert meta["layer"] is None  # gradient only: no Grad-CAM layer
    assert pd.read_csv(out / "stages.csv")["stage"].tolist() == ["conv1", "conv2", "conv3", "conv4", "fc"]
    assert np.load(out / "figure.npz")["maps"].shape == (1, 1, 0, 64, 64)  # no cascading test, no figure image
    result = CliRunner().invoke(main, ["sanity-check", "--model", "probecnn", "--image", "builtin:chelsea", "--size",
                                       "16", "--out", str(tmp_path / "small")])
    assert result.exit_code == 1 and "need images of 24 pixels a side at least" in result.output


def test_black_baseline_is_pixel_zero_after_normalisation() -> None:
    from unitscope.models import load_model
    from unitscope.saliency.images import load_images
    from unitscope.saliency.run import Subject

    _, baseline = Subject(load_model("probecnn")).inputs(load_images(["builtin:chelsea"], 32))
    expected = -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])  # ImageNet's
    torch.testing.assert_close(baseline[0, :, 0, 0], expected)
    assert baseline.shape == (1, 3, 32, 32) and bool((baseline == baseline[:, :, :1, :1]).all())


def test_sanity_check_data_test_needs_the_random_label_model(tmp_path) -> None:
    result = CliRunner().invoke(main, ["sanity-check", "--model", "probecnn", "--image", "builtin:chelsea",
                                       "--test", "data", "--out", str(tmp_path / "sc")])
    assert result.exit_code == 1 and "needs the model trained on permuted labels" in result.output


def test_randomising_the_logits_changes_the_gradient_but_hardly_guided_backprop() -> None:
    """Adebayo et al.'s central finding, on EfficientNet-Lite0 with its ImageNet weights and a real photograph."""
    from unitscope.models import load_model
    from unitscope.saliency.images import load_images
    from unitscope.saliency.methods import Explainer
    from unitscope.saliency.randomization import randomization_blocks, stages
    from unitscope.saliency.run import Subject, _post, explain_all
    from unitscope.saliency.similarity import similarities
    from unitscope.settings import SaliencySettings

    subject = Subject(load_model("efficientnet-lite0@imagenet"))
    inputs, baseline = subject.inputs(load_images(["builtin:chelsea"], 224))
    settings = SaliencySettings(methods=("gradient", "guided-backprop"))
    explainer = Explainer(subject.model.module, baseline, settings=settings)
    original = _post(explain_all(explainer, inputs, explainer.predict(inputs)), 99)
    blocks = randomization_blocks(subject.model.module, subject.model.anatomy, inputs)
    stage = next(stages(subject.model.module, blocks, "cascading", seed=0))
    assert stage.block == "_fc"
    randomised = Explainer(stage.model, baseline, settings=settings)
    maps = _post(explain_all(randomised, inputs, randomised.predict(inputs)), 99)
    rho = {}
    for method in maps:
        (gray0, signed0), (gray, signed) = original[method][0], maps[method][0]
        rho[method] = similarities(gray0, gray, signed0, signed)["spearman-abs"]
    assert rho["guided-backprop"] > 0.95 and rho["gradient"] < 0.7, rho


@pytest.mark.slow
def test_digits_data_randomisation_reproduces_the_papers_ordering(tmp_path) -> None:
    """Both digits CNNs fit their training labels; against the random-label model, the input-dominated maps
    (Gradient × Input, IG) stay similar and the Gradient and Grad-CAM maps do not (Adebayo et al., MNIST)."""
    for labels in ("true", "permuted"):
        result = invoke("train-digits", "--labels", labels, "--out", str(tmp_path / labels))
        assert result.exit_code == 0, result.output
    true, permuted = (json.loads((tmp_path / n / "training.json").read_text()) for n in ("true", "permuted"))
    assert true["train_accuracy"] == 1.0 and true["test_accuracy"] > 0.95
    assert permuted["train_accuracy"] > 0.99 and permuted["test_accuracy"] < 0.2  # fits noise, predicts nothing
    assert len(list((tmp_path / "true" / "test-images").glob("*.png"))) == 20
    methods = ["gradient", "gradient-input", "integrated-gradients", "guided-backprop", "grad-cam"]
    result = invoke("sanity-check", "--model", f"file:{tmp_path / 'true' / 'final.pt'}", "--arch", "digits-cnn",
                    "--random-labels", f"file:{tmp_path / 'permuted' / 'final.pt'}", "--test", "data",
                    "--image", str(tmp_path / "true" / "test-images"), "--size", "28",
                    *[a for m in methods for a in ("--method", m)], "--out", str(tmp_path / "sc"))
    assert result.exit_code == 0, result.output
    summary = summarize(pd.read_csv(tmp_path / "sc" / "similarity.csv"))
    rho = summary[summary["metric"] == "spearman-abs"].set_index("method")["median"]
    assert summary["stage"].unique().tolist() == ["random-labels"] and (summary["images"] == 20).all()
    assert min(rho["gradient-input"], rho["integrated-gradients"]) > max(rho["gradient"], rho["grad-cam"]) + 0.3, rho


def test_train_digits_records_its_accuracies(tmp_path) -> None:
    result = invoke("train-digits", "--labels", "permuted", "--epochs", "1", "--test-images", "3",
                    "--out", str(tmp_path / "d"))
    assert result.exit_code == 0, result.output
    record = torch.load(tmp_path / "d" / "final.pt", weights_only=True)
    assert record["labels"] == "permuted" and record["epochs"] == 1 and record["classes"] == list("0123456789")
    assert sorted(p.name for p in (tmp_path / "d" / "test-images").iterdir()) == ["0000-0.png", "0005-5.png",
                                                                                  "0010-0.png"]
