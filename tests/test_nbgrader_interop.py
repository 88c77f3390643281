"""The repository is an nbgrader course directory: real nbgrader commands on a temporary copy.

One fixture runs, on a copy of solutions/ + nbgrader_config.py (the real repository is never
touched; nbgrader's gradebook.db lives in the copy):

    nbgrader db assignment import assignments.csv     # every assignment, one process
    nbgrader generate_assignment '*' --force           # -> notebooks/<a>/<a>.ipynb in the copy
    nbgrader autograde patches --create --force        # submitted/example-solution/patches -> autograded/

and, at the same time, our grader on nbgrader's submitted/ layout
(`python -m grader <course>/submitted --assignment patches --out <course>/grades`).
nbgrader runs from the kit's environment: its bin/ goes first on PATH (nbgrader calls
`alembic` for the database), PYTHONPATH=repo lets the kernel import `starter`, SEGKIT_FAST=1.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.assignments import REPO_ROOT, assignment_names, load_assignment

pytestmark = pytest.mark.slow
ASSIGNMENTS = assignment_names()
AUTOGRADED = "patches"  # the cheapest assignment to execute end to end
STUDENT = "example-solution"


def _nbgrader(course: Path, env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert run.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    return run


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO_ROOT / "solutions", root / "solutions")
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    submitted = root / "submitted" / STUDENT / AUTOGRADED / f"{AUTOGRADED}.ipynb"
    submitted.parent.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "solutions" / AUTOGRADED / f"{AUTOGRADED}.ipynb", submitted)
    with open(root / "assignments.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["name", "duedate"], *[[name, ""] for name in ASSIGNMENTS]])

    env = dict(
        os.environ,
        PYTHONPATH=str(REPO_ROOT),
        SEGKIT_FAST="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    # Our grader reads nbgrader's submitted/ layout; it needs no database, so it runs meanwhile.
    ours = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "grader",
            str(root / "submitted"),
            "--assignment",
            AUTOGRADED,
            "--out",
            str(root / "grades"),
            "-j",
            "1",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _nbgrader(root, env, "db", "assignment", "import", "assignments.csv")
        _nbgrader(root, env, "generate_assignment", "*", "--force")
        autograde = _nbgrader(root, env, "autograde", AUTOGRADED, "--create", "--force", "--Execute.timeout=300")
        ours_output, _ = ours.communicate(timeout=300)
    finally:
        if ours.poll() is None:
            ours.kill()
    assert ours.returncode == 0, ours_output[-4000:]
    return {"root": root, "autograde": autograde.stderr, "ours": ours_output}


def _cells(path: Path) -> list[tuple]:
    notebook = nbformat.read(path, as_version=4)
    return [(cell.cell_type, cell.get("id"), cell.source, cell.metadata.get("nbgrader")) for cell in notebook.cells]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_generate_assignment_matches_committed_release(course, name):
    """Does `nbgrader generate_assignment` write our committed notebooks/<a>/<a>.ipynb
    (cell types, ids, sources, nbgrader metadata incl. checksums; the whole notebook once parsed)?"""
    generated = course["root"] / "notebooks" / name / f"{name}.ipynb"
    committed = REPO_ROOT / "notebooks" / name / f"{name}.ipynb"
    assert generated.exists(), course["autograde"][-2000:]
    generated_cells, committed_cells = _cells(generated), _cells(committed)
    assert len(generated_cells) == len(committed_cells)
    for index, (mine, theirs) in enumerate(zip(generated_cells, committed_cells)):
        assert mine == theirs, f"{name}: cell {index} differs between nbgrader and `make generate`"
    # Not byte-identical (nbgrader writes sources as lists of lines), but equal once parsed.
    assert nbformat.read(generated, as_version=4) == nbformat.read(committed, as_version=4)


def test_autograde_produces_autograded_notebook(course):
    """Does `nbgrader autograde` run the submitted example solution without an error in any cell?"""
    autograded = course["root"] / "autograded" / STUDENT / AUTOGRADED / f"{AUTOGRADED}.ipynb"
    assert autograded.exists(), course["autograde"][-3000:]
    notebook = nbformat.read(autograded, as_version=4)
    errors = [
        cell.metadata.get("nbgrader", {}).get("grade_id")
        for cell in notebook.cells
        if cell.cell_type == "code" and any(o.output_type == "error" for o in cell.get("outputs", []))
    ]
    assert not errors, f"cells with errors after autograde: {errors}"
    assert (course["root"] / "gradebook.db").exists()


def test_our_grader_reads_nbgrader_submitted(course):
    """Does `python -m grader <course>/submitted` grade nbgrader's layout, writing beside it?"""
    grades = course["root"] / "grades"
    with open(grades / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["student_id"], r["assignment"]) for r in rows] == [(STUDENT, AUTOGRADED)]
    assert float(rows[0]["total"]) == pytest.approx(load_assignment(AUTOGRADED).max_points)
    assert (grades / "feedback" / STUDENT / f"{AUTOGRADED}.md").exists()
    results = json.loads((grades / "gradescope" / AUTOGRADED / STUDENT / "results.json").read_text())
    assert results["score"] == pytest.approx(load_assignment(AUTOGRADED).max_points)
