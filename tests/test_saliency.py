"""Saliency: the guided and deconv rules on every rectifier call, against hand-computed gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unitscope.saliency.rectifiers import RectifierError, check_rectifiers, rectifier_rule

W1 = torch.tensor([[1.0, -2.0], [0.5, 1.0], [-1.0, 1.0]])  # 2 inputs -> 3 hidden units
W2 = torch.tensor([[2.0, -3.0, 1.0]])  # 3 hidden -> 1 output
X = torch.tensor([[1.0, 0.5]])  # hidden pre-activations W1 x = (0, 1, -0.5)


class TwoLayer(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(2, 3, bias=False), act, nn.Linear(3, 1, bias=False)
        self.fc1.weight.data, self.fc2.weight.data = W1.clone(), W2.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def gradient(model: nn.Module, x: torch.Tensor, rule: str | None = None) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    if rule is None:
        model(x).sum().backward()
    else:
        with rectifier_rule(model, rule):
            model(x).sum().backward()
    return x.grad


@pytest.mark.parametrize("inplace", [False, True])
def test_guided_and_deconv_rules_on_a_relu_match_the_hand_computed_gradients(inplace: bool) -> None:
    """Hidden pre-activations (0, 1, -0.5): only unit 2 is in the linear range; the output weights are (2, -3, 1)."""
    model = TwoLayer(nn.ReLU(inplace=inplace))
    plain = W1.T @ torch.tensor([0.0, -3.0, 0.0])  # mask (0, 1, 0) times the weights
    guided = W1.T @ torch.tensor([0.0, 0.0, 0.0])  # mask times the positive weights (2, 0, 1): nothing passes
    deconv = W1.T @ torch.tensor([2.0, 0.0, 1.0])  # the positive weights, whatever the forward input
    assert torch.equal(gradient(model, X)[0], plain)
    assert torch.equal(gradient(model, X, "guided")[0], guided)
    assert torch.equal(gradient(model, X, "deconv")[0], deconv)
    assert torch.equal(gradient(model, X)[0], plain), "the rule ends with the block"
    x = torch.tensor([[2.0, 0.5]])  # pre-activations (1, 1.5, -1.5): units 1 and 2 in the linear range
    assert torch.equal(gradient(model, x)[0], W1.T @ torch.tensor([2.0, -3.0, 0.0]))  # (0.5, -7)
    assert torch.equal(gradient(model, x, "guided")[0], W1.T @ torch.tensor([2.0, 0.0, 0.0]))  # (2, -4)
    assert torch.equal(gradient(model, x, "deconv")[0], W1.T @ torch.tensor([2.0, 0.0, 1.0]))  # (1, -3)
    relu6 = TwoLayer(nn.ReLU6(inplace=inplace))  # inside its linear range a ReLU6 is a ReLU
    assert torch.equal(gradient(relu6, x, "guided")[0], torch.tensor([2.0, -4.0]))


def test_relu6_saturation_is_outside_the_linear_range() -> None:
    model = TwoLayer(nn.ReLU6())
    model.fc1.weight.data = torch.tensor([[1.0, -2.0], [2.0, -10.0], [-1.0, 1.0]])
    model.fc2.weight.data = torch.tensor([[2.0, 1.0, 1.0]])
    x = torch.tensor([[7.0, 0.5]])  # pre-activations (6, 9, -6.5): units 1 and 2 saturate at 6
    assert torch.equal(gradient(model, x)[0], torch.zeros(2))
    assert torch.equal(gradient(model, x, "guided")[0], torch.zeros(2))
    assert torch.equal(gradient(model, x, "deconv")[0], model.fc1.weight.data.T @ torch.tensor([2.0, 1.0, 1.0]))


class Twice(nn.Module):
    """One ReLU module called twice per forward pass, as EfficientNet's blocks call their activation."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = (nn.Linear(2, 2, bias=False) for _ in range(3))
        self.fc1.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        self.fc2.weight.data = torch.tensor([[1.0, -1.0], [-1.0, 2.0]])
        self.fc3.weight.data = torch.tensor([[1.0, -1.0]])
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


