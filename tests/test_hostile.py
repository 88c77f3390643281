"""The hostile corpus (segkit/proof/hostile.py), graded next to an untouched solution: nothing works.

The corpus runs on the patches assignment (its checks take milliseconds, so it stays cheap);
the attacks act on the worker, the sandbox and the notebook format, which all assignments
share, and every assignment's bundled example-hostile is graded in tests/test_grading.py.
Both come from the shared grading run of tests/conftest.py.
"""

from __future__ import annotations

import pytest

from grader.assignments import REPO_ROOT, load_assignment
from segkit.proof.hostile import ATTACKS, MALFORMED, corpus_assignment, hostile_target

pytestmark = [pytest.mark.slow, pytest.mark.proof]
ASSIGNMENT = corpus_assignment()
STUDENTS = [f"attack-{a.name}" for a in ATTACKS] + [f"malformed-{k}" for k in MALFORMED]


def _result(grading_run, student):
    return grading_run["results"][(student, ASSIGNMENT)]


def test_the_run_finishes_and_grades_everyone(grading_run):
    """Does the grading run finish normally with a result for every hostile submission?"""
    assert grading_run["run"].returncode == 0, grading_run["run"].stderr[-3000:]
    assert all((student, ASSIGNMENT) in grading_run["results"] for student in [*STUDENTS, "control-solution"])


def test_control_solution_is_unaffected(grading_run):
    """Does an honest submission graded alongside the corpus still get full marks?"""
    control = _result(grading_run, "control-solution")
    assert control["total"] == control["max"] == load_assignment(ASSIGNMENT).max_points


@pytest.mark.parametrize("student", STUDENTS)
def test_each_attack_earns_nothing(grading_run, student):
    """Does each hostile or malformed submission earn nothing for what it attacks (and no more than honest work)?"""
    expect = grading_run["corpus"][student]["expect"]
    result = _result(grading_run, student)
    target = hostile_target(ASSIGNMENT)
    units = result["units"]
    if expect == "all_zero":
        assert result["total"] == 0 and result["notebook_error"]
    elif expect == "full":
        assert result["total"] == result["max"], {
            g: u["tests"][0]["detail"] for g, u in units.items() if u["points"] < u["max_points"]
        }
    else:
        assert units[target]["points"] == 0
        if expect == "zero":
            others = {g: u["points"] for g, u in units.items() if g != target and u["points"] < u["max_points"]}
            assert not others, f"{student} cost other units: {others}"


def test_nothing_escaped_the_sandbox(grading_run):
    """Did no attack reach the host's loopback, write outside its scratch dir, or touch the repository?"""
    assert grading_run["listener"].received == []
    assert not grading_run["marker"].exists()
    assert not (REPO_ROOT / "solutions" / "x.txt").exists()
    grades = REPO_ROOT / "grades" / "grades.csv"
    assert not grades.exists() or "hostile,1000" not in grades.read_text()
    lines = (grading_run["out"] / "grades.csv").read_text().splitlines()
    assert len(lines) == len(grading_run["results"]) + 1 and not any(",1000" in line for line in lines)


def test_protections_are_reported(grading_run):
    """Does the report name the protections that were active?"""
    report = (grading_run["out"] / "report.md").read_text()
    assert "separate worker process" in report and "time limits" in report
