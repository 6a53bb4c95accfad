"""The shared hook layer: retain, edit, stop early, per-call layers, and hooks always removed (captum style:
tiny models whose outputs are computed by hand)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from unitscope.hooks import LayerError, LayerRef, Trace, ablate, replace, rotate, run_once


class Chain(nn.Module):
    """y = relu(W2 · relu(W1 · x)) with hand-set weights, and a module (``act``) used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(2, 3, bias=False)
        self.second = nn.Linear(3, 2, bias=False)
        self.act = nn.ReLU()
        with torch.no_grad():
            self.first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
            self.second.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, -1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.second(self.act(self.first(x))))


X = torch.tensor([[2.0, 3.0]])  # first: (2, 3, -1) → act:0 (2, 3, 0) → second: (5, 6) → act:1 (5, 6)


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_retains_each_call_of_a_reused_module() -> None:
    model = Chain()
    with Trace(model, ["first", "act:0", "second", "act:1"]) as trace:
        out = trace(X)
    assert out["first"].tolist() == [[2.0, 3.0, -1.0]]
    assert out["act:0"].tolist() == [[2.0, 3.0, 0.0]]
    assert out["second"].tolist() == [[5.0, 6.0]]
    assert out["act:1"].tolist() == [[5.0, 6.0]]
    assert hook_count(model) == 0


def test_a_bare_name_never_silently_means_one_call() -> None:
    model = Chain()
    with pytest.raises(LayerError, match=r"'act' is called more than once .* act:0, act:1"), Trace(model, ["act"]) as trace:
        trace(X)
    with pytest.raises(LayerError, match=r"'act:2': module 'act' runs 2 times per forward pass; name a call from act:0 to act:1"), Trace(model, ["act:2"]) as trace:
        trace(X)
    assert hook_count(model) == 0


def test_hooks_are_removed_when_the_consumer_raises() -> None:
    model = Chain()
    with pytest.raises(RuntimeError, match="consumer"), Trace(model, ["first"], edits={"second": ablate([0])}):
        assert hook_count(model) == 3  # root pre-hook, first, second
        raise RuntimeError("consumer failed")
    assert hook_count(model) == 0
    assert model(X).tolist() == [[5.0, 6.0]]  # no edit left behind


def test_edits_change_what_follows() -> None:
    model = Chain()
    with Trace(model, edits={"act:0": ablate([1])}, retain=["second"]) as trace:
        # act:0 (2, 0, 0) → second (2, 0)
        assert trace(X)["second"].tolist() == [[2.0, 0.0]]
        assert model(X).tolist() == [[2.0, 0.0]]
    with Trace(model, edits={"first": replace(torch.tensor([1.0, 1.0, 1.0]))}) as trace:
        assert model(X).tolist() == [[3.0, 1.0]]
    swap = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with Trace(model, ["act:0"], edits={"first": rotate(swap)}) as trace:
        # first rotated: (3, 2, -1) → act:0 (3, 2, 0) → second (5, 4)
        out = trace(X)
        assert out["act:0"].tolist() == [[3.0, 2.0, 0.0]]
        assert model(X).tolist() == [[5.0, 4.0]]
    assert model(X).tolist() == [[5.0, 6.0]]


def test_retained_outputs_keep_gradients() -> None:
    model = Chain()
    x = X.clone().requires_grad_(True)
    with Trace(model, ["first"], grad=True) as trace:
        y = model(x)
        y.sum().backward()
    # d(sum y)/d(first) = W2ᵀ · [1, 1] masked by act:0's ReLU at (2, 3, -1): (1, 3, 0)
    assert trace.outputs["first"].grad.tolist() == [[1.0, 3.0, 0.0]]
    assert trace.outputs["first"].requires_grad


def test_stop_skips_the_rest_of_the_forward_after_the_first_pass() -> None:
    model = Chain()
    seconds = []
    model.second.register_forward_hook(lambda m, i, o: seconds.append(1))
    with Trace(model, ["act:0"], stop=True) as trace:
        for _ in range(3):
            assert trace(X)["act:0"].tolist() == [[2.0, 3.0, 0.0]]
    assert len(seconds) == 1  # the first pass runs whole (it learns how often each module runs)


def test_outputs_are_copies_safe_from_in_place_operations() -> None:
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Identity()

        def forward(self, x):
            return torch.relu_(self.lin(x))

    with Trace(InPlace(), ["lin"]) as trace:
        assert trace(torch.tensor([[-1.0, 2.0]]))["lin"].tolist() == [[-1.0, 2.0]]


@pytest.mark.parametrize(("text", "ref"), [("layer4", LayerRef("layer4")), ("_blocks.10._swish:1", LayerRef("_blocks.10._swish", 1))])
def test_layer_names(text, ref) -> None:
    assert LayerRef.parse(text) == ref and str(ref) == text


def test_bad_layer_names() -> None:
    with pytest.raises(LayerError, match="expected NAME or NAME:CALL"):
        LayerRef.parse("act:x")
    with pytest.raises(LayerError, match="no layer 'frist'. Did you mean first"):
        Trace(Chain(), ["frist"])


def test_layers_lists_each_call_of_efficientnet_lite0_swish() -> None:
    from unitscope.cli import main

    result = CliRunner().invoke(main, ["layers", "efficientnet-lite0"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # Block 10 expands 112 → 672 channels at 14×14 and applies the same ReLU6 after the expansion and after
    # the depthwise convolution: two layers.
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:]}
    assert rows["_blocks.10._swish:0"] == rows["_blocks.10._swish:1"] == ["672×14×14", "672"]
    assert "_blocks.10._swish" not in rows and rows["_blocks.10"] == ["112×14×14", "112"]
    # The cache column: 672 × 14 × 14 float32 values for each of Broden's 63,305 images.
    assert next(line for line in lines if line.startswith("_blocks.10._swish:0")).endswith("33.4 GB")


def test_run_once_sees_every_call_and_removes_its_hooks_also_on_error() -> None:
    model = Chain()
    seen = []
    run_once(model, X, forward=[(model.act, lambda m, i, o: seen.append(o.tolist()))],
             pre=[(model.second, lambda m, i: seen.append("second"))])
    assert seen == [[[2.0, 3.0, 0.0]], "second", [[5.0, 6.0]]] and hook_count(model) == 0
    with pytest.raises(RuntimeError):
        run_once(model, torch.zeros(1, 5), forward=[(model.act, lambda m, i, o: None)],
                 pre=[(model.second, lambda m, i: None)])  # wrong input size
    assert hook_count(model) == 0
