"""Training ProbeCNN on a probe set's scenes: determinism, checkpoints, learning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from unitscope.broden.writer import BrodenWriter
from unitscope.cli import main
from unitscope.models import load_model
from unitscope.models.probecnn import ProbeCNN
from unitscope.train import geometric_checkpoints, train_probecnn

SIZE = 64
SCENES = ["reddish-s", "bluish-s"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_scene_set(root: Path, images: int = 48, classes: list[str] = SCENES) -> tuple[Path, int]:
    """Noisy reddish or bluish images labelled with a scene, plus a few texture-only images (no scene).

    Returns the dataset path and the number of images that have a scene label.
    """
    rng = np.random.default_rng(0)
    labels = {1: "reddish-s", 2: "bluish-s", 3: "dotted"}
    scene_images = 0
    with BrodenWriter(root, labels, image_size=SIZE, label_size=SIZE // 2) as writer:
        for i in range(images):
            image = rng.integers(0, 120, (SIZE, SIZE, 3), dtype=np.uint8)
            if i % 8 == 7:
                writer.add_image("tex", f"t{i}", image, image_labels={"texture": [3]})
                continue
            scene = i % 2
            image[..., 0 if scene == 0 else 2] += 120
            writer.add_image("scenes", f"s{i}", image, image_labels={"scene": [scene + 1]})
            scene_images += 1
    (root / "probe.json").write_text(json.dumps({"scene_classes": classes}))
    return root, scene_images


@pytest.fixture(scope="module")
def scene_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    return make_scene_set(tmp_path_factory.mktemp("data") / "probe")


def test_geometric_checkpoints() -> None:
    assert geometric_checkpoints(10) == [0, 1, 2, 4, 8, 10]
    assert geometric_checkpoints(8) == [0, 1, 2, 4, 8]
    assert geometric_checkpoints(0) == [0]


def test_training_is_deterministic_learns_and_writes_checkpoints(scene_set: tuple[Path, int], tmp_path: Path) -> None:
    dataset, scene_images = scene_set
    options = {"iterations": 24, "seed": 3, "checkpoints": [0, 4, 24], "batch_size": 8}
    log_a = train_probecnn(dataset, tmp_path / "a", **options)
    log_b = train_probecnn(dataset, tmp_path / "b", **options)

    state_a = torch.load(tmp_path / "a" / "final.pt", weights_only=True)["state_dict"]
    state_b = torch.load(tmp_path / "b" / "final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert log_a == log_b
    for name in ("checkpoint-4.pt", "final.pt"):  # the same bytes, whatever temporary name each was written under
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert json.loads((tmp_path / "a" / "training.json").read_text()) == log_a

    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "checkpoint-0.pt",
        "checkpoint-24.pt",
        "checkpoint-4.pt",
        "final.pt",
        "training.json",
    ]
    assert log_a["train_images"] + log_a["val_images"] == scene_images  # texture-only images skipped
    assert [c["iteration"] for c in log_a["checkpoints"]] == [0, 4, 24]
    losses = log_a["train_loss"]
    assert len(losses) == 24 and np.mean(losses[-6:]) < 0.5 * np.mean(losses[:3])
    assert log_a["final_val_accuracy"] >= 0.9  # two colour-coded scenes: trivially separable

    # checkpoint 0 is the seeded initialisation; checkpoints load through the file: spec
    first = torch.load(tmp_path / "a" / "checkpoint-0.pt", weights_only=True)
    assert (first["iteration"], first["seed"], first["classes"]) == (0, 3, SCENES)
    torch.manual_seed(3)
    init = ProbeCNN(num_classes=2).state_dict()
    assert all(torch.equal(first["state_dict"][k], init[k]) for k in init)
    loaded = load_model(f"file:{tmp_path / 'a' / 'checkpoint-24.pt'}", arch="probecnn").module
    assert all(torch.equal(loaded.state_dict()[k], state_a[k]) for k in state_a)


def test_training_errors(tmp_path: Path, scene_set: tuple[Path, int]) -> None:
    dataset, _ = scene_set
    with pytest.raises(ValueError, match=r"checkpoints must lie in 0\.\.4"):
        train_probecnn(dataset, tmp_path / "x", iterations=4, checkpoints=[8])
    bad, _ = make_scene_set(tmp_path / "bad", images=8, classes=["reddish-s"])
    with pytest.raises(ValueError, match="scene label 'bluish-s' is not one of the classes"):
        train_probecnn(bad, tmp_path / "y", iterations=1)
    (bad / "probe.json").write_text("{}")
    with pytest.raises(ValueError, match="lists no scene_classes"):
        train_probecnn(bad, tmp_path / "y", iterations=1)
    (bad / "probe.json").unlink()
    result = CliRunner().invoke(main, ["train-probecnn", "--dataset", str(bad), "--out", str(tmp_path / "z")])
    assert result.exit_code == 1 and "probe.json not found" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


@pytest.mark.parametrize(
    ("options", "batchnorm", "dropout", "conv4_width"),
    [([], True, 0.0, 256), (["--no-batchnorm"], False, 0.0, 256), (["--dropout", "0.5"], True, 0.5, 256),
     (["--width", "2"], True, 0.0, 512)],
)
def test_architecture_conditions_train_save_and_load_back(
    scene_set: tuple[Path, int], tmp_path: Path, options: list[str], batchnorm: bool, dropout: float, conv4_width: int
) -> None:
    """The TPAMI conditions: each trains through the CLI, its checkpoint records the architecture and the held-out
    accuracy, and the file: spec rebuilds that architecture from the weights alone."""
    dataset, _ = scene_set
    args = ["train-probecnn", "--dataset", str(dataset), "--out", str(tmp_path / "m"), "--iterations", "6",
            "--batch-size", "8", "--checkpoints", "6", *options]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    log = json.loads((tmp_path / "m" / "training.json").read_text())
    assert log["architecture"] == {"batchnorm": batchnorm, "dropout": dropout, "width": conv4_width // 256}

    loaded = load_model(f"file:{tmp_path / 'm' / 'checkpoint-6.pt'}", arch="probecnn")
    net = loaded.module
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == (4 if batchnorm else 0)
    assert (net.conv1[0].bias is None) == batchnorm
    assert net.conv4[0].out_channels == conv4_width and net.fc.in_features == conv4_width
    assert loaded.checkpoint == {"iteration": 6, "seed": 0, "val_accuracy": log["final_val_accuracy"], "iterations": 6,
                                 "batch_size": 8, "architecture": log["architecture"], "classes": log["classes"],
                                 "labels": "true", "train_accuracy": log["final_train_accuracy"]}
    assert loaded.classes == log["classes"] and len(loaded.classes) == net.fc.out_features


def test_dropout_acts_in_training_only() -> None:
    from unitscope.models.probecnn import Architecture

    torch.manual_seed(0)
    net = ProbeCNN(num_classes=3, architecture=Architecture(dropout=0.5))
    x = torch.randn(2, 3, 64, 64)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))
    plain = ProbeCNN(num_classes=3)
    plain.load_state_dict(net.state_dict())
    assert torch.equal(plain.eval()(x), net(x))


def test_permuted_labels_train_on_a_seeded_permutation(scene_set: tuple[Path, int], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`labels="permuted"` trains on one permutation of the training labels, drawn from the seed; the final
    checkpoint records it with the accuracy on those labels."""
    import unitscope.train as train

    dataset, _ = scene_set
    seen: list[torch.Tensor] = []
    original = train.F.cross_entropy
    monkeypatch.setattr(train.F, "cross_entropy", lambda logits, targets: seen.append(targets) or original(logits, targets))
    true_log = train_probecnn(dataset, tmp_path / "true", iterations=1, batch_size=1000)
    permuted_log = train_probecnn(dataset, tmp_path / "permuted", iterations=1, batch_size=1000, labels="permuted")
    true_targets, permuted_targets = seen
    assert sorted(true_targets.tolist()) == sorted(permuted_targets.tolist())  # the same labels, reordered
    assert not torch.equal(true_targets, permuted_targets)
    assert (true_log["labels"], permuted_log["labels"]) == ("true", "permuted")
    record = torch.load(tmp_path / "permuted" / "final.pt", weights_only=True)
    assert record["labels"] == "permuted" and record["train_accuracy"] == permuted_log["final_train_accuracy"]
    with pytest.raises(ValueError, match="labels must be one of true, permuted"):
        train_probecnn(dataset, tmp_path / "x", iterations=1, labels="shuffled")