def test_every_call_of_a_module_gets_the_rule() -> None:
    model = Twice()
    x = torch.tensor([[2.0, 1.0]])  # first ReLU: (2, 1) both linear; second: fc2 -> (1, 0): only unit 1 linear
    # deconv through both calls: relu(relu((1, -1)) @ fc2) = relu((1, -1)) = (1, 0); then fc1^T (1, 0) = (1, 0)
    assert torch.equal(gradient(model, x, "deconv")[0], torch.tensor([1.0, 0.0]))
    # guided: mask (1, 0) at the second call, positive part: (1, 0) @ fc2 = (1, -1) -> relu -> (1, 0) -> (1, 0)
    assert torch.equal(gradient(model, x, "guided")[0], torch.tensor([1.0, 0.0]))
    assert torch.equal(gradient(model, x)[0], torch.tensor([1.0, -1.0]))  # plain: (1, 0) @ fc2 = (1, -1)
    assert check_rectifiers(model, x) == 2
    # Weights where the rule at the first call matters: both calls fully linear, the gradient reaching the first
    # call is fc2ᵀ (1, 1) = (1, -1), whose negative part the guided and deconv rules drop there.
    model.fc2.weight.data = torch.tensor([[1.0, -2.0], [0.0, 1.0]])
    model.fc3.weight.data = torch.tensor([[1.0, 1.0]])
    x = torch.tensor([[3.0, 1.0]])  # first call (3, 1), second call (1, 1)
    assert torch.equal(gradient(model, x)[0], torch.tensor([1.0, -1.0]))
    assert torch.equal(gradient(model, x, "guided")[0], torch.tensor([1.0, 0.0]))
    assert torch.equal(gradient(model, x, "deconv")[0], torch.tensor([1.0, 0.0]))


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(2, 3), nn.Linear(3, 1), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.act(self.fc1(x))))


def test_functional_rectifiers_are_refused_and_a_model_without_rectifiers_too() -> None:
    with pytest.raises(RectifierError, match=r"Functional rectifies with functions \(relu, 1 calls per forward pass\)"):
        check_rectifiers(Functional(), X)
    with pytest.raises(RectifierError, match="Sequential has no nn.ReLU or nn.ReLU6 module"):
        with rectifier_rule(nn.Sequential(nn.Linear(2, 1)), "guided"):
            pass
    unused = Functional()
    unused.forward = lambda x: unused.fc2(unused.fc1(x))  # its ReLU module is never called
    with pytest.raises(RectifierError, match="calls no nn.ReLU or nn.ReLU6 module"):
        check_rectifiers(unused, X)


def test_probecnn_guided_map_is_not_the_plain_gradient() -> None:
    from unitscope.models.probecnn import ProbeCNN

    torch.manual_seed(0)
    model = ProbeCNN(num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    assert check_rectifiers(model, x) == 4
    plain, guided, deconv = (gradient(model, x, rule) for rule in (None, "guided", "deconv"))
    assert not torch.allclose(plain, guided) and not torch.allclose(guided, deconv)
    assert torch.equal(gradient(model, x), plain)


def test_efficientnet_lite0_relu6_calls_each_get_the_rule() -> None:
    """EfficientNet-Lite0 rectifies with 17 nn.ReLU6 modules, each block's called twice: 33 calls, all reached."""
    from unitscope.models import load_model

    model = load_model("efficientnet-lite0@imagenet").module
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    assert sum(isinstance(m, nn.ReLU6) for m in model.modules()) == 17
    assert check_rectifiers(model, x) == 33
    plain, guided = (gradient(model, x, rule) for rule in (None, "guided"))
    assert not torch.allclose(plain, guided)


@pytest.mark.parametrize(("name", "calls"), [("inception_v3", 94), ("googlenet", 57)])
def test_torchvision_basicconv2d_rectifies_through_modules(name: str, calls: int) -> None:
    """torchvision's BasicConv2d calls F.relu; the registry gives it an nn.ReLU module, with the same weights."""
    import torchvision

    from unitscope.models import load_model

    model = load_model(f"torchvision:{name}").module
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    assert check_rectifiers(model, x) == calls
    with pytest.raises(RectifierError, match="rectifies with functions"):
        check_rectifiers(torchvision.models.get_model(name, weights=None, init_weights=False).eval(), x)
    plain, guided = (gradient(model, x, rule) for rule in (None, "guided"))
    assert not torch.allclose(plain, guided, rtol=1e-3, atol=0)  # untrained: tiny gradients, compared relatively
    reference = torchvision.models.get_model(name, weights=None, init_weights=False).eval()
    reference.load_state_dict(model.state_dict())  # the same parameter and buffer names: weights load unchanged
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
