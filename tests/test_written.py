"""Written answers for grading by hand (`segkit written`, segkit/written.py) and their rubric scores
merged into grades.csv, the LMS CSV and nbgrader's gradebook (grader/report.py, grader/gradebook.py).

The pages are built from the bundled example submissions (segkit/proof/examples.py): example-solution
answers every question (the solution notebook's model answers), example-untouched answers none; a figure
and a deleted answer cell are added by the tests.
"""

from __future__ import annotations

import base64
import copy
import csv
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from grader.assignments import assignment_names, cells_by_grade_id, load_assignment
from grader.report import RubricError, read_rubric, rubric_path, write_gradebook
from grader.results import SubmissionResult, UnitResult
from integrations.gradebook import CellInfo, lms_csv_text, record_scores
from segkit import written
from segkit.proof.examples import example_notebooks
from starter.common import notebook_text

ASSIGNMENTS = assignment_names()


def tiny_png() -> str:
    """A valid 1x1 PNG, base64 (what a notebook stores for a figure)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0"))
    return base64.b64encode(written.PNG_SIGNATURE + raw + chunk(b"IEND", b"")).decode()


def with_figure_before_first_answer(notebook: dict, png: str) -> dict:
    """The notebook with `png` as the output of the last code cell before its first written answer."""
    notebook = copy.deepcopy(notebook)
    first = next(i for i, c in enumerate(notebook["cells"]) if written.is_answer_cell(c))
    code = next(c for c in reversed(notebook["cells"][:first]) if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "display_data", "data": {"image/png": png}, "metadata": {}}]
    return notebook


def export(tmp_path: Path, name: str, notebooks: dict[str, dict]) -> written.ExportResult:
    submissions = []
    for student, notebook in notebooks.items():
        path = tmp_path / "in" / student / f"{name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(notebook_text(notebook), encoding="utf-8")
        submissions.append((student, path))
    return written.export_assignment(name, submissions, tmp_path / "out")


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_question_is_exported_with_answers_figures_and_missing_marks(tmp_path, name):
    """Does every student's page hold every written question in order, the answers of example-solution,
    the figure before the first question embedded, and "No answer" for an untouched or deleted answer?"""
    spec = load_assignment(name)
    examples = example_notebooks(name)
    png = tiny_png()
    deleted = copy.deepcopy(examples["example-solution"])
    gone = spec.manual_units[-1].grade_id
    deleted["cells"] = [c for c in deleted["cells"] if c not in cells_by_grade_id(deleted).get(gone, [])]
    result = export(
        tmp_path,
        name,
        {
            "example-solution": with_figure_before_first_answer(examples["example-solution"], png),
            "example-untouched": examples["example-untouched"],
            "deleted-one": deleted,
        },
    )
    folder = tmp_path / "out" / "written" / name
    assert sorted(p.name for p in result.pages) == [
        "deleted-one.html",
        "example-solution.html",
        "example-untouched.html",
    ]
    manual = [u.grade_id for u in spec.manual_units]
    assert manual, f"{name} has no written question"
    for page in result.pages:
        text = page.read_text(encoding="utf-8")
        positions = [text.index(f"id='{gid}'") for gid in manual]
        assert positions == sorted(positions)
    solution = (folder / "example-solution.html").read_text(encoding="utf-8")
    assert f"data:image/png;base64,{png}" in solution
    assert written.NO_ANSWER_MISSING not in solution and written.NO_ANSWER_UNCHANGED not in solution
    assert result.unanswered == {"deleted-one": [gone], "example-solution": [], "example-untouched": manual}
    untouched = (folder / "example-untouched.html").read_text(encoding="utf-8")
    assert untouched.count(written.NO_ANSWER_UNCHANGED) == len(manual)
    assert (folder / "deleted-one.html").read_text(encoding="utf-8").count(written.NO_ANSWER_MISSING) == 1


def test_the_question_text_comes_from_the_release_and_answers_are_inert(tmp_path):
    """Is a question's text the released one even when the student edited it, and does an answer's HTML,
    script or image never reach the page as markup?"""
    name = "unet"
    notebook = copy.deepcopy(example_notebooks(name)["example-untouched"])
    first = next(i for i, c in enumerate(notebook["cells"]) if written.is_answer_cell(c))
    released_prompt = "".join(notebook["cells"][first - 1]["source"])
    notebook["cells"][first - 1]["source"] = "**Q1.** Write anything you like."
    notebook["cells"][first]["source"] = (
        "<script>alert(1)</script> ![x](http://evil/x.png) <img src=x onerror=alert(2)>"
    )
    export(tmp_path, name, {"mallory": notebook})
    page = (tmp_path / "out" / "written" / name / "mallory.html").read_text(encoding="utf-8")
    assert "Write anything you like" not in page and released_prompt.splitlines()[-1][:40] in page
    assert "<script" not in page and "<img src=x" not in page and "http://evil" not in page.replace("(http://evil", "")


def test_the_rubric_has_a_row_per_student_and_keeps_entered_scores(tmp_path):
    """Is rubric.csv one row per student and one empty column per question, and does a second export (a new
    student) keep the scores a TA entered?"""
    name = "cam"
    examples = example_notebooks(name)
    export(tmp_path, name, {"alice": examples["example-untouched"]})
    path = rubric_path(tmp_path / "out", name)
    manual = [u.grade_id for u in load_assignment(name).manual_units]
    assert path.read_text(encoding="utf-8").splitlines() == [
        "student_id," + ",".join(manual),
        "alice" + "," * len(manual),
    ]
    rows = [["student_id", *manual], ["alice", "1.5", *[""] * (len(manual) - 1)]]
    path.write_text("\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    export(tmp_path, name, {"bob": examples["example-untouched"]})
    assert read_rubric(path) == {
        "alice": {manual[0]: 1.5, **{gid: None for gid in manual[1:]}},
        "bob": {gid: None for gid in manual},
    }


def test_a_bad_rubric_score_is_refused_with_its_place(tmp_path):
    """Does a score that is not a number, or above the question's points, stop the merge naming line and column?"""
    path = tmp_path / "rubric.csv"
    path.write_text("student_id,q1\nalice,two\n", encoding="utf-8")
    with pytest.raises(RubricError, match="line 2, column q1"):
        read_rubric(path)
    path.write_text("student_id,q1\nalice,3\n", encoding="utf-8")
    with pytest.raises(RubricError, match="outside 0..2"):
        read_rubric(path, {"q1": 2.0})


