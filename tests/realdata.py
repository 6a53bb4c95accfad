"""Where the tests find real reference data: vendored under tests/data/, else the project's ../shared/realdata/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

VENDORED = Path(__file__).resolve().parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def real_data(relative: str) -> Path:
    """The path of ``relative`` (e.g. ``sanity-images/cat.jpg``); skips the test where neither place has it,
    and fails it under ``CI=true``, where every real-data test must run."""
    for root in (VENDORED, SHARED):
        if (root / relative).exists():
            return root / relative
    message = f"real data {relative} is neither in tests/data/ nor in {SHARED}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI runs every real-data test)")
    pytest.skip(message)
