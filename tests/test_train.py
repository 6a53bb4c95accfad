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
    with pytest.raises(ValueError, match="scene label 'bluish-s' is not among the scene_classes"):
        train_probecnn(bad, tmp_path / "y", iterations=1)
    (bad / "probe.json").write_text("{}")
    with pytest.raises(ValueError, match="lists no scene_classes"):
        train_probecnn(bad, tmp_path / "y", iterations=1)
    (bad / "probe.json").unlink()
    result = CliRunner().invoke(main, ["train-probecnn", "--dataset", str(bad), "--out", str(tmp_path / "z")])
    assert result.exit_code == 1 and "probe.json not found" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()
