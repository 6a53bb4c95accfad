"""Activation extraction with forward hooks, and the sharded activation cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from unitscope.activations import ActivationCacheWriter, cache_shards, extract_batches, read_cache_batches
from unitscope.broden.reader import BrodenDataset
from unitscope.broden.writer import BrodenWriter
from unitscope.cli import main
from unitscope.models import LayerError, load_model

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(nn.Module):
    """conv → bn → in-place ReLU → pool → fc: the in-place ReLU overwrites ``bn``'s output tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        return self.fc(self.pool(x).flatten(1))


def make_model() -> Tiny:
    torch.manual_seed(0)
    model = Tiny().eval()
    model.bn.running_mean.uniform_(-0.5, 0.5)  # make bn outputs clearly signed
    return model


def make_batches(n: int = 7, batch_size: int = 3, size: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    return [(torch.arange(s, min(s + batch_size, n)), images[s : s + batch_size]) for s in range(0, n, batch_size)]


def reference_outputs(model: nn.Module, layers: list[str], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """A plain forward with one hand-written hook per layer, on hand-normalised (ImageNet) input."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o.clone()))
        for name in layers
    ]
    with torch.no_grad():
        model((images.float() / 255 - mean) / std)
    for handle in handles:
        handle.remove()
    return outputs


def test_extract_batches_matches_plain_forward_with_one_pass_per_batch() -> None:
    model = make_model()
    forwards = []
    model.register_forward_pre_hook(lambda m, i: forwards.append(1))
    layers = ["bn", "conv", "fc"]
    batches = make_batches()
    results = list(extract_batches(model, layers, batches, "imagenet", CPU))
    assert len(forwards) == len(batches) == len(results)
    for (indices, images), (got_indices, got) in zip(batches, results, strict=True):
        assert torch.equal(got_indices, indices)
        assert list(got) == layers
        expected = reference_outputs(make_model(), layers, images)
        assert (expected["bn"] < 0).any()  # the in-place ReLU would have zeroed these in an uncopied tensor
        for name in ("bn", "conv"):
            assert got[name].dtype == torch.float32
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6)
        assert got["fc"].shape == (len(indices), 3, 1, 1)  # (B, C) -> 1x1 maps
        torch.testing.assert_close(got["fc"][:, :, 0, 0], expected["fc"], rtol=0, atol=1e-6)


def test_forward_stops_after_the_last_needed_layer() -> None:
    model = make_model()
    fc_calls = []
    model.fc.register_forward_hook(lambda m, i, o: fc_calls.append(1))
    batches = make_batches()
    results = list(extract_batches(model, ["conv"], batches, "imagenet", CPU))
    assert len(results) == 3
    assert len(fc_calls) == 1  # the first batch runs the whole model, later ones stop after conv
    for (_, images), (_, got) in zip(batches, results, strict=True):
        torch.testing.assert_close(
            got["conv"], reference_outputs(make_model(), ["conv"], images)["conv"], rtol=0, atol=1e-6
        )


def test_module_called_twice_is_addressed_per_call() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Identity()
            self.after = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.after(self.scale(self.scale(x) * 2))

    model = Twice().eval()
    batches = make_batches()
    extracted = extract_batches(model, ["scale:0", "scale:1"], batches, "none", CPU)
    for (_, images), (_, got) in zip(batches, extracted, strict=True):
        torch.testing.assert_close(got["scale:0"], images.float() / 255)
        torch.testing.assert_close(got["scale:1"], images.float() / 255 * 2)
    with pytest.raises(LayerError, match=r"layer 'scale' is called more than once .* scale:0, scale:1"):
        list(extract_batches(model, ["scale"], batches, "none", CPU))


def test_extract_errors() -> None:
    class TupleOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm_like = nn.Identity()

        def forward(self, x):
            return self.lstm_like((x, x))

    with pytest.raises(LayerError, match="layer 'lstm_like' returns tuple, not a tensor"):
        list(extract_batches(TupleOut(), ["lstm_like"], make_batches(), "none", CPU))
    with pytest.raises(LayerError, match="no layer 'conv2'"):
        list(extract_batches(make_model(), ["conv2"], make_batches(), "none", CPU))


# --- activation cache -------------------------------------------------------------------------------


def write_cache(out: Path, batches, start: int, stop: int) -> None:
    model = make_model()
    with ActivationCacheWriter(
        out,
        image_start=start,
        image_stop=stop,
        model="tiny",
        model_spec="python:tests:tiny",
        dataset={"path": "/data", "images": 7},
        extra={"normalize": "imagenet"},
    ) as writer:
        for indices, activations in extract_batches(model, ["bn", "fc"], batches, "imagenet", CPU):
            writer.write(indices, activations)


def test_cache_round_trip_two_shards_equals_unsharded(tmp_path: Path) -> None:
    images = make_batches(n=7, batch_size=7)[0][1]
    # The same forward batches for both runs, so the comparison is exact (convolutions may round
    # differently with another batch composition): shard 0/2 = images 0..2, shard 1/2 = 3..6 (i*N//n).
    shard0 = [(torch.arange(0, 3), images[0:3])]
    shard1 = [(torch.arange(3, 5), images[3:5]), (torch.arange(5, 7), images[5:7])]
    write_cache(tmp_path / "all", shard0 + shard1, 0, 7)
    write_cache(tmp_path / "s0", shard0, 0, 3)
    write_cache(tmp_path / "s1", shard1, 3, 7)

    meta = json.loads((tmp_path / "s1" / "bn" / "activations.json").read_text())
    assert meta == {
        "kind": "activations",
        "schema_version": 1,
        "model": "tiny",
        "model_spec": "python:tests:tiny",
        "dataset": {"path": "/data", "images": 7},
        "layer": "bn",
        "shape": [4, 4, 6, 6],
        "image_start": 3,
        "image_stop": 7,
        "normalize": "imagenet",
    }
    whole = np.load(tmp_path / "all" / "bn" / "activations.npy")
    assert whole.dtype == np.float32 and whole.shape == (7, 4, 6, 6)
    expected = reference_outputs(make_model(), ["bn"], images)["bn"].numpy()
    np.testing.assert_allclose(whole, expected, rtol=0, atol=1e-6)

    for layer in ("bn", "fc"):
        unsharded = list(read_cache_batches([tmp_path / "all"], layer, batch_size=3))
        sharded = list(read_cache_batches([tmp_path / "s1", tmp_path / "s0"], layer, batch_size=3))
        assert [i.tolist() for i, _ in unsharded] == [[0, 1, 2], [3, 4, 5], [6]]
        assert [i.tolist() for i, _ in sharded] == [[0, 1, 2], [3, 4, 5], [6]]
        assert torch.equal(torch.cat([a for _, a in sharded]), torch.cat([a for _, a in unsharded]))
    assert not list(tmp_path.rglob("*.partial"))


def test_cache_shards_must_tile(tmp_path: Path) -> None:
    batches = make_batches(n=7, batch_size=7)
    images = batches[0][1]
    write_cache(tmp_path / "a", [(torch.arange(0, 3), images[0:3])], 0, 3)
    write_cache(tmp_path / "c", [(torch.arange(4, 7), images[4:7])], 4, 7)
    with pytest.raises(ValueError, match="do not tile the images: .* ends at 3, .* starts at 4"):
        cache_shards([tmp_path / "a", tmp_path / "c"], "bn")
    with pytest.raises(FileNotFoundError, match="no finished cache of layer 'conv'"):
        cache_shards([tmp_path / "a"], "conv")


def test_incomplete_cache_leaves_nothing(tmp_path: Path) -> None:
    batches = make_batches(n=7, batch_size=3)
    with pytest.raises(RuntimeError, match="1 images of the shard were never written"):
        write_cache(tmp_path / "out", batches[:2], 0, 7)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="outside this shard's range 0:3"):
        write_cache(tmp_path / "out2", batches[1:2], 0, 3)
    assert not list(tmp_path.iterdir())


# --- unitscope extract ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "broden"
    rng = np.random.default_rng(0)
    with BrodenWriter(root, {1: "thing", 2: "dotted"}, image_size=32, label_size=16) as writer:
        for i in range(9):
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            if i == 4:  # an image with only a texture label: dropped when --categories object
                writer.add_image("tex", f"t{i}", image, image_labels={"texture": [2]})
            else:
                writer.add_image("obj", f"o{i}", image, pixel_layers={"object": [np.full((16, 16), 1)]})
    return root


def run_extract(dataset: Path, out: Path, *extra: str) -> None:
    args = [
        "extract",
        "--dataset",
        str(dataset),
        "--model",
        "probecnn",
        "--layer",
        "conv2",
        "--layer",
        "fc",
        "--out",
        str(out),
        "--batch-size",
        "1",
        "--device",
        "cpu",
        *extra,
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


def test_extract_cli_shards_equal_unsharded(tiny_dataset: Path, tmp_path: Path) -> None:
    run_extract(tiny_dataset, tmp_path / "all", "--categories", "object", "--max-images", "7")
    for shard in ("0/2", "1/2"):
        run_extract(
            tiny_dataset, tmp_path / f"part{shard[0]}", "--categories", "object", "--max-images", "7", "--shard", shard
        )
    meta = json.loads((tmp_path / "part1" / "conv2" / "activations.json").read_text())
    # 8 images have an object; --max-images 7 keeps rows 0..6; shard 1/2 is rows 7*1//2 .. 7*2//2 = 3..6;
    # at 32 px conv1 is 8x8, pool1 4x4, conv2 4x4
    assert (meta["image_start"], meta["image_stop"], meta["shape"]) == (3, 7, [4, 64, 4, 4])
    assert meta["model_spec"] == "probecnn" and meta["normalize"] == "imagenet" and meta["dataset"]["images"] == 7
    for layer in ("conv2", "fc"):
        whole = torch.cat([a for _, a in read_cache_batches([tmp_path / "all"], layer, 4)])
        parts = torch.cat([a for _, a in read_cache_batches([tmp_path / "part0", tmp_path / "part1"], layer, 4)])
        assert torch.equal(whole, parts)

    # the cache holds what a plain forward of the model gives on the dataset's images
    model = load_model("probecnn").module
    dataset = BrodenDataset(tiny_dataset, ["object"])
    images = torch.stack([torch.from_numpy(dataset.image(i)).permute(2, 0, 1) for i in range(7)])
    reference = reference_outputs(model, ["conv2"], images)["conv2"]
    torch.testing.assert_close(torch.cat([a for _, a in read_cache_batches([tmp_path / "all"], "conv2", 7)]), reference)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "conv9"], "no layer 'conv9'. Did you mean conv4, conv3, conv2, conv1"),
        (["--layer", "conv1", "--shard", "2/2"], "must be I/N with 0 <= I < N"),
        (["--layer", "conv1", "--model", "probecnn2"], "Did you mean probecnn"),
        (["--layer", "conv1", "--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_extract_cli_usage_errors(tiny_dataset: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    args = ["extract", "--dataset", str(tiny_dataset), "--model", "probecnn", "--out", str(tmp_path / "out"), *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_without_cuda_is_a_usage_error(tiny_dataset: Path, tmp_path: Path) -> None:
    args = [
        "extract",
        "--dataset",
        str(tiny_dataset),
        "--model",
        "probecnn",
        "--layer",
        "conv1",
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cuda",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "CUDA is not available" in result.output
