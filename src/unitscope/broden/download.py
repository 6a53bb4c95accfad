"""Checksummed downloads with resume, and fetching the Broden dataset (spec §1.1).

:func:`download_file` is the generic piece, reused for model weights and checkpoints: it tries a list of
URLs in order, resumes an interrupted transfer from ``<dest>.part`` with an HTTP ``Range`` request, retries
transient failures with exponential backoff, verifies the sha256 and gives the file its final name only
once it is complete and verified. :func:`fetch_broden` downloads (or takes a local copy of) a Broden zip and
extracts it atomically into ``<dest>/broden1_<S>/``.

The Broden host (``netdissect.csail.mit.edu``) is often unreachable; mirrors and ``from_zip`` exist for that.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import time
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import requests
from tqdm import tqdm

from unitscope.progress import progress
from urllib3.exceptions import NameResolutionError

CHUNK_SIZE = 1 << 16
#: HTTP statuses worth retrying: the server is overloaded or restarting.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
#: The metadata files every complete Broden directory holds (spec §1.2).
BRODEN_METADATA = ("index.csv", "category.csv", "label.csv")


@dataclass(frozen=True)
class BrodenRelease:
    """One published Broden variant: where it lives and, where known, its zip's sha256 and byte size."""

    variant: int
    url: str
    sha256: str | None = None
    size: int | None = None

    @property
    def folder(self) -> str:
        """The top folder of the zip and the dataset's directory name: ``broden1_<S>``."""
        return f"broden1_{self.variant}"

    @property
    def filename(self) -> str:
        return f"{self.folder}.zip"


#: The official Broden zips (spec §1.1). Their checksums and sizes have not been recorded yet (the host was
#: unreachable when this table was written): ``None`` means "compute and report at download".
BRODEN_RELEASES: dict[int, BrodenRelease] = {
    size: BrodenRelease(size, f"http://netdissect.csail.mit.edu/data/broden1_{size}.zip")
    for size in (224, 227, 384)
}


class DownloadError(OSError):
    """No URL yielded a complete, verified file. ``failures`` lists ``(url, reason)`` in the order tried."""

    def __init__(self, filename: str, failures: Sequence[tuple[str, str]], advice: str = "") -> None:
        self.failures = list(failures)
        tried = "; ".join(f"{url} ({reason})" for url, reason in self.failures) or "no URL given"
        super().__init__(f"could not download {filename}: {tried}" + (f". {advice}" if advice else ""))


class ChecksumError(ValueError):
    """A file's sha256 differs from the expected one."""


class ArchiveError(ValueError):
    """A zip archive is corrupt or does not hold the expected dataset."""


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


def fetch_broden(
    variant: int,
    dest: str | Path,
    mirrors: Sequence[str] = (),
    from_zip: str | Path | None = None,
    *,
    sha256: str | None = None,
    release: BrodenRelease | None = None,
    retries: int = 3,
    backoff: float = 1.0,
) -> Path:
    """The Broden dataset ``<dest>/broden1_<variant>``, downloaded and extracted if not already there.

    The zip comes from ``from_zip`` (a local copy, left untouched) or is downloaded from each of ``mirrors``
    in order, then the official URL. A mirror ending in ``.zip`` is used as is; otherwise it is a base URL
    to which ``broden1_<S>.zip`` is appended. The zip is checked against ``sha256`` (else the checksum
    recorded in ``release``, by default ``BRODEN_RELEASES[variant]``); when none is known its checksum is
    printed so it can be recorded. It is extracted into a temporary directory in ``dest`` that is renamed
    into place only when complete; a downloaded zip is deleted afterwards. An existing complete dataset is
    reported and returned as is.
    """
    release = release or _release(variant)
    dest = Path(dest)
    target = dest / release.folder
    if target.exists():
        missing = [name for name in BRODEN_METADATA if not (target / name).is_file()]
        if missing:
            raise FileExistsError(
                f"{target} exists but is not a complete Broden dataset (no {', '.join(missing)}); remove it and retry"
            )
        _say(f"{release.folder} is already present at {target}; nothing to download")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    expected = sha256.lower() if sha256 else release.sha256
    if from_zip is not None:
        archive = Path(from_zip)
        digest = sha256_of(archive)
        if expected is not None and digest != expected:
            raise ChecksumError(
                f"{archive} has sha256 {digest}, expected {expected}: not the {release.filename} release"
            )
    else:
        urls = [m if m.endswith(".zip") else f"{m.rstrip('/')}/{release.filename}" for m in mirrors] + [release.url]
        try:
            archive, digest, _ = download_file(
                urls, dest / release.filename, expected, size=release.size, retries=retries, backoff=backoff
            )
        except DownloadError as error:
            advice = (
                "Pass a mirror (--mirror URL), or download the zip on a machine that can reach it and use "
                "--from-zip PATH"
            )
            raise DownloadError(release.filename, error.failures, advice) from None
    try:
        extract_broden(archive, dest, release.folder)
    except ArchiveError:
        if from_zip is None:
            archive.unlink()  # a broken download: the next run must fetch it again
        raise
    if from_zip is None:
        archive.unlink()
    if expected is None:
        _say(f"sha256 of {release.filename} is {digest} — not yet recorded in unitscope; please report it")
    return target


def extract_broden(archive: str | Path, dest: str | Path, folder: str) -> Path:
    """Extract ``folder/`` of a Broden zip into ``dest/folder``, all or nothing.

    The archive must hold ``folder/index.csv`` (and the other metadata tables); entries outside ``folder/``
    are ignored. Members are extracted (their CRCs checked) into ``dest/.<folder>.partial``, which is
    renamed to ``dest/folder`` only when every member is out.
    """
    archive, dest = Path(archive), Path(dest)
    staging = dest / f".{folder}.partial"
    shutil.rmtree(staging, ignore_errors=True)  # left over from an interrupted run
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [info for info in zf.infolist() if info.filename.startswith(f"{folder}/")]
            names = {info.filename for info in members}
            missing = [name for name in BRODEN_METADATA if f"{folder}/{name}" not in names]
            if missing:
                tops = sorted({name.split("/", 1)[0] + "/" for name in zf.namelist()})
                raise ArchiveError(
                    f"{archive} is not a {folder} archive: no {folder}/{missing[0]} in it "
                    f"(top-level entries: {', '.join(tops[:5]) or 'none'})"
                )
            with progress(
                total=sum(info.file_size for info in members), unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"extracting {folder}",
            ) as bar:
                for info in members:
                    zf.extract(info, staging)
                    bar.update(info.file_size)
        os.replace(staging / folder, dest / folder)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError) as error:
        raise ArchiveError(f"{archive} is a corrupt zip archive ({error}); download it again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest / folder


def _release(variant: int) -> BrodenRelease:
    if variant not in BRODEN_RELEASES:
        raise ValueError(f"unknown Broden variant {variant}; expected one of {sorted(BRODEN_RELEASES)}")
    return BRODEN_RELEASES[variant]


def _say(message: str) -> None:
    """A status line on stderr that does not break a running progress bar."""
    tqdm.write(f"unitscope: {message}", file=sys.stderr)
