"""The kit's own plumbing: the cached environment and the CI entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from grader.assignments import REPO_ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_fresh_clone_reuses_the_cached_environment(tmp_path):
    """Does a clone whose requirement files are newer than the venv still count as set up (no 5 GB reinstall)?"""
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    later = time.time() + 3600
    for name in ("requirements.txt", "requirements-dev.txt"):
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
