"""Fetching the Broden dataset (spec §1.1): :func:`fetch_broden` downloads (with :mod:`unitscope.download`)
or takes a local copy of a Broden zip and extracts it atomically into ``<dest>/broden1_<S>/``.

The Broden host (``netdissect.csail.mit.edu``) is often unreachable; mirrors and ``from_zip`` exist for that.
"""

from __future__ import annotations

import sys
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from unitscope.download import ChecksumError, DownloadError, download_file, sha256_of
from unitscope.io import staged_directory
from unitscope.settings import BRODEN_VARIANTS
from unitscope.progress import progress

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
    for size in BRODEN_VARIANTS
}


class ArchiveError(ValueError):
    """A zip archive is corrupt or does not hold the expected dataset."""


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
    are ignored. Members are extracted (their CRCs checked) into a staged sibling of ``dest/folder``
    (:func:`unitscope.io.staged_directory`), which becomes ``dest/folder`` only when every member is out.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with zipfile.ZipFile(archive) as zf, staged_directory(dest / folder) as staging:
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
                    info.filename = info.filename.removeprefix(f"{folder}/")  # relative to the staged folder
                    if info.filename:
                        zf.extract(info, staging)
                    bar.update(info.file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError) as error:
        raise ArchiveError(f"{archive} is a corrupt zip archive ({error}); download it again") from None
    return dest / folder


def _release(variant: int) -> BrodenRelease:
    if variant not in BRODEN_RELEASES:
        raise ValueError(f"unknown Broden variant {variant}; expected one of {sorted(BRODEN_RELEASES)}")
    return BRODEN_RELEASES[variant]


def _say(message: str) -> None:
    """A status line on stderr that does not break a running progress bar."""
    tqdm.write(f"unitscope: {message}", file=sys.stderr)
