"""The lock file behind the published numbers, progress lines in logs, and scratch left by killed runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from unitscope.environment import canonical, installed_packages, lock_differences, lock_text, read_lock
from unitscope.io import PREFIX, make_scratch, remove_stale

REPO = Path(__file__).resolve().parents[1]


def test_lock_pins_every_dependency_of_the_project() -> None:
    lock = read_lock(REPO / "requirements.lock")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    for text in wanted:
        requirement = Requirement(text)
        name = canonical(requirement.name)
        assert name in lock, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(lock[name]), f"{name}=={lock[name]} does not satisfy {text}"
    assert "unitscope" not in lock  # installed from the work tree, not pinned


def test_lock_round_trip_keeps_platform_markers(tmp_path: Path) -> None:
    installed = installed_packages()
    text = lock_text(installed, "header line\n\nsecond")
    assert text.startswith("# header line\n#\n# second\n")
    path = tmp_path / "lock"
    path.write_text(text)
    assert read_lock(path) == installed
    if "triton" in installed:  # torch needs its CUDA stack only on Linux: the lock keeps torch's marker
        assert re.search(r"^triton==\S+ ; .*platform_system == \"Linux\"", text, re.M)
    assert re.search(r"^numpy==\S+$", text, re.M)


def test_lock_differences_name_each_package() -> None:
    assert lock_differences({"a": "1", "b": "2.0", "c": "3"}, {"a": "1", "b": "2.1", "d": "4", "c": "3+cpu"}) == [
        "b: 2.0 locked, 2.1 installed", "d: 4 installed, not in the lock"]
    assert lock_differences({"a": "1"}, {}) == ["a: 1 locked, not installed"]


def test_pins_for_other_platforms_do_not_apply(tmp_path: Path) -> None:
    path = tmp_path / "requirements.lock"
    path.write_text('numpy==2.0\nwinonly==1.0 ; sys_platform == "win32"\nhere==1.0 ; python_version >= "3.0"\n')
    assert read_lock(path) == {"numpy": "2.0", "here": "1.0"}  # this suite runs on Linux


def test_bad_lock_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "requirements.lock"
    path.write_text("numpy==2\ntorch>=2\n")
    with pytest.raises(ValueError, match=r"requirements.lock:2: expected NAME==VERSION"):
        read_lock(path)


def test_progress_writes_lines_with_rate_and_eta_when_not_a_terminal(tmp_path: Path) -> None:
    code = (
        "import time\n"
        "from unitscope.progress import progress\n"
        "for _ in progress(range(6), desc='tally', unit='img'):\n"
        "    time.sleep(0.12)\n"
    )
    env = {**os.environ, "UNITSCOPE_PROGRESS_SECONDS": "0.2"}
    with open(tmp_path / "log", "w") as log:  # a file, as in a Snakemake job log
        subprocess.run([sys.executable, "-c", code], stderr=log, check=True, env=env)
    text = (tmp_path / "log").read_text()
    assert "\r" not in text
    lines = text.splitlines()
    assert 2 <= len(lines) <= 6, lines
    assert re.fullmatch(r"tally: 6/6 img \(100%\), +[\d.]+img/s, elapsed 00:0\d, ETA 00:00", lines[-1]), lines[-1]
    assert all(line.startswith("tally: ") and "ETA" in line for line in lines)


def test_stale_scratch_of_a_dead_process_is_removed(tmp_path: Path, capsys) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = make_scratch(tmp_path).name.removeprefix(PREFIX).split("-")[0]
    stale = tmp_path / f"{PREFIX}{host}-{dead.pid}-abc"
    (stale / "cache").mkdir(parents=True)
    alive = tmp_path / f"{PREFIX}{host}-{os.getppid()}-def"
    other_host = tmp_path / f"{PREFIX}otherhost-{dead.pid}-ghi"
    alive.mkdir()
    other_host.mkdir()
    assert remove_stale(tmp_path) == [stale]
    assert not stale.exists() and alive.exists() and other_host.exists()
    assert f"removing {stale}, left behind by an interrupted run" in capsys.readouterr().err


def test_a_result_directory_replaces_an_older_one_whole_and_never_a_file(tmp_path: Path) -> None:
    from unitscope.io import staged_directory

    target = tmp_path / "result"
    (target / "old").mkdir(parents=True)
    with staged_directory(target) as staged:
        (staged / "new").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"] and [p.name for p in target.iterdir()] == ["new"]
    with pytest.raises(RuntimeError), staged_directory(target) as staged:
        (staged / "half").write_text("x")
        raise RuntimeError("killed half-way")
    assert [p.name for p in target.iterdir()] == ["new"] and sorted(p.name for p in tmp_path.iterdir()) == ["result"]
    kept = tmp_path / "notes.txt"
    kept.write_text("mine")
    with pytest.raises(ValueError, match=r"notes\.txt is a file, not a result directory"), staged_directory(kept):
        pass
    assert kept.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "result"]


def test_missing_real_data_skips_locally_and_fails_in_ci(monkeypatch) -> None:
    from realdata import real_data

    assert real_data("sanity-images/cat.jpg").is_file()  # vendored: found on any clone
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no/such/file is neither in tests/data/"):
        real_data("no/such/file")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI runs every real-data test"):
        real_data("no/such/file")


def test_cache_plan_fits_the_budget_smallest_first() -> None:
    from unitscope.pipeline import plan_caches

    needs = {"big": 60, "small": 10, "mid": 30, "unknown": None, "mid2": 30}
    assert plan_caches(needs, "auto", 75) == {"big": False, "small": True, "mid": True, "unknown": True, "mid2": True}
    assert plan_caches(needs, "auto", 69) == {"big": False, "small": True, "mid": True, "unknown": True, "mid2": False}
    assert set(plan_caches(needs, "disk", 0).values()) == {True}
    assert set(plan_caches(needs, "recompute", 1e12).values()) == {False}


def test_result_files_get_the_umask_s_permissions(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp (mode 0600); results on a shared filesystem must stay readable."""
    from unitscope.io import write_json

    mask = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "meta.json")
    finally:
        os.umask(mask)
    assert (tmp_path / "meta.json").stat().st_mode & 0o777 == 0o644
