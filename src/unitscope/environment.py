"""The Python environment behind a result: the lock file the published numbers come from, and what is installed.

``requirements.lock`` pins the exact version of every distribution the default run and the tests use
(Linux x86-64, CPython 3.11, as CI runs), so that a fresh machine reproduces the README's numbers:
training and LAPACK-based steps (the rotation's Schur form) move with package versions. ``make setup``
installs from it, ``provenance.json`` records its hash and the installed packages, and::

    python -m unitscope.environment lock --out requirements.lock   # write the lock from this environment
    python -m unitscope.environment check requirements.lock        # exit 1 and list what differs from it

Distributions that other packages require only under an environment marker (torch's CUDA libraries on
Linux) keep that marker in the lock, so it also installs where those do not exist.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement

#: The lock file, relative to the repository root.
LOCK_FILE = "requirements.lock"


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name (``PyYAML`` → ``pyyaml``, ``typing_extensions`` → ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages(exclude: tuple[str, ...] = ("unitscope", "pip", "setuptools", "wheel")) -> dict[str, str]:
    """``{canonical name: version}`` of every distribution installed in this interpreter, sorted by name."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonical(name) not in exclude:
            found[canonical(name)] = dist.version
    return dict(sorted(found.items()))


def _markers() -> dict[str, str]:
    """Marker of each distribution that the installed packages require only conditionally (``{name: marker}``).

    A requirement's marker, or else the marker of the package that requires it (an ``extra`` clause is the
    requirer's own choice and is dropped), propagated from the packages nothing requires; a distribution
    required unconditionally anywhere gets no marker.
    """
    edges = []
    for dist in metadata.distributions():
        parent = canonical(dist.metadata["Name"] or "")
        for text in dist.requires or ():
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            marker = _EXTRA.sub("", str(requirement.marker)).strip() if requirement.marker else ""
            edges.append((parent, canonical(requirement.name), marker.removeprefix("and ").removesuffix(" and")))
    children = {child for _, child, _ in edges}
    marker_of = {parent: "" for parent, _, _ in edges if parent not in children}
    changed = True
    while changed:
        changed = False
        for parent, child, marker in edges:
            if parent not in marker_of or marker_of.get(child) == "":
                continue
            candidate = marker or marker_of[parent]
            if child not in marker_of or candidate == "":
                marker_of[child] = candidate
                changed = True
    return {name: marker for name, marker in marker_of.items() if marker}


_EXTRA = re.compile(r"(\band\s+)?\bextra\s*==\s*['\"][^'\"]*['\"](\s+and\b)?")


def lock_text(packages: dict[str, str], header: str) -> str:
    """The lock file's text: a comment header, then ``name==version[; marker]`` per line."""
    markers = _markers()
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for name, version in packages.items():
        marker = markers.get(name)
        lines.append(f"{name}=={version}" + (f" ; {marker}" if marker else ""))
    return "\n".join(lines) + "\n"


def read_lock(path: str | Path) -> dict[str, str]:
    """``{canonical name: version}`` of the pins of a lock file that apply to this interpreter and platform
    (a pin whose environment marker is false here, such as torch's CUDA libraries off Linux, is left out)."""
    pins = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, _, marker = line.partition(";")
        name, sep, version = requirement.strip().partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"{path}:{number}: expected NAME==VERSION, got {line!r}")
        try:
            applies = Marker(marker).evaluate() if marker.strip() else True
        except InvalidMarker as error:
            raise ValueError(f"{path}:{number}: bad environment marker ({error})") from None
        if applies:
            pins[canonical(name.strip())] = version.strip()
    return pins


def lock_differences(lock: dict[str, str], installed: dict[str, str]) -> list[str]:
    """One line per package whose installed version is not the locked one (missing, extra or moved)."""
    lines = []
    for name in sorted(set(lock) | set(installed)):
        locked, have = lock.get(name), installed.get(name)
        if locked is None:
            lines.append(f"{name}: {have} installed, not in the lock")
        elif have is None:
            lines.append(f"{name}: {locked} locked, not installed")
        elif _base(have) != _base(locked):
            lines.append(f"{name}: {locked} locked, {have} installed")
    return lines


def _base(version: str) -> str:
    """A version without its local label (``2.14.1+cpu`` → ``2.14.1``), as ``==`` compares them."""
    return version.split("+", 1)[0]


HEADER = """Exact versions behind the published results (README) and CI: Linux x86-64, CPython 3.11.
Written by `python -m unitscope.environment lock --out requirements.lock` from an environment made by
`pip install -e '.[test]'`; installed by `make setup`. Ranges for library users stay in pyproject.toml.
Re-resolve the newest versions and see what moved: `make test-latest` (docs/workflow.md, Environments)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unitscope.environment", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("lock", help="write the lock file from the installed packages")
    write.add_argument("--out", default=LOCK_FILE)
    check = commands.add_parser("check", help="compare the installed packages with a lock file")
    check.add_argument("lock", nargs="?", default=LOCK_FILE)
    args = parser.parse_args(argv)
    if args.command == "lock":
        Path(args.out).write_text(lock_text(installed_packages(), HEADER), encoding="utf-8")
        print(f"wrote {args.out}")
        return 0
    try:
        lock = read_lock(args.lock)
    except (OSError, ValueError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    differences = lock_differences(lock, installed_packages())
    for line in differences:
        print(line)
    if differences:
        print(f"{len(differences)} packages differ from {args.lock}", file=sys.stderr)
        return 1
    print(f"every installed package matches {args.lock} ({len(lock)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
