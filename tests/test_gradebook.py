"""`segkit gradebook`: our scores in nbgrader's gradebook and feedback folder, checked with real nbgrader.

One module fixture builds a tiny nbgrader course (the kit's nbgrader_config.py and the `patches`
solution as nbgrader's source) and does what an instructor does:

    nbgrader generate_assignment patches --force       # (formgrader's "Generate" call, in-process)
    segkit gradebook --grades grades --course . --lms-csv
    (a TA grades one written answer in formgrader: here through nbgrader's API, as formgrader does)
    segkit gradebook --grades grades --course . --lms-csv            # again: hand grades survive
    nbgrader export --to nbgrader-grades.csv                          # real commands, in parallel
    nbgrader release_feedback patches --Exchange.root=... --CourseDirectory.student_id_exclude=zip-student

Submissions, made from the release nbgrader generated: `solution` (the reference, written answers
answered), `untouched` (the release as is) and `partial` (the reference code, written answers left
as released), in nbgrader's `submitted/` layout with the timestamp.txt and submission_secret.txt that
`nbgrader collect` brings along; `zip-student`, graded from a zip (its notebook only in
grades/submissions/, not in submitted/), and `broken`, whose file in submitted/ is not JSON. Their results are synthesized SubmissionResult records in
the shape `make grade` writes (grading would take minutes). generate_assignment runs in-process
(nbgrader's own API, as formgrader's button does): a third nbgrader process would cost ~10 s more.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader.assignments import REPO_ROOT
from grader.results import CheckResult, SubmissionResult, UnitResult

pytestmark = pytest.mark.slow
ASSIGNMENT = "patches"
# student -> the share of each unit's checks it passes (2 checks per unit)
PASS_SHARE = {"solution": 1.0, "untouched": 0.0, "partial": 0.5, "zip-student": 0.5, "broken": 0.0}
EXCHANGE_STUDENTS = ("solution", "untouched", "partial")
ZIP_STUDENT = "zip-student"
BROKEN = "broken"  # handed in a file that is not a notebook
NOT_RELEASABLE = (ZIP_STUDENT, BROKEN)
COURSE_ID = "course101"
TA_SCORE = 1.5  # what the TA gives the solution's first written answer
GRADER_PAGE_MARK = "<p>grader feedback page of solution</p>"


@dataclass(frozen=True)
class Cell:
    grade_id: str
    points: float
    code: bool  # an autograded code unit; else a written answer


def _graded_cells(notebook: dict) -> list[Cell]:
    """The notebook's graded cells (nbgrader solution + grade), in order."""
    cells = []
    for cell in notebook["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and meta.get("solution"):
            cells.append(Cell(meta["grade_id"], float(meta["points"]), cell["cell_type"] == "code"))
    return cells


def _result(student: str, notebook: Path, cells: list[Cell]) -> SubmissionResult:
    units = {}
    for unit in (c for c in cells if c.code):
        half = unit.points / 2
        passes = [PASS_SHARE[student] >= 0.5, PASS_SHARE[student] >= 1.0]
        checks = [
            CheckResult(
                test=f"test_{unit.grade_id}_{index}",
                question=f"Does {unit.grade_id} pass check {index}?",
                grade_id=unit.grade_id,
                points=half if passed else 0.0,
                max_points=half,
                passed=passed,
                message="" if passed else f"Fix {unit.grade_id} (check {index}).",
            )
            for index, passed in enumerate(passes)
        ]
        units[unit.grade_id] = UnitResult(unit.grade_id, sum(c.points for c in checks), unit.points, checks)
    return SubmissionResult(
        student_id=student,
        assignment=ASSIGNMENT,
        total=sum(u.points for u in units.values()),
        max_points=sum(c.points for c in cells if c.code),
        notebook=str(notebook),
        units=units,
        manual_points={c.grade_id: c.points for c in cells if not c.code},
    )


def _write_course_inputs(root: Path, cells: list[Cell]) -> Path:
    """submitted/ (nbgrader layout + collect's files) and a grades folder of results; returns grades."""
    solution = json.loads((root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    release = json.loads((root / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    code = {c.grade_id for c in cells if c.code}
    reference = {
        cell["metadata"]["nbgrader"]["grade_id"]: cell["source"]
        for cell in solution["cells"]
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in code
    }
    partial = json.loads(json.dumps(release))
    for cell in partial["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in reference:
            cell["source"] = reference[grade_id]
    notebooks = {"solution": solution, "untouched": release, "partial": partial, ZIP_STUDENT: partial, BROKEN: None}
    grades = root / "grades"
    for student, notebook_json in notebooks.items():
        if student == ZIP_STUDENT:  # graded from a zip: the notebook is only where the grader unpacked it
            notebook = grades / "submissions" / student / f"{ASSIGNMENT}.ipynb"
        else:
            notebook = root / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        notebook.parent.mkdir(parents=True, exist_ok=True)
        notebook.write_text("{not a notebook" if notebook_json is None else json.dumps(notebook_json))
        if student in EXCHANGE_STUDENTS:
            (notebook.parent / "timestamp.txt").write_text("2026-03-01 12:00:00.000000 UTC")
            (notebook.parent / "submission_secret.txt").write_text(f"secret-of-{student}")
        path = grades / "results" / ASSIGNMENT / f"{student}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        result = _result(student, notebook, cells)
        result.notebook_error = "the file is not valid notebook JSON" if notebook_json is None else ""
        path.write_text(result.to_json())
    page = grades / "feedback" / "solution" / f"{ASSIGNMENT}.html"
    page.parent.mkdir(parents=True)
    page.write_text(f"<!doctype html><meta charset='utf-8'>{GRADER_PAGE_MARK}")
    return grades


def _segkit_gradebook(grades: Path, course: Path) -> str:
    from segkit.cli import main

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = main(["gradebook", "--grades", str(grades), "--course", str(course), "--lms-csv"])
    assert status == 0, output.getvalue()
    return output.getvalue()


def _generate_assignment(root: Path):
    """`nbgrader generate_assignment patches --force`, in-process through nbgrader's API (with the
    course's nbgrader_config.py), as formgrader's "Generate" button runs it.

    nbgrader stamps a new gradebook.db with the output of `alembic heads`, run in a subprocess that
    imports nbgrader once more (~7 s of CPU); the same head is read here from nbgrader's migrations."""
    import nbgrader.api
    from alembic.script import ScriptDirectory
    from nbgrader.apps import NbGraderAPI
    from nbgrader.dbutil import ALEMBIC_DIR

    from integrations.gradebook import open_course

    course = open_course(root)
    head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nbgrader.api, "get_alembic_version", lambda: head)
        api = NbGraderAPI(coursedir=course.coursedir, config=course.config)
        outcome = api.generate_assignment(ASSIGNMENT, force=True)
    assert outcome["success"], outcome.get("error", "") + outcome.get("log", "")


def _ta_grades_first_written_answer(root: Path, written: str):
    """What formgrader does when a TA enters a score and a comment."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        grade = gradebook.find_grade(written, ASSIGNMENT, ASSIGNMENT, "solution")
        grade.manual_score, grade.needs_manual_grade = TA_SCORE, False
        gradebook.find_comment(written, ASSIGNMENT, ASSIGNMENT, "solution").manual_comment = "Good argument."
        gradebook.db.commit()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradebook-course")
    (root / "solutions").mkdir()
    shutil.copytree(REPO_ROOT / "solutions" / ASSIGNMENT, root / "solutions" / ASSIGNMENT)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    cells = _graded_cells(json.loads((root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()))
    _generate_assignment(root)
    grades = _write_course_inputs(root, cells)

    first = _segkit_gradebook(grades, root)
    first_csv = (grades / f"lms-{ASSIGNMENT}.csv").read_text()
    _ta_grades_first_written_answer(root, next(c.grade_id for c in cells if not c.code))
    second = _segkit_gradebook(grades, root)

    exchange = root / "exchange"
    exchange.mkdir()
    # The kit's environment's bin/ first, as for every nbgrader command (it may call `alembic`).
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO_ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    commands = {
        "export": ["export", "--to", str(root / "nbgrader-grades.csv")],
        "release_feedback": [
            "release_feedback",
            ASSIGNMENT,
            f"--Exchange.root={exchange}",
            f"--CourseDirectory.course_id={COURSE_ID}",
            f"--CourseDirectory.student_id_exclude={','.join(NOT_RELEASABLE)}",
        ],
    }
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "nbgrader", *args],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, args in commands.items()
    }
    logs = {}
    for name, process in running.items():
        logs[name], _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"nbgrader {name} failed:\n{logs[name][-4000:]}"
    return {
        "root": root,
        "grades": grades,
        "cells": cells,
        "exchange": exchange / COURSE_ID / "feedback",
        "first": first,
        "second": second,
        "first_csv": first_csv,
        "release_log": logs["release_feedback"],
    }


def _grades(root: Path, student: str) -> dict:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        notebook = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
        return {g.name: (g.auto_score, g.manual_score, g.needs_manual_grade) for g in notebook.grades}


def _split(cells: list[Cell]) -> tuple[list[Cell], list[str], float, float]:
    """(code units, written grade_ids, code max, written max)"""
    code = [c for c in cells if c.code]
    written = [c for c in cells if not c.code]
    return code, [c.grade_id for c in written], sum(c.points for c in code), sum(c.points for c in written)


def test_formgrader_lists_only_written_answers_as_needing_a_grade(course):
    """Do the code units carry our points as nbgrader auto scores (no manual grade needed), while an
    answered written question needs grading and an untouched one scores 0 like after `nbgrader autograde`?"""
    from nbgrader.api import Gradebook

    code, written, code_max, _ = _split(course["cells"])
    for student, share in PASS_SHARE.items():
        grades = _grades(course["root"], student)
        for unit in code:
            assert grades[unit.grade_id] == (pytest.approx(unit.points * share), None, False), (student, unit)
    solution = _grades(course["root"], "solution")
    assert solution[written[0]] == (None, TA_SCORE, False)  # graded by the TA, kept by the second export
    assert all(solution[gid][2] for gid in written[1:])  # the other answers still need a grade
    # Unchanged answers (and a notebook nbgrader cannot read): 0 and "No response.", as nbgrader does.
    for student in ("untouched", "partial", ZIP_STUDENT, BROKEN):
        assert all(_grades(course["root"], student)[gid] == (0.0, None, False) for gid in written), student
    with Gradebook(f"sqlite:///{course['root'] / 'gradebook.db'}") as gradebook:  # formgrader's submission list
        listing = {d["student"]: d for d in gradebook.notebook_submission_dicts(ASSIGNMENT, ASSIGNMENT)}
        comment = gradebook.find_comment(code[0].grade_id, ASSIGNMENT, ASSIGNMENT, "partial").comment
    assert {s for s, d in listing.items() if d["needs_manual_grade"]} == {"solution"}
    assert listing["solution"]["code_score"] == pytest.approx(code_max)
    assert f"Fix {code[0].grade_id} (check 1)." in comment  # formgrader shows why points were lost
    assert f"to grade: {', '.join(written[1:])}" in course["second"], course["second"]


def test_nbgrader_export_totals_match_ours(course):
    """Does `nbgrader export` report our autograded total plus the hand-graded written points?"""
    with open(course["root"] / "nbgrader-grades.csv", newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    _, _, code_max, written_max = _split(course["cells"])
    for student, share in PASS_SHARE.items():
        expected = code_max * share + (TA_SCORE if student == "solution" else 0.0)
        assert float(rows[student]["score"]) == pytest.approx(expected), student
        assert float(rows[student]["max_score"]) == pytest.approx(code_max + written_max)
    assert rows["solution"]["timestamp"].startswith("2026-03-01 12:00:00")


def test_autograded_notebooks_and_zip_submission_staged(course):
    """Is every notebook in autograded/ (sanitized, never executed) and was the zip student's notebook
    copied into submitted/ first?"""
    import nbformat

    root = course["root"]
    assert (root / "submitted" / ZIP_STUDENT / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    for student in (s for s in PASS_SHARE if s != BROKEN):
        notebook = nbformat.read(root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
        assert not any(cell.get("outputs") for cell in notebook.cells), student  # outputs cleared, nothing ran
    assert (root / "autograded" / "partial" / ASSIGNMENT / "submission_secret.txt").is_file()
    assert f"--CourseDirectory.student_id_exclude={','.join(sorted(NOT_RELEASABLE))}" in course["first"]
    assert f"nbgrader could not process {BROKEN}'s {ASSIGNMENT}" in course["first"]


def test_release_feedback_finds_our_feedback(course):
    """Does `nbgrader release_feedback` release feedback/<student>/<a>/<a>.html, holding our per-unit
    points and messages, the grader's own page and the written answers' scores and comments?"""
    from nbgrader.utils import notebook_hash

    code, written, _, _ = _split(course["cells"])
    for student in EXCHANGE_STUDENTS:
        released = course["exchange"] / f"{notebook_hash(secret=f'secret-of-{student}', notebook_id=ASSIGNMENT)}.html"
        assert released.is_file(), course["release_log"][-3000:]
        page = released.read_text()
        if student == "solution":
            assert GRADER_PAGE_MARK in page
            assert f"{TA_SCORE:g} / " in page and "Good argument." in page
            assert f"{len(written) - 1} written answer(s) not graded yet" in page
        else:
            assert f"Fix {code[0].grade_id} (check 1)." in page  # the result rendered (no grader page here)
            assert "No response." in page
    assert len(list(course["exchange"].glob("*.html"))) == len(EXCHANGE_STUDENTS)


def test_lms_csv(course):
    """Is lms-<a>.csv `student_id,total,max,<code units>,<written answers>` with the TA's score once graded?"""
    code, written, code_max, written_max = _split(course["cells"])
    rows = list(csv.reader(io.StringIO((course["grades"] / f"lms-{ASSIGNMENT}.csv").read_text())))
    assert rows[0] == ["student_id", "total", "max", *[c.grade_id for c in code], *written]
    by_student = {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert list(by_student) == sorted(PASS_SHARE)
    solution = by_student["solution"]
    assert float(solution["total"]) == pytest.approx(code_max + TA_SCORE)
    assert float(solution["max"]) == pytest.approx(code_max + written_max)
    assert solution[written[0]] == f"{TA_SCORE:g}" and solution[written[1]] == ""  # not graded yet: empty
    assert by_student["untouched"][written[0]] == "0"
    assert float(by_student["partial"]["total"]) == pytest.approx(code_max / 2)
    first = {row[0]: row for row in csv.reader(io.StringIO(course["first_csv"]))}
    assert first["solution"][rows[0].index(written[0])] == ""  # before the TA graded it


def test_clear_errors_when_the_course_is_not_ready(course, tmp_path):
    """Does the exporter say which nbgrader command to run when the assignment or the database is missing?"""
    from integrations.gradebook import GradebookExportError, export_nbgrader

    other = course["grades"] / "results" / "cam" / "someone.json"
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text(SubmissionResult("someone", "cam", 0.0, 8.0).to_json())
    try:
        with pytest.raises(GradebookExportError, match="nbgrader generate_assignment cam"):
            export_nbgrader(course["grades"], course["root"], "cam")
    finally:
        shutil.rmtree(other.parent)
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    with pytest.raises(GradebookExportError, match="no nbgrader gradebook.*nbgrader generate_assignment"):
        export_nbgrader(course["grades"], tmp_path, ASSIGNMENT)


def test_grades_csv_ends_with_notes_saying_why_a_row_is_zero(tmp_path):
    """Does grades.csv end with a `notes` column that says why a row is 0 without grading (a rejected student,
    an unreadable notebook), on one line and never as a spreadsheet formula, and stays empty for a graded row?"""
    from grader.report import MAX_NOTE_CHARS, write_gradebook

    def row(student: str, error: str) -> SubmissionResult:
        unit = UnitResult("u1", points=0 if error else 1, max_points=1)
        return SubmissionResult(
            student, "demo", total=unit.points, max_points=1, units={"u1": unit}, notebook_error=error
        )

    results = [
        row("graded", ""),
        row("rejected", "no notebook of this assignment in the upload:\nonly notes.txt"),
        row("formula", '=HYPERLINK("http://x")' + "x" * 2 * MAX_NOTE_CHARS),
    ]
    path = write_gradebook(results, ["u1"], tmp_path)
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "student_id,assignment,u1,total,max,notes"
    assert text.count("\n") == len(results) + 1  # one line per row, whatever the error held
    notes = {r["student_id"]: r["notes"] for r in csv.DictReader(io.StringIO(text))}
    assert notes["graded"] == ""
    assert notes["rejected"] == "no notebook of this assignment in the upload: only notes.txt"
    assert notes["formula"].startswith("'=HYPERLINK") and len(notes["formula"]) <= MAX_NOTE_CHARS + 80
