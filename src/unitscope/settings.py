"""Settings of the engine, with every default and limit in one place: the library, the command line and the
workflow's config schema take them from here (``tests/test_settings.py`` compares them). No heavy imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")
#: Defaults of ``unitscope train-probecnn``: SGD steps and images per step.
TRAIN_ITERATIONS = 128
TRAIN_BATCH_SIZE = 16
#: Presence rules of the category-conditional activation count (implemented in ``unitscope.tally``).
PRESENCE_RULES = ("image", "mask")
#: Input normalisations a model can be given (implemented in ``unitscope.models.normalize``).
NORMALIZATIONS = ("imagenet", "caffe", "none")
#: Where the second pass of a dissection gets the activations: a float32 cache on disk written by the first
#: pass, the forward pass run again, or the cache when it fits the disk budget (docs/engine.md, Disk).
CACHE_POLICIES = ("disk", "recompute", "auto")
DEFAULT_CACHE_BUDGET_GB = 100.0
#: Broden's releases (image sizes) and the images each holds (broden1_224, _227, _384; spec §1.1).
BRODEN_VARIANTS = (224, 227, 384)
BRODEN_IMAGES = 63_305


def format_bytes(size: float) -> str:
    """``1.2 GB``, ``340 MB``, ``12 kB`` (decimal units, as disks are sold)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without CUDA is an error; ``cuda:N`` is accepted."""
    import torch  # deferred: the CLI should start without loading torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available here; use --device cpu or auto")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count`` contiguous image ranges."""

    index: int
    count: int

    def range(self, n_images: int, align: int = 1) -> range:
        """Images ``index·N//count … (index+1)·N//count``, each boundary rounded down to a multiple of ``align``:
        contiguous, disjoint, covering ``0…N``.

        With ``align`` = the batch size, a shard's batches are exactly the unsharded run's batches, so the
        forward pass sees the same images together and gives the same float bits (docs/engine.md, Exactness).
        """
        if align < 1:
            raise ValueError(f"shard alignment must be at least 1, got {align}")

        def boundary(i: int) -> int:
            return n_images if i == self.count else i * n_images // self.count // align * align

        return range(boundary(self.index), boundary(self.index + 1))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """Parse ``I/N`` (0 ≤ I < N)."""
    index, sep, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        shard = None
    if not sep or shard is None or not 0 <= shard.index < shard.count:
        raise ValueError(f"shard {text!r} must be I/N with 0 <= I < N, e.g. 0/4")
    return shard


class DissectError(ValueError):
    """Bad input to a dissection (unknown layer, bad option, inconsistent parts); the message says what to do."""


@dataclass(frozen=True)
class Rotation:
    """Random change of basis applied to every activation batch (spec §3)."""

    alpha: float
    seed: int
    unpermute: bool = True


