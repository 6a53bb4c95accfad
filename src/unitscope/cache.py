"""The user cache directory of unitscope: downloaded model weights, cached dataset checksums."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the cache directory.
CACHE_ENV = "UNITSCOPE_CACHE"


def cache_dir() -> Path:
    """``$UNITSCOPE_CACHE``, else ``$XDG_CACHE_HOME/unitscope``, else ``~/.cache/unitscope``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "unitscope"
