"""End-to-end proof of the grader: examples, single-bug mutants, hostile code, outputs, resume.

They read the shared grading run of tests/conftest.py: per assignment the four bundled examples
and, for the `proof` test below (make proof), one notebook per entry of BUGS (the solution with
that single bug).
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from grader.assignments import REPO_ROOT, assignment_names, load_assignment
from grader.sandbox import PROTECTION_TEXT
from segkit.proof import assignment_module
from segkit.proof.hostile import corpus_assignment

ASSIGNMENTS = assignment_names()
pytestmark = pytest.mark.slow


def _examples_module(name):
    return assignment_module(name, "examples")


@pytest.fixture(scope="session")
def graded(grading_run):
    """The shared grading run (tests/conftest.py); it must have finished without errors."""
    run = grading_run["run"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return grading_run


def _units(result):
    return {gid: (u["points"], u["max_points"]) for gid, u in result["units"].items()}


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_solution_gets_full_marks(graded, name):
    """Does the reference solution get every point of every unit?"""
    result = graded["results"][("example-solution", name)]
    failed = {
        gid: [t["detail"] or t["message"] for t in u["tests"] if not t["passed"]]
        for gid, u in result["units"].items()
        if u["points"] < u["max_points"]
    }
    assert not failed
    assert result["total"] == result["max"] == load_assignment(name).max_points > 0


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_untouched_notebook_scores_zero_without_crashing(graded, name):
    """Does the notebook as released score zero on every unit, each with a 'not implemented' message?"""
    result = graded["results"][("example-untouched", name)]
    assert result["total"] == 0
    assert result["worker_restarts"] == 0
    for grade_id, unit in result["units"].items():
        assert unit["tests"], grade_id
        assert all("not implemented yet" in t["detail"] for t in unit["tests"]), grade_id


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_buggy_example_loses_points_on_every_unit(graded, name):
    """Does a typical bug in every unit cost points in every unit?"""
    result = graded["results"][("example-buggy", name)]
    kept = [gid for gid, (points, maximum) in _units(result).items() if points >= maximum]
    assert not kept, f"bugs not caught in {kept}"


@pytest.mark.proof
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_each_single_bug_loses_points_on_its_own_unit_only(graded, name):
    """Does each single-bug mutant lose points on its own unit and keep every other unit's points?"""
    for grade_id in _examples_module(name).BUGS:
        result = graded["results"][(f"mutant-{grade_id}", name)]
        units = _units(result)
        checked = set(result.get("checked_units", units))  # expensive units: see conftest.py
        assert units[grade_id][0] < units[grade_id][1], f"mutant of {grade_id} was not caught"
        others = {gid: p for gid, p in units.items() if gid != grade_id and gid in checked and p[0] < p[1]}
        assert not others, f"mutant of {grade_id} also cost points on {others}"


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n == corpus_assignment() else pytest.mark.proof) for n in ASSIGNMENTS]
)
def test_hostile_example_earns_nothing_and_disturbs_nobody(graded, name):
    """Does a submission that attacks the grader in every unit score zero, while others keep their grades?"""
    result = graded["results"][("example-hostile", name)]
    assert result["total"] == 0, {gid: p for gid, p in _units(result).items() if p[0]}
    # Graded in the same parallel run, the solution is unaffected (checked in full above too).
    assert graded["results"][("example-solution", name)]["total"] == result["max"]
    # Nothing the hostile cells tried to write landed anywhere we can see.
    assert not Path("/tmp/grades.csv").exists()
    written = {p.relative_to(graded["out"]).parts[0] for p in graded["out"].rglob("*")}
    assert graded["listener"].received == []
    assert written <= {
        "results",
        "logs",
        "feedback",
        "gradescope",
        "grades.csv",
        "report.md",
        "submissions",
        "run.json",
        "intake.csv",
    }
    rows = list(csv.DictReader((graded["out"] / "grades.csv").open()))
    assert [r["total"] for r in rows if r["student_id"] == "example-hostile" and r["assignment"] == name] == ["0"]


def test_every_protection_is_reported(graded):
    """Does the run report say which protections were active around student code?"""
    report = (graded["out"] / "report.md").read_text()
    assert "separate worker process" in report
    for result in graded["results"].values():
        assert set(result["protections"]) == set(PROTECTION_TEXT)  # the grader refuses to run with fewer
        assert result["unsafe_no_sandbox"] is False
    assert "NOT active" not in report and "unsafe" not in report


def test_gradebook_has_one_row_per_student_and_assignment(graded):
    """Does grades.csv have the documented columns and a row per (student, assignment)?"""
    rows = list(csv.DictReader((graded["out"] / "grades.csv").open()))
    assert len(rows) == len(graded["results"])
    header = list(rows[0])
    assert header[:2] == ["student_id", "assignment"] and header[-3:] == ["total", "max", "notes"]
    for name in ASSIGNMENTS:
        for unit in load_assignment(name).auto_units:
            assert unit.grade_id in header
    solution = next(r for r in rows if r["student_id"] == "example-solution" and r["assignment"] == ASSIGNMENTS[0])
    assert float(solution["total"]) == float(solution["max"]) > 0


def test_feedback_and_gradescope_results_never_show_hidden_code(graded):
    """Are feedback files and Gradescope results written, informative, and free of hidden test code?"""
    for (student, name), result in graded["results"].items():
        markdown = (graded["out"] / "feedback" / student / f"{name}.md").read_text()
        html = (graded["out"] / "feedback" / student / f"{name}.html").read_text()
        gradescope = json.loads((graded["out"] / "gradescope" / name / student / "results.json").read_text())
        assert gradescope["score"] == result["total"]
        assert {"name", "score", "max_score", "output", "visibility"} <= set(gradescope["tests"][0])
        assert sum(t["max_score"] for t in gradescope["tests"]) == result["max"]
        for text in (markdown, html, json.dumps(gradescope)):
            assert "def probe_" not in text and "ref.call" not in text and "sub.call" not in text
    buggy = (graded["out"] / "feedback" / "example-buggy" / f"{ASSIGNMENTS[0]}.md").read_text()
    assert "failed" in buggy


def test_rerun_resumes_and_gives_identical_results(graded):
    """Does a second run reuse every finished result and reproduce the same gradebook?"""
    before = (graded["out"] / "grades.csv").read_text()
    run = subprocess.run(
        graded["command"], cwd=REPO_ROOT, env=graded["env"], capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"Reusing {len(graded['results'])} up-to-date result(s); grading 0." in run.stdout
    assert (graded["out"] / "grades.csv").read_text() == before


def test_regrading_one_student_changes_only_that_row(graded, tmp_path):
    """After a student resubmits, does --student regrade just them?"""
    name = corpus_assignment()  # the cheapest to grade
    path = graded["submitted"] / "example-untouched" / name / f"{name}.ipynb"
    original = path.read_text()
    try:
        solution = (REPO_ROOT / "solutions" / name / f"{name}.ipynb").read_text()
        path.write_text(solution)
        run = subprocess.run(
            [*graded["command"], "--student", "example-untouched"],
            cwd=REPO_ROOT,
            env=graded["env"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        rows = {(r["student_id"], r["assignment"]): r for r in csv.DictReader((graded["out"] / "grades.csv").open())}
        assert float(rows[("example-untouched", name)]["total"]) == load_assignment(name).max_points
        assert float(rows[("example-buggy", name)]["total"]) < load_assignment(name).max_points
    finally:
        path.write_text(original)