@dataclass(frozen=True)
class DissectSettings:
    """Everything that determines a dissection's numbers (and is recorded in ``meta.json``)."""

    quantile: float = 0.005
    netdissect_level: bool = False
    iou_threshold: float = 0.04
    presence: str = "image"
    top_k: int = 10
    batch_size: int = 32
    device: str = "cpu"
    workers: int = 0  # DataLoader processes decoding images and label maps; changes no number
    cache: str = "auto"  # CACHE_POLICIES; changes no number
    cache_budget_gb: float = DEFAULT_CACHE_BUDGET_GB  # the largest activation cache `auto` writes to disk
    normalize: str | None = None  # None: the model's default
    max_images: int | None = None
    rotation: Rotation | None = None
    null_permutations: int = 0  # permutations of the significance null (0: none; dissect/null.py)
    null_seed: int = 0
    name: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def level(self) -> float:
        """The quantile level of the threshold: ``1 - quantile``, or NetDissect's 0.994995."""
        from unitscope.thresholds import NETDISSECT_LEVEL

        return NETDISSECT_LEVEL if self.netdissect_level else 1.0 - self.quantile

    def validate(self) -> None:
        if not 0.0 < self.quantile < 1.0:
            raise DissectError(f"--quantile must lie strictly between 0 and 1, got {self.quantile}")
        if self.presence not in PRESENCE_RULES:
            raise DissectError(f"--presence must be one of {', '.join(PRESENCE_RULES)}, got {self.presence!r}")
        for option, value in (("--top-k", self.top_k), ("--batch-size", self.batch_size)):
            if value < 1:
                raise DissectError(f"{option} must be at least 1, got {value}")
        if self.workers < 0:
            raise DissectError(f"--workers must be at least 0, got {self.workers}")
        if self.cache not in CACHE_POLICIES:
            raise DissectError(f"--cache must be one of {', '.join(CACHE_POLICIES)}, got {self.cache!r}")
        if not self.cache_budget_gb >= 0:
            raise DissectError(f"--cache-budget must be at least 0 GB, got {self.cache_budget_gb}")
        if self.max_images is not None and self.max_images < 1:
            raise DissectError(f"--max-images must be at least 1, got {self.max_images}")
        if self.null_permutations < 0:
            raise DissectError(f"--null-permutations must be at least 0, got {self.null_permutations}")
        if self.rotation is not None and not 0.0 <= self.rotation.alpha <= 1.0:
            raise DissectError(f"--rotation-alpha must lie in [0, 1], got {self.rotation.alpha}")
        try:
            resolve_device(str(self.device))
        except ValueError as error:
            raise DissectError(f"--device: {error}") from None


#: The defaults of a dissection (``DissectSettings()``), for the command line.
DISSECT_DEFAULTS = DissectSettings()

#: Saliency methods, in the order of the report's grids (implemented in ``unitscope.saliency.methods``).
SALIENCY_METHODS = ("gradient", "gradient-input", "integrated-gradients", "smoothgrad", "smoothgrad-ig",
                    "guided-backprop", "deconvnet", "grad-cam", "guided-grad-cam")
#: Which class a randomised model's maps explain: its own top class (as Adebayo et al.) or the original model's.
EXPLAINED_CLASSES = ("own", "original")


