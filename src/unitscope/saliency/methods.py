"""Saliency methods on captum, with the papers' settings rather than captum's defaults (docs/saliency.md).

=====================  ==========================================================================================
``gradient``           ∂logit/∂x (Simonyan et al. 2014): captum ``Saliency`` with ``abs=False`` (raw, signed)
``gradient-input``     x ⊙ ∂logit/∂x: captum ``InputXGradient``
``integrated-gradients`` Sundararajan et al. 2017: 50 steps from a black image (the normalised value of pixel 0,
                       not 0 after normalisation); the completeness error Σ attributions − (F(x) − F(x₀)) is kept
``smoothgrad``         Smilkov et al. 2017: the mean gradient of 50 copies with Gaussian noise of
                       σ = 0.15 · (max − min) of each image (captum's ``stdevs`` is an absolute σ with 5 samples)
``smoothgrad-ig``      the same noise over Integrated Gradients
``guided-backprop``    the gradient with the guided rule on every rectifier call (:mod:`.rectifiers`)
``deconvnet``          the gradient with the DeconvNet rule on every rectifier call
``grad-cam``           Selvaraju et al. 2017 at a convolutional layer: captum ``LayerGradCam`` with the ReLU on
                       (captum's default leaves it off), upsampled bilinearly (captum's default is nearest)
``guided-grad-cam``    ``guided-backprop`` ⊙ ``grad-cam``
=====================  ==========================================================================================

captum's own GuidedBackprop and Deconvolution change only ``nn.ReLU`` modules, and LayerGradCam hooks a module,
not one of its calls: :class:`Explainer` gives both what they cannot reach (ReLU6, a module called twice).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import InputXGradient, IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency
from torch import nn

from unitscope.hooks import LayerError, Trace
from unitscope.saliency.rectifiers import check_rectifiers, rectifier_rule
from unitscope.settings import SALIENCY_DEFAULTS, SaliencySettings

#: Methods that need a convolutional layer, and those that need the model's rectifiers.
LAYER_METHODS = frozenset({"grad-cam", "guided-grad-cam"})
RECTIFIER_RULES = {"guided-backprop": "guided", "deconvnet": "deconv", "guided-grad-cam": "guided"}
#: The methods each part of the recorded settings applies to.
SETTING_METHODS = {"smoothgrad": frozenset({"smoothgrad", "smoothgrad-ig"}),
                   "integrated_gradients": frozenset({"integrated-gradients", "smoothgrad-ig"}),
                   "grad_cam": LAYER_METHODS, "rectifiers": frozenset(RECTIFIER_RULES)}
#: The fixed choices the papers make (recorded with the settings in ``meta.json``).
GRADCAM_RELU = True
GRADCAM_UPSAMPLE = "bilinear"
IG_BASELINE = "black"
IG_RULE = "gausslegendre"  # captum's quadrature of the path integral


@dataclass
class Explanation:
    """Raw maps of a batch: ``maps[method]`` (B, C, H, W) float32 (Grad-CAM: C = 1); ``completeness`` (B,) the
    Integrated Gradients error Σ attributions − (F(x) − F(baseline)) and ``difference`` (B,) F(x) − F(baseline)."""

    maps: dict[str, torch.Tensor]
    completeness: torch.Tensor | None = None
    difference: torch.Tensor | None = None


#: Independent random streams of one run seed: SmoothGrad's noise, the re-initialised blocks, the noise control.
STREAMS = {"smoothgrad": 0, "block": 1, "noise-control": 2}


def seed_of(seed: int, stream: str, index: int) -> int:
    """The seed of item ``index`` of ``stream`` (:data:`STREAMS`) in a run seeded ``seed``, independent of how
    items are batched and of the other streams."""
    return int(np.random.SeedSequence([seed, STREAMS[stream], index]).generate_state(1)[0])


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class Explainer:
    """The saliency maps of one model. ``baseline`` is the normalised black image (1, C, H, W) of Integrated
    Gradients; ``layer`` the convolutional layer of Grad-CAM (a layer name as :mod:`unitscope.hooks` takes it:
    ``conv4``, ``_swish:1``), required only by the Grad-CAM methods."""

    def __init__(self, model: nn.Module, baseline: torch.Tensor, layer: str | None = None,
                 settings: SaliencySettings = SALIENCY_DEFAULTS) -> None:
        settings.validate()
        if layer is None and LAYER_METHODS & set(settings.methods):
            raise LayerError("grad-cam and guided-grad-cam need a convolutional layer: give --layer (e.g. the last "
                             "convolutional feature layer)")
        self.model, self.baseline, self.layer, self.settings = model.eval(), baseline, layer, settings
        self._checked = False

    def check(self, example: torch.Tensor) -> None:
        """Refuse, once, what the chosen methods cannot explain: functional rectifiers for the guided and deconv
        rules, a Grad-CAM layer that does not run or is not a (B, C, h, w) map."""
        if self._checked:
            return
        if RECTIFIER_RULES.keys() & set(self.settings.methods):
            check_rectifiers(self.model, example)
        if self.layer is not None and LAYER_METHODS & set(self.settings.methods):
            with Trace(self.model, [self.layer]) as trace, torch.no_grad():
                shape = tuple(trace(example)[self.layer].shape)
            if len(shape) != 4 or shape[2] * shape[3] < 2:
                raise LayerError(f"layer {self.layer!r} gives outputs of shape {shape}, not convolutional feature "
                                 "maps (B, C, h, w) larger than 1×1: Grad-CAM cannot use it; choose a convolutional "
                                 "layer")
        self._checked = True

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model's top class for each input (B,)."""
        return torch.cat([self.model(part).argmax(1) for part in inputs.split(self.settings.batch_size)])

    def explain(self, inputs: torch.Tensor, targets: torch.Tensor, first_index: int = 0) -> Explanation:
        """Every method's map of ``inputs`` (B, C, H, W) for the classes ``targets`` (B,); ``first_index`` numbers
        the first input in the run (SmoothGrad's noise is drawn per input from :func:`seed_of`)."""
        self.check(inputs[:1])
        inputs = inputs.detach().requires_grad_(True)
        methods, maps = self.settings.methods, {}
        explanation = Explanation(maps)
        if "gradient" in methods:
            maps["gradient"] = Saliency(self.model).attribute(inputs, targets, abs=False)
        if "gradient-input" in methods:
            maps["gradient-input"] = InputXGradient(self.model).attribute(inputs, targets)
        if "integrated-gradients" in methods:
            maps["integrated-gradients"], explanation.completeness = IntegratedGradients(self.model).attribute(
                inputs, self.baseline, targets, n_steps=self.settings.ig_steps, method=IG_RULE,
                internal_batch_size=self.settings.batch_size, return_convergence_delta=True)
            with torch.no_grad():
                logits = self.model(torch.cat([inputs, self.baseline]))
            picked = logits[:-1].gather(1, targets[:, None])[:, 0]
            explanation.difference = picked - logits[-1, targets]
        for method, attribution in (("smoothgrad", Saliency), ("smoothgrad-ig", IntegratedGradients)):
            if method in methods:
                maps[method] = self._smoothgrad(attribution(self.model), inputs, targets, first_index)
        for method in ("guided-backprop", "deconvnet"):
            if method in methods or (method == "guided-backprop" and "guided-grad-cam" in methods):
                with rectifier_rule(self.model, RECTIFIER_RULES[method]):
                    maps[method] = Saliency(self.model).attribute(inputs, targets, abs=False)
        if LAYER_METHODS & set(methods):
            cam = self._grad_cam(inputs, targets)
            if "grad-cam" in methods:
                maps["grad-cam"] = cam
            if "guided-grad-cam" in methods:
                maps["guided-grad-cam"] = maps["guided-backprop"] * cam
        explanation.maps = {method: maps[method].detach().float() for method in methods}
        return explanation

    def _smoothgrad(self, attribution, inputs: torch.Tensor, targets: torch.Tensor, first_index: int) -> torch.Tensor:
        """SmoothGrad of ``attribution``, one input at a time: σ is a fraction of that input's own range."""
        tunnel, parts = NoiseTunnel(attribution), []
        for row, (image, target) in enumerate(zip(inputs, targets, strict=True)):
            image = image[None].detach().requires_grad_(True)
            sigma = self.settings.smoothgrad_noise * float(image.detach().max() - image.detach().min())
            extra = {} if isinstance(attribution, Saliency) else {
                "baselines": self.baseline, "n_steps": self.settings.ig_steps, "method": IG_RULE,
                "internal_batch_size": self.settings.batch_size}
            if isinstance(attribution, Saliency):
                extra["abs"] = False
            with _seeded(seed_of(self.settings.seed, "smoothgrad", first_index + row)):
                parts.append(tunnel.attribute(
                    image, nt_type="smoothgrad", nt_samples=self.settings.smoothgrad_samples,
                    nt_samples_batch_size=self.settings.batch_size, stdevs=sigma, target=int(target), **extra))
        return torch.cat(parts)

    def _grad_cam(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Grad-CAM at the chosen call of the layer: the call's output goes through a module of its own that
        captum hooks, and on as a copy (an in-place operation after the layer must not change what was hooked)."""
        tap = nn.Identity()
        with Trace(self.model, edits={self.layer: lambda output: tap(output).clone()}):
            cam = LayerGradCam(self.model, tap).attribute(inputs, targets, relu_attributions=GRADCAM_RELU)
        return LayerAttribution.interpolate(cam, tuple(inputs.shape[2:]), interpolate_mode=GRADCAM_UPSAMPLE)


def method_settings(settings: SaliencySettings, layer: str | None, normalize: str) -> dict[str, object]:
    """What ``meta.json`` records of how the maps were made (Grad-CAM's ``layer``: ``None`` where it does not run)."""
    return {
        "methods": list(settings.methods),
        "smoothgrad": {"samples": settings.smoothgrad_samples, "noise": settings.smoothgrad_noise,
                       "sigma": "noise * (max - min) of each normalised input", "seed": settings.seed},
        "integrated_gradients": {"steps": settings.ig_steps, "baseline": IG_BASELINE, "rule": IG_RULE,
                                 "baseline_value": f"pixel 0 after the {normalize} normalisation"},
        "grad_cam": {"layer": layer, "relu": GRADCAM_RELU, "upsample": GRADCAM_UPSAMPLE},
        "percentile": settings.percentile,
        "batch_size": settings.batch_size,
    }

