"""Where downloaded model weights are cached, and how they are fetched."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from unitscope.download import DownloadError, download_file
from unitscope.cache import CACHE_ENV, cache_dir


def fetch_weights(urls: Sequence[str], filename: str, sha256: str | None = None) -> Path:
    """The weight file ``<cache>/models/<filename>``, downloaded from ``urls`` unless already cached.

    With a known ``sha256`` the file is verified (a cached copy too); without one its checksum is
    printed to stderr, so it can be pinned.
    """
    dest = cache_dir() / "models" / filename
    try:
        download = download_file(urls, dest, sha256=sha256)
    except DownloadError as error:
        raise RuntimeError(
            f"{error}. Without internet, place the file at {dest} (or set ${CACHE_ENV} to a directory "
            f"holding models/{filename})."
        ) from error
    if sha256 is None:
        print(f"unitscope: {filename} sha256 {download.sha256} (not pinned)", file=sys.stderr)
    return download.path
