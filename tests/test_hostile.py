"""The hostile corpus (grader/hostile.py), graded next to an untouched solution: nothing works.

Runs on the patches assignment (its checks take milliseconds, so the corpus stays cheap); the
attacks act on the worker, the sandbox and the notebook format, which all assignments share,
and every assignment's bundled example-hostile is graded in tests/test_grading.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from grader.hostile import ATTACKS, MALFORMED, TARGETS, build_corpus
from grader.notebooks import REPO_ROOT, load_assignment
from grader.sandbox import host_capabilities

pytestmark = pytest.mark.slow
ASSIGNMENT = "patches"


@pytest.fixture(scope="module")
def listener():
    """A TCP server on the host's loopback that records any connection the corpus makes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.5)
    received = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            received.append(connection.recv(100))
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join(timeout=2)
    server.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, listener):
    port, received = listener
    root = tmp_path_factory.mktemp("hostile")
    submissions = root / "submissions"
    manifest = build_corpus(ASSIGNMENT, submissions, port=port)
    shutil.copy(REPO_ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", submissions / "control-solution.ipynb")
    out = root / "grades"
    marker = Path("/tmp/segkit-hostile-was-here")
    marker.unlink(missing_ok=True)
    command = [sys.executable, "-m", "grader", str(submissions), "--assignment", ASSIGNMENT, "--out", str(out),
               "-j", "2", "--cell-timeout", "20", "--probe-timeout-cap", "20", "--memory-mb", "2048"]
    run = subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
                         capture_output=True, text=True, timeout=1200)
    results = {p.stem: json.loads(p.read_text()) for p in (out / "results" / ASSIGNMENT).glob("*.json")}
    return {"manifest": manifest, "results": results, "run": run, "out": out, "received": received,
            "marker": marker}


def test_the_run_finishes_and_grades_everyone(corpus):
    """Does the grading run finish normally with a result for every submission?"""
    assert corpus["run"].returncode == 0, corpus["run"].stderr[-3000:]
    assert set(corpus["results"]) == set(corpus["manifest"]) | {"control-solution"}


def test_control_solution_is_unaffected(corpus):
    """Does an honest submission graded alongside the corpus still get full marks?"""
    control = corpus["results"]["control-solution"]
    assert control["total"] == control["max"] == load_assignment(ASSIGNMENT).max_points


@pytest.mark.parametrize("student", [f"attack-{a.name}" for a in ATTACKS] + [f"malformed-{k}" for k in MALFORMED])
def test_each_attack_earns_nothing(corpus, student):
    """Does each hostile or malformed submission earn nothing for what it attacks (and no more than honest work)?"""
    expect = corpus["manifest"][student]["expect"]
    result = corpus["results"][student]
    target = TARGETS[ASSIGNMENT]
    units = result["units"]
    if expect == "all_zero":
        assert result["total"] == 0 and result["notebook_error"]
    elif expect == "full":
        if student == "attack-read_reference" and not host_capabilities()["hidden_files"]:
            pytest.skip("this host cannot hide files from the worker (no mount namespace)")
        assert result["total"] == result["max"], {g: u["tests"][0]["detail"] for g, u in units.items()
                                                  if u["points"] < u["max_points"]}
    else:
        assert units[target]["points"] == 0
        if expect == "zero":
            others = {g: u["points"] for g, u in units.items() if g != target and u["points"] < u["max_points"]}
            assert not others, f"{student} cost other units: {others}"


def test_nothing_escaped_the_sandbox(corpus):
    """Did no attack reach the host's loopback, write outside its scratch dir, or touch the repository?"""
    assert corpus["received"] == []
    assert not corpus["marker"].exists()
    assert not (REPO_ROOT / "solutions" / "x.txt").exists()
    assert not (REPO_ROOT / "grades" / "grades.csv").exists() or "hostile" not in (
        REPO_ROOT / "grades" / "grades.csv").read_text()
    lines = (corpus["out"] / "grades.csv").read_text().splitlines()
    assert len(lines) == len(corpus["results"]) + 1 and not any("1000" in line for line in lines)


def test_protections_are_reported(corpus):
    """Does the report name the protections that were active?"""
    report = (corpus["out"] / "report.md").read_text()
    assert "separate worker process" in report and "time limits" in report