@dataclass(frozen=True)
class SaliencySettings:
    """The papers' settings of the saliency methods (recorded in ``meta.json``; docs/saliency.md)."""

    methods: tuple[str, ...] = SALIENCY_METHODS
    smoothgrad_samples: int = 50  # Smilkov et al.: 50 noisy copies
    smoothgrad_noise: float = 0.15  # σ as a fraction of (max − min) of each input
    ig_steps: int = 50  # Sundararajan et al.: 20–300 steps; 50 as Adebayo et al.
    batch_size: int = 16  # images, IG steps or noise samples per forward/backward pass; changes no number
    seed: int = 0  # SmoothGrad's noise: image i of a run draws from seed (seed, i)
    percentile: float = 99.0  # maps are clipped at this percentile for display and similarity

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in SALIENCY_METHODS]
        if unknown:
            raise ValueError(f"unknown saliency method {unknown[0]!r}; expected one of {', '.join(SALIENCY_METHODS)}")
        if not self.methods:
            raise ValueError("no saliency method given; expected one or more of " + ", ".join(SALIENCY_METHODS))
        for option, value in (("--smoothgrad-samples", self.smoothgrad_samples), ("--ig-steps", self.ig_steps),
                              ("--batch-size", self.batch_size)):
            if value < 1:
                raise ValueError(f"{option} must be at least 1, got {value}")
        if not self.smoothgrad_noise > 0:
            raise ValueError(f"--smoothgrad-noise must be positive, got {self.smoothgrad_noise}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"--percentile must lie in (0, 100], got {self.percentile}")


SALIENCY_DEFAULTS = SaliencySettings()

#: Model-parameter randomisation tests (``unitscope.saliency.randomization``) and their block orders; with the data
#: randomisation test (a model trained on permuted labels), the sanity checks.
RANDOMIZATION_TESTS = ("cascading", "independent")
RANDOMIZATION_ORDERS = ("top-down", "bottom-up")
SANITY_TESTS = (*RANDOMIZATION_TESTS, "data")


@dataclass(frozen=True)
class SanitySettings:
    """How the model-parameter randomisation test runs (Adebayo et al.'s choices by default; docs/saliency.md)."""

    tests: tuple[str, ...] = RANDOMIZATION_TESTS
    order: str = "top-down"
    explain: str = "own"  # EXPLAINED_CLASSES: the randomised model's own top class, or the original model's
    reset_statistics: bool = False  # re-initialise batch-norm running statistics too
    seed: int = 0  # block k is re-initialised under seed (seed, k), k its top-down position
    figure_images: int = 2  # images whose cascading maps are kept for the report's figure

    def validate(self) -> None:
        if not self.tests:
            raise ValueError("no sanity check given: --test is one or more of " + ", ".join(SANITY_TESTS))
        for option, value, valid in (("--test", self.tests, SANITY_TESTS),
                                     ("--order", (self.order,), RANDOMIZATION_ORDERS),
                                     ("--explain", (self.explain,), EXPLAINED_CLASSES)):
            bad = [v for v in value if v not in valid]
            if bad:
                raise ValueError(f"{option} {bad[0]!r} is not one of {', '.join(valid)}")
        if self.figure_images < 0:
            raise ValueError(f"--figure-images must be at least 0, got {self.figure_images}")


SANITY_DEFAULTS = SanitySettings()

#: Activation maximisation: Lucid's recipe, and Yosinski et al.'s pixel-space one (``unitscope.visualize``).
VISUALIZATION_METHODS = ("lucid", "pixel")


@dataclass(frozen=True)
class VisualizeSettings:
    """Activation maximisation's settings: the papers' by default (recorded in ``meta.json``; docs/visualize.md)."""

    methods: tuple[str, ...] = ("lucid",)
    pre_activation: bool = True  # optimise a rectified layer's units before the rectifier (Lucid's `_pre_relu`)
    size: int = 128  # Lucid's image side
    input_size: int | None = 224  # the transformed canvas is resized to this (Lucent: 224 for smaller images)
    steps: int = 512  # Lucid: Adam, lr 0.05, 512 steps
    lr: float = 0.05
    transforms: bool = True  # Lucid's transformation robustness (off: the plain parameterised image)
    copies: int = 1  # images per unit
    diversity: float = 100.0  # weight of Lucid's diversity term between a unit's copies (copies > 1)
    pixel_steps: int = 1000  # Yosinski et al.'s third setting: decay 1e-4, blur σ 1 every 4 steps, 1000 steps;
    pixel_progress: float = 2.0  # the step of their "progress" policy: the objective is to rise by this per step
    pixel_max_lr: float = 1e8  # (lr = min(max_lr, progress / |gradient|²); their settings 1 and 4)
    pixel_decay: float = 1e-4
    blur_sigma: float = 1.0
    blur_every: int = 4
    batch_size: int = 16  # images optimised together; changes no image beyond float rounding
    seed: int = 0  # image (unit u, copy c) draws from seed (seed, u, c)

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in VISUALIZATION_METHODS]
        if unknown or not self.methods:
            raise ValueError(f"--method {unknown[0] if unknown else ''!r} is not one of "
                             f"{', '.join(VISUALIZATION_METHODS)}")
        for option, value in (("--size", self.size), ("--steps", self.steps), ("--copies", self.copies),
                              ("--pixel-steps", self.pixel_steps), ("--batch-size", self.batch_size)):
            if value < 1:
                raise ValueError(f"{option} must be at least 1, got {value}")
        if self.input_size is not None and self.input_size < 1:
            raise ValueError(f"--input-size must be at least 1, got {self.input_size}")
        for name, value in (("lr", self.lr), ("pixel_progress", self.pixel_progress),
                            ("pixel_max_lr", self.pixel_max_lr), ("blur_sigma", self.blur_sigma)):
            if not value > 0:
                raise ValueError(f"VisualizeSettings.{name} must be positive, got {value}")
        if self.diversity < 0:
            raise ValueError(f"--diversity must be at least 0, got {self.diversity}")
        if not 0 <= self.pixel_decay < 1 or self.blur_every < 0:
            raise ValueError("VisualizeSettings.pixel_decay must lie in [0, 1) and blur_every be at least 0")


