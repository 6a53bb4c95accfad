"""One source of truth for defaults and limits: the command line reads unitscope.settings and
unitscope.probe; the workflow's config schema cannot import Python, so this test holds it to them."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from unitscope import probe
from unitscope.cli import main
from unitscope.settings import CACHE_POLICIES, DEVICES, DISSECT_DEFAULTS, NORMALIZATIONS, PRESENCE_RULES

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())


def _option(command: str, name: str) -> click.Option:
    return next(p for p in main.commands[command].params if p.name == name)


def test_dissect_defaults_agree() -> None:
    dissect = SCHEMA["properties"]["dissect"]["properties"]
    for key in ("quantile", "netdissect_level", "iou_threshold", "presence", "top_k", "null_permutations", "null_seed"):
        assert dissect[key]["default"] == getattr(DISSECT_DEFAULTS, key), key
    assert SCHEMA["properties"]["batch_size"]["default"] == DISSECT_DEFAULTS.batch_size
    # The command line reads DISSECT_DEFAULTS itself; the schema cannot, so these comparisons hold them together.
    assert SCHEMA["properties"]["cache"]["default"] == DISSECT_DEFAULTS.cache
    assert tuple(SCHEMA["properties"]["cache"]["enum"]) == CACHE_POLICIES
    assert SCHEMA["properties"]["cache_budget_gb"]["default"] == DISSECT_DEFAULTS.cache_budget_gb


def test_choices_agree() -> None:
    assert tuple(SCHEMA["properties"]["dissect"]["properties"]["presence"]["enum"]) == PRESENCE_RULES
    assert tuple(SCHEMA["properties"]["device"]["enum"]) == DEVICES
    normalize = SCHEMA["properties"]["models"]["additionalProperties"]["properties"]["normalize"]["enum"]
    assert tuple(normalize) == NORMALIZATIONS


def test_probe_limits_agree() -> None:
    dataset = SCHEMA["properties"]["datasets"]["additionalProperties"]["properties"]
    assert dataset["size"]["minimum"] == probe.MIN_SIZE
    assert dataset["images"]["minimum"] == _option("probe-dataset", "images").type.min == 1


def test_saliency_defaults_agree() -> None:
    from unitscope.cli.saliency import DEFAULT_SIZE
    from unitscope.saliency import digits
    from unitscope.settings import (
        EXPLAINED_CLASSES,
        RANDOMIZATION_ORDERS,
        RANDOMIZATION_TESTS,
        SALIENCY_DEFAULTS,
        SALIENCY_METHODS,
        SANITY_DEFAULTS,
        SANITY_TESTS,
    )
    from unitscope.train import LABELS

    saliency = SCHEMA["properties"]["saliency"]["properties"]
    for key in ("smoothgrad_samples", "smoothgrad_noise", "ig_steps", "seed"):
        assert saliency[key]["default"] == getattr(SALIENCY_DEFAULTS, key), key
    assert saliency["size"]["default"] == DEFAULT_SIZE
    assert tuple(SCHEMA["$defs"]["saliency_methods"]["items"]["enum"]) == SALIENCY_METHODS
    sanity = SCHEMA["$defs"]["sanity"]["properties"]
    assert tuple(sanity["tests"]["items"]["enum"]) == SANITY_TESTS
    assert tuple(sanity["tests"]["default"]) == RANDOMIZATION_TESTS == SANITY_DEFAULTS.tests
    assert tuple(sanity["order"]["enum"]) == RANDOMIZATION_ORDERS and tuple(sanity["explain"]["enum"]) == EXPLAINED_CLASSES
    for key in ("order", "explain", "reset_statistics", "figure_images"):
        assert sanity[key]["default"] == getattr(SANITY_DEFAULTS, key), key
    assert saliency["digits"]["properties"]["epochs"]["default"] == digits.EPOCHS
    train = SCHEMA["properties"]["models"]["additionalProperties"]["properties"]["train"]["properties"]
    assert tuple(train["labels"]["enum"]) == LABELS == digits.LABELS


def test_visualize_defaults_agree() -> None:
    from unitscope.settings import VISUALIZATION_METHODS, VISUALIZE_DEFAULTS

    visualize = SCHEMA["properties"]["visualize"]["properties"]
    for key in ("size", "input_size", "steps", "pixel_steps", "seed"):
        assert visualize[key]["default"] == getattr(VISUALIZE_DEFAULTS, key), key
        assert _option("visualize", key).default == getattr(VISUALIZE_DEFAULTS, key), key
    run = visualize["runs"]["additionalProperties"]["properties"]
    assert tuple(run["methods"]["items"]["enum"]) == VISUALIZATION_METHODS
    assert tuple(run["methods"]["default"]) == VISUALIZE_DEFAULTS.methods
    assert run["top_images"]["default"] == _option("visualize", "top_images").default == 0


def test_compositional_defaults_agree() -> None:
    from unitscope.settings import COMPOSITIONAL_DEFAULTS, UNION_RULES

    compositional = SCHEMA["properties"]["compositional"]["properties"]
    for key in ("max_length", "beam", "union"):
        assert compositional[key]["default"] == getattr(COMPOSITIONAL_DEFAULTS, key), key
        assert _option("compositional", key).default == getattr(COMPOSITIONAL_DEFAULTS, key), key
    assert tuple(compositional["union"]["enum"]) == UNION_RULES


def test_net2vec_defaults_agree() -> None:
    from unitscope.settings import NET2VEC_DEFAULTS

    net2vec = SCHEMA["properties"]["net2vec"]["properties"]
    for key in ("epochs", "lr", "seed", "step_images", "sparsity_epochs"):
        assert net2vec[key]["default"] == getattr(NET2VEC_DEFAULTS, key), key
        assert _option("net2vec", key).default == getattr(NET2VEC_DEFAULTS, key), key