def stored_results(out: Path, name: str, students: list[str]) -> list[SubmissionResult]:
    """Graded results as `segkit grade` stores them (<out>/results/<a>/<student>.json): 1 point per unit."""
    spec = load_assignment(name)
    results = []
    for student in students:
        units = {u.grade_id: UnitResult(u.grade_id, 1.0, u.points) for u in spec.auto_units}
        result = SubmissionResult(
            student_id=student,
            assignment=name,
            total=float(len(units)),
            max_points=spec.max_points,
            units=units,
            manual_points={u.grade_id: u.points for u in spec.manual_units},
        )
        path = out / "results" / name / f"{student}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.to_json(), encoding="utf-8")
        results.append(result)
    return results


def test_a_filled_rubric_is_merged_into_grades_csv_and_the_lms_csv(tmp_path):
    """Do a TA's rubric scores appear in grades.csv and the LMS CSV, each in its question's column and in
    the total, with the written points in the max, and an empty cell for an answer not graded yet?"""
    name = "unet"
    out = tmp_path / "out"
    results = stored_results(out, name, ["alice", "bob"])
    spec = load_assignment(name)
    manual = [u.grade_id for u in spec.manual_units]
    path = rubric_path(out, name)
    path.parent.mkdir(parents=True)
    path.write_text(f"student_id,{','.join(manual)}\nalice,2,1.5,,0\nbob,,,,\n", encoding="utf-8")
    auto = [u.grade_id for u in spec.auto_units]
    hand_max = sum(u.points for u in spec.manual_units)

    with write_gradebook(results, auto, out).open(encoding="utf-8") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert [rows["alice"][gid] for gid in manual] == ["2", "1.5", "", "0"]
    assert float(rows["alice"]["total"]) == len(auto) + 3.5 and float(rows["bob"]["total"]) == len(auto)
    assert float(rows["alice"]["max"]) == spec.max_points + hand_max

    lms = list(csv.DictReader(lms_csv_text(out, name).splitlines()))
    alice = next(row for row in lms if row["student_id"] == "alice")
    assert [alice[gid] for gid in manual] == ["2", "1.5", "", "0"]
    assert float(alice["total"]) == len(auto) + 3.5 and float(alice["max"]) == spec.max_points + hand_max

    assert written.main(["--merge", "--out", str(out)]) == 0
    assert (out / "grades.csv").read_text(encoding="utf-8").startswith(f"student_id,assignment,{','.join(auto)},")
    assert (out / f"lms-{name}.csv").read_text(encoding="utf-8") == lms_csv_text(out, name)


class FakeGradebook:
    """The part of nbgrader's Gradebook that record_scores uses, holding grades in a dict."""

    def __init__(self):
        self.grades: dict[str, SimpleNamespace] = {}
        self.db = SimpleNamespace(commit=lambda: None)

    def update_or_create_student(self, student):
        return None

    def update_or_create_submission(self, assignment, student):
        return None

    def find_grade(self, grade_id, notebook, assignment, student):
        default = SimpleNamespace(auto_score=None, manual_score=None, needs_manual_grade=True)
        return self.grades.setdefault(grade_id, default)

    def find_comment(self, grade_id, notebook, assignment, student):
        return SimpleNamespace(auto_comment=None)


def test_rubric_scores_become_manual_scores_in_the_gradebook():
    """Does a rubric score become the written answer's manual score (no longer needing grading), while an
    empty rubric cell leaves the answer waiting for a grade?"""
    result = SubmissionResult(
        student_id="alice",
        assignment="a",
        total=1.0,
        max_points=1.0,
        units={"code": UnitResult("code", 1.0, 1.0)},
        manual_points={"q1": 2.0, "q2": 2.0},
    )
    cells = {gid: CellInfo("a", "markdown", 2.0, True) for gid in ("q1", "q2")}
    cells["code"] = CellInfo("a", "code", 1.0, True)
    gradebook = FakeGradebook()
    record_scores(gradebook, result, cells, missing_notebook=False, hand_scores={"q1": 1.5, "q2": None})
    assert (gradebook.grades["q1"].manual_score, gradebook.grades["q1"].needs_manual_grade) == (1.5, False)
    assert (gradebook.grades["q2"].manual_score, gradebook.grades["q2"].needs_manual_grade) == (None, True)
    assert gradebook.grades["code"].auto_score == 1.0