VISUALIZE_DEFAULTS = VisualizeSettings()


@dataclass(frozen=True)
class InversionSettings:
    """Network inversion's settings: Mahendran & Vedaldi's for CNNs (deep-goggle ``experiment_cnn.m``; λ_TV by
    depth in ``unitscope.visualize.inversion``; recorded in ``meta.json``; docs/visualize.md)."""

    steps: int = 400  # the learning rate drops ×0.1 after a quarter and again after three quarters
    lr: float = 0.004
    momentum: float = 0.9
    alpha: float = 6.0  # the α-norm prior's exponent
    lambda_alpha: float = 8e-10
    tv_beta: float = 2.0
    seed: int = 0  # image i starts from noise seeded (seed, i)

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.steps}")
        if not self.lr > 0 or not 0 <= self.momentum < 1:
            raise ValueError("InversionSettings.lr must be positive and momentum lie in [0, 1)")


INVERSION_DEFAULTS = InversionSettings()


#: How a prediction's logit is split over a layer's units (``unitscope.explain.decomposition``): the linear head's
#: weights after global average pooling (CAM, exact), or Grad-CAM's gradient weights.
WEIGHTINGS = ("cam", "grad-cam")

#: Union rules of a formula's IoU (``unitscope.compositional.search``): the dissection's (its presence rule) or
#: Mu & Andreas's plain dataset-level IoU.
UNION_RULES = ("dissection", "plain")


@dataclass(frozen=True)
class CompositionalSettings:
    """Compositional explanations' settings: Mu & Andreas's (formula length 3, beam 5; docs/compositional.md)."""

    max_length: int = 3
    beam: int = 5
    union: str = "dissection"
    batch_size: int = 32

    def validate(self) -> None:
        for option, value in (("--max-length", self.max_length), ("--beam", self.beam),
                              ("--batch-size", self.batch_size)):
            if value < 1:
                raise ValueError(f"{option} must be at least 1, got {value}")
        if self.union not in UNION_RULES:
            raise ValueError(f"--union {self.union!r} is not one of {', '.join(UNION_RULES)}")


COMPOSITIONAL_DEFAULTS = CompositionalSettings()


@dataclass(frozen=True)
class Net2VecSettings:
    """Net2Vec's probes (Fong & Vedaldi 2018; docs/net2vec.md): the segmentation probe by SGD with momentum 0.9 on the
    paper's class-weighted loss (summed over an image's pixels), the classification probe on balanced classes. The
    epochs, learning rates and step size are unitscope's choices, recorded in ``meta.json``."""

    epochs: int = 30
    lr: float = 1e-4
    momentum: float = 0.9
    step_images: int = 16
    sparsity_epochs: int = 0
    classification_epochs: int = 200
    classification_lr: float = 0.1
    seed: int = 0

    def validate(self) -> None:
        for option, value in (("--epochs", self.epochs), ("--step-images", self.step_images),
                              ("classification_epochs", self.classification_epochs)):
            if value < 1:
                raise ValueError(f"{option} must be at least 1, got {value}")
        if self.sparsity_epochs < 0:
            raise ValueError(f"--sparsity-epochs must be at least 0, got {self.sparsity_epochs}")
        for option, value in (("--lr", self.lr), ("classification_lr", self.classification_lr)):
            if not value > 0:
                raise ValueError(f"{option} must be positive, got {value}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"Net2VecSettings.momentum must lie in [0, 1), got {self.momentum}")


NET2VEC_DEFAULTS = Net2VecSettings()
