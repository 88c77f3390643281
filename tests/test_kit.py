"""The kit's own plumbing: the cached environment, the lock file, the console script and the CI entry point."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from grader.assignments import REPO_ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_fresh_clone_reuses_the_cached_environment(tmp_path):
    """Does a clone whose requirement files are newer than the venv still count as set up (no 5 GB reinstall)?"""
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt", "requirements-lock.txt"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    later = time.time() + 3600
    for name in ("requirements.txt", "requirements-dev.txt", "requirements-lock.txt"):
        os.utime(tmp_path / name, (later, later))
    venv = subprocess.run(["make", "-s", "venv-path"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    if not os.path.exists(os.path.join(venv, ".segkit-ready")):
        pytest.skip("the environment of this checkout is not set up with make setup")
    assert subprocess.run(["make", "-q", "setup"], cwd=tmp_path).returncode == 0


def test_ci_runs_exactly_the_readme_test_command():
    """Does .ci/run call `make test` (the README's command) and nothing a fresh machine lacks?"""
    script = (REPO_ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands[-1] == "make test"
    assert "make test" in (REPO_ROOT / "README.md").read_text()


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_lock_pins_every_loose_requirement():
    """Does requirements-lock.txt pin every package of requirements(-dev).txt, torchvision at its pinned version and
    a torch that is not the local CPU-only 2.13.0 wheel (no matching torchvision exists for it)?"""
    lock = _pins(REPO_ROOT / "requirements-lock.txt")
    loose = []
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (REPO_ROOT / name).read_text(encoding="utf-8").splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                loose.append(re.split(r"[<>=!~\[; ]", line)[0].lower().replace("_", "-"))
    assert loose and not [name for name in loose if name not in lock]
    assert lock["torchvision"] == _pins(REPO_ROOT / "requirements.txt")["torchvision"]
    assert "torch" in lock and not lock["torch"].startswith("2.13.0")


def test_make_setup_installs_the_lock_and_picks_the_torch_build():
    """Does `make setup` install requirements-lock.txt, with a venv per lock hash and, for TORCH_VARIANT=cpu, the
    CPU-only index and without the lock's CUDA libraries?"""
    default = subprocess.run(
        ["make", "-n", "setup", "VENV_ROOT=/nonexistent"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout
    cpu = subprocess.run(
        ["make", "-n", "setup", "VENV_ROOT=/nonexistent", "TORCH_VARIANT=cpu"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    ).stdout
    assert "requirements-lock.txt" in default and "--extra-index-url" not in default
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in cpu and "^(nvidia-|triton==)" in cpu
    venvs = {re.search(r"/nonexistent/(venv-[^/ ]+)", text).group(1) for text in (default, cpu)}
    assert len(venvs) == 2, "each torch build gets its own environment"


@pytest.mark.slow
def test_pip_install_gives_the_segkit_command(tmp_path):
    """Does `pip install -e .` give a `segkit` console script whose verbs work (here: help and check)?"""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # The new environment sees this one's packages (setuptools to build with, nbformat for `check`) without
    # a download: a .pth file naming our site-packages.
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "segkit-test.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-e",
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    shown = subprocess.run([str(venv / "bin" / "segkit"), "--help"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0 and "new-assignment" in shown.stdout and "gradescope" in shown.stdout
    checked = subprocess.run(
        [str(venv / "bin" / "segkit"), "check"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
    )
    assert checked.returncode == 0 and "assignments complete" in checked.stdout, checked.stderr[-2000:]


def test_segkit_verbs_and_unknown_verb(capsys):
    """Does `segkit` list its verbs, pass a verb's options through, and refuse an unknown verb by name?"""
    from segkit.cli import VERBS, main

    assert {"grade", "generate", "check", "release", "gradescope", "mutants", "submit", "new-assignment"} <= set(VERBS)
    assert main(["frobnicate"]) == 2 and "unknown verb 'frobnicate'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["grade", "--help"])
    assert exit_info.value.code == 0 and "--unsafe-no-sandbox" in capsys.readouterr().out
