"""Checksummed HTTP downloads with resume: one module for Broden, model weights and checkpoints.

:func:`download_file` tries a list of URLs in order, resumes an interrupted transfer from ``<dest>.part``
with an HTTP ``Range`` request, retries transient failures with exponential backoff, verifies the sha256
and gives the file its final name only once it is complete and verified.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import requests
from urllib3.exceptions import NameResolutionError

from unitscope.progress import progress

CHUNK_SIZE = 1 << 16
#: HTTP statuses worth retrying: the server is overloaded or restarting.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
class DownloadError(OSError):
    """No URL yielded a complete, verified file. ``failures`` lists ``(url, reason)`` in the order tried."""

    def __init__(self, filename: str, failures: Sequence[tuple[str, str]], advice: str = "") -> None:
        self.failures = list(failures)
        tried = "; ".join(f"{url} ({reason})" for url, reason in self.failures) or "no URL given"
        super().__init__(f"could not download {filename}: {tried}" + (f". {advice}" if advice else ""))


class ChecksumError(ValueError):
    """A file's sha256 differs from the expected one."""


class Download(NamedTuple):
    """A completed download: the final path, its hex sha256 and the URL it came from (``None``: already there)."""

    path: Path
    sha256: str
    url: str | None


class _Failure(Exception):
    """One failed attempt at one URL; ``transient`` failures are retried with backoff."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.transient = transient


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    urls: Sequence[str],
    dest: str | Path,
    sha256: str | None = None,
    *,
    size: int | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
) -> Download:
    """Download ``dest`` from the first of ``urls`` that delivers a complete file with the expected checksum.

    The transfer goes to ``<dest>.part``; an interrupted transfer (this call or an earlier run) is resumed
    with ``Range: bytes=N-`` when the server supports it, else restarted. Timeouts, dropped connections and
    HTTP 408/429/5xx are retried ``retries`` times per URL, sleeping ``backoff * 2**k`` seconds; DNS failures,
    refused connections and other HTTP errors move straight on to the next URL, which resumes the same
    partial file (mirrors serve the same bytes; the checksum catches one that does not). A file whose sha256
    is wrong is deleted and the next URL tried, as is a server offering other than ``size`` bytes (when
    given). Only a verified file is renamed to ``dest``; an existing ``dest`` is kept if it verifies (or if
    no ``sha256`` is given).

    Returns the final path, its sha256 (so callers can report checksums not yet pinned) and the URL used.
    Raises :class:`DownloadError` (an ``OSError``) naming every URL tried and why it failed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha256 = sha256.lower() if sha256 else None
    if dest.is_file():
        digest = sha256_of(dest)
        if sha256 is None or digest == sha256:
            return Download(dest, digest, None)
        dest.unlink()  # a stale or damaged earlier copy
    part = dest.with_name(dest.name + ".part")
    failures: list[tuple[str, str]] = []
    with requests.Session() as session:
        session.headers["Accept-Encoding"] = "identity"  # byte offsets must match the file, not a gzip stream
        for url in urls:
            try:
                _transfer_with_retries(session, url, part, size, retries, backoff, timeout)
            except _Failure as failure:
                failures.append((url, str(failure)))
                continue
            digest = sha256_of(part)
            if sha256 is not None and digest != sha256:
                part.unlink()
                failures.append((url, f"checksum mismatch: got sha256 {digest}, expected {sha256}; file removed"))
                continue
            os.replace(part, dest)
            return Download(dest, digest, url)
    raise DownloadError(dest.name, failures)


def _transfer_with_retries(
    session: requests.Session, url: str, part: Path, size: int | None, retries: int, backoff: float, timeout: float
) -> None:
    for attempt in range(retries + 1):
        try:
            _transfer(session, url, part, size, timeout)
            return
        except requests.RequestException as error:
            failure = _classify(error)
        except _Failure as error:
            failure = error
        if not failure.transient or attempt == retries:
            if attempt:
                raise _Failure(f"{failure} (after {attempt + 1} attempts)", transient=False) from None
            raise failure
        time.sleep(backoff * 2**attempt)


def _transfer(session: requests.Session, url: str, part: Path, size: int | None, timeout: float) -> None:
    """One request: append to ``part`` from where it stops (or start over), until the body ends."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
        status = response.status_code
        if status == 416 and offset:
            if _content_range(response)[1] == offset:
                return  # the earlier transfer had already finished
            part.unlink()
            raise _Failure("server refused to resume the partial file; restarting", transient=True)
        if status == 206 and offset:
            start, total = _content_range(response)
            if start != offset:
                part.unlink()
                raise _Failure(f"server resumed at byte {start} instead of {offset}; restarting", transient=True)
            mode = "ab"
        elif status == 200:
            offset, mode = 0, "wb"  # no Range support (or nothing to resume): start over
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise _Failure(f"HTTP {status} {response.reason}".rstrip(), transient=status in _TRANSIENT_STATUS)
        if size is not None and total is not None and total != size:
            raise _Failure(f"server offers {total} bytes, expected {size}", transient=False)
        with open(part, mode) as handle, progress(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5]
        ) as bar:
            for chunk in response.iter_content(CHUNK_SIZE):
                handle.write(chunk)
                bar.update(len(chunk))
    received = part.stat().st_size
    if total is not None and received != total:
        raise _Failure(f"connection closed after {received} of {total} bytes", transient=True)


def _content_range(response: requests.Response) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` from ``Content-Range: bytes A-B/T`` (or ``bytes */T``); ``None`` if absent."""
    value = response.headers.get("Content-Range", "")
    try:
        span, total = value.split(" ", 1)[1].split("/")
        start = None if span == "*" else int(span.split("-")[0])
        return start, (None if total == "*" else int(total))
    except (IndexError, ValueError):
        return None, None


def _classify(error: requests.RequestException) -> _Failure:
    """A short reason for a failed request, and whether retrying could help."""
    causes = _causes(error)
    if any(isinstance(c, (NameResolutionError, socket.gaierror)) for c in causes):
        return _Failure("DNS lookup failed: offline, or the host no longer exists", transient=False)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return _Failure("connection refused: the server is down", transient=False)
    if isinstance(error, requests.ConnectTimeout):
        return _Failure("connection timed out", transient=True)
    if isinstance(error, requests.Timeout):
        return _Failure("server stopped sending data (read timeout)", transient=True)
    if isinstance(error, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return _Failure("connection lost", transient=True)
    return _Failure(f"{type(error).__name__}: {error}", transient=False)


def _causes(error: BaseException) -> list[BaseException]:
    """The error, its ``__cause__``/``__context__`` chain and urllib3's wrapped ``reason`` objects."""
    seen: list[BaseException] = []
    pending: list[object] = [error]
    while pending:
        item = pending.pop()
        if isinstance(item, BaseException) and not any(item is s for s in seen):
            seen.append(item)
            pending.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return seen


