"""One source of truth for defaults and limits: the settings module, the command line and the workflow's
config schema agree (the schema cannot import Python, so this test holds them together)."""

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
    for key in ("quantile", "netdissect_level", "iou_threshold", "presence", "top_k"):
        assert dissect[key]["default"] == getattr(DISSECT_DEFAULTS, key), key
    assert SCHEMA["properties"]["batch_size"]["default"] == DISSECT_DEFAULTS.batch_size
    assert SCHEMA["properties"]["cache"]["default"] == DISSECT_DEFAULTS.cache
    assert tuple(SCHEMA["properties"]["cache"]["enum"]) == CACHE_POLICIES == tuple(_option("dissect", "cache").type.choices)
    assert SCHEMA["properties"]["cache_budget_gb"]["default"] == DISSECT_DEFAULTS.cache_budget_gb
    assert _option("dissect", "cache_budget").default == DISSECT_DEFAULTS.cache_budget_gb
    for key in ("iou_threshold", "presence", "top_k", "batch_size"):
        assert _option("dissect", key).default == getattr(DISSECT_DEFAULTS, key), key
    assert _option("extract", "batch_size").default == DISSECT_DEFAULTS.batch_size
    assert str(DISSECT_DEFAULTS.quantile) in _option("dissect", "quantile").help


def test_choices_agree() -> None:
    assert tuple(SCHEMA["properties"]["dissect"]["properties"]["presence"]["enum"]) == PRESENCE_RULES
    assert tuple(_option("dissect", "presence").type.choices) == PRESENCE_RULES
    assert tuple(SCHEMA["properties"]["device"]["enum"]) == DEVICES
    normalize = SCHEMA["properties"]["models"]["additionalProperties"]["properties"]["normalize"]["enum"]
    assert tuple(normalize) == NORMALIZATIONS == tuple(_option("dissect", "normalize").type.choices)


def test_probe_limits_agree() -> None:
    dataset = SCHEMA["properties"]["datasets"]["additionalProperties"]["properties"]
    assert dataset["size"]["minimum"] == probe.MIN_SIZE == _option("probe-dataset", "size").type.min
    assert _option("probe-dataset", "size").default == probe.DEFAULT_SIZE
    assert _option("probe-dataset", "images").default == probe.DEFAULT_IMAGES
    assert dataset["images"]["minimum"] == _option("probe-dataset", "images").type.min == 1
