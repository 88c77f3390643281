"""Memory parked in a worker's tmpfs (/scratch, /dev/shm) counts against its memory cap: under a cgroup (as
root) and under the grader's watchdog (as an ordinary uid), where no process's resident size shows it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sandbox_helpers import as_user_command

from grader.assignments import REPO_ROOT

pytestmark = [pytest.mark.slow]
SCRIPT = Path(__file__).with_name("tmpfs_bomb_script.py")


def _run(user: bool) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(REPO_ROOT), "LANG": "C.UTF-8"}
    argv, stage = [sys.executable, str(SCRIPT)], None
    if user:
        argv, stage = as_user_command(argv, env=env)
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, cwd="/")
    finally:
        if stage:
            shutil.rmtree(stage, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("who", ["root", "user"])
def test_a_tmpfs_parked_memory_bomb_is_killed(who):
    """Does a worker that parks 450 MB in its tmpfs and then allocates up to 150 MB past its cap get killed
    for memory, while the same allocation without the parked files survives?"""
    if os.geteuid() != 0:
        pytest.skip("borrowing an ordinary uid needs root (CI runs as root)")
    outcome = _run(who == "user")
    assert outcome["caps"] == ("watchdog" if who == "user" else outcome["caps"])
    assert outcome["control"] == "survived", outcome
    assert outcome["parked"] == "WorkerOutOfMemory", outcome
