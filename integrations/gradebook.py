"""A finished grades folder into nbgrader's gradebook, nbgrader's feedback folder and an LMS CSV.

    segkit gradebook --grades grades --course COURSE [--assignment A] [--student S] [--lms-csv] [--force]
    segkit gradebook --grades grades --lms-csv            # only the LMS CSV (no nbgrader course)

Reads what `make grade` wrote (`<grades>/results/<assignment>/<student>.json`, `SubmissionResult`
records) and never runs student code. For each student of an assignment, in the nbgrader course
directory COURSE (the folder holding `nbgrader_config.py` and `gradebook.db`; its config is read,
so renamed `submitted/`, `autograded/` and `feedback/` folders are honoured):

1. nbgrader's own `autograde` step **without its Execute preprocessor** (nbgrader's Autograde
   converter with every other preprocessor it is configured with): it creates or updates the
   student and the submission in the gradebook, writes the sanitized notebook (outputs cleared,
   locked cells restored from the release) to `autograded/<student>/<assignment>/<notebook>.ipynb`
   with the submission's `timestamp.txt` / `submission_secret.txt`, and scores the written answers
   exactly as `nbgrader autograde` does (an unchanged answer: 0 points, "No response."; an answer:
   needs a manual grade). As in nbgrader, an already autograded submission is left as it is unless
   it was resubmitted (newer `timestamp.txt`) or `--force` is given, so hand grades survive re-runs.
   A student whose notebook is not in `submitted/` (graded from a zip or a plain folder) has the
   graded notebook copied there first (`submitted/<student>/<assignment>/<notebook>.ipynb`).
2. Through nbgrader's API (`nbgrader.api.Gradebook`, never SQL), every autograded unit's `Grade`
   (found by its `grade_id`) gets `auto_score` = the unit's points and `needs_manual_grade = False`,
   and its `Comment.auto_comment` says which checks failed and why. A TA's manual override of a code
   unit is kept; it is flagged for review only when our score for that unit changed. Formgrader then
   lists a submission as needing grading only for its written answers. Late penalties are then
   assigned by nbgrader's `AssignLatePenalties` on the complete score.
3. Feedback where `nbgrader generate_feedback` writes it and `nbgrader release_feedback` looks for
   it: `feedback/<student>/<assignment>/<notebook>.html` (our per-unit feedback, the same page as
   `<grades>/feedback/<student>/<assignment>.html`, plus the written answers' scores and comments
   from the gradebook and the total), next to the submission's `timestamp.txt` and
   `submission_secret.txt` (what `nbgrader collect` brought along; `release_feedback` needs both).
   Run the command again after grading the written answers in formgrader to refresh it.

The LMS CSV (`--lms-csv`) is `<grades>/lms-<assignment>.csv`, one row per student, sorted:

    student_id,total,max,<grade_id of each autograded unit...>[,<grade_id of each written answer...>]

`student_id` is the submission's student id (nbgrader's, or the file/folder name); each unit column
holds its points; `total` is the sum of the row's unit columns (minus nbgrader's late penalty, if
one is configured), `max` the sum of their maximum points. The written-answer columns appear only
with `--course`: their hand-graded score from the gradebook, empty while not graded yet. Moodle's
"Import > CSV file" takes it as is (map `student_id` to the username or ID number, `total` to the
grade item); Canvas matches rows by the identity columns of its own gradebook export, so there the
`total` column is looked up by `student_id` into that export (docs/instructor-guide.md, section 11).
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import logging
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.report import (
    LEFT_OUT,
    MAX_FEEDBACK_BYTES,
    MAX_NOTEBOOK_VIEW_BYTES,
    Budget,
    detail_key,
    feedback_html,
    format_points,
    md_code,
    read_rubric,
    rubric_path,
)
from grader.results import ResultFormatError, SubmissionResult, UnitResult
from starter.common import write_atomic

# Files nbgrader's exchange puts beside a submitted notebook; release_feedback needs both.
SUBMISSION_FILES = ("timestamp.txt", "submission_secret.txt")
CONFIG_FILE = "nbgrader_config.py"
SCORE_TOLERANCE = 1e-9


class GradebookExportError(RuntimeError):
    """The grades folder or the nbgrader course is not in a state to export to; the message says
    what to run."""


# -- the grades folder -----------------------------------------------------------------------------
def graded_assignments(grades_dir: Path) -> list[str]:
    """Assignments with at least one result in `<grades_dir>/results/`, sorted."""
    results_root = Path(grades_dir) / "results"
    if not results_root.is_dir():
        return []
    return sorted(p.name for p in results_root.iterdir() if p.is_dir() and any(p.glob("*.json")))


def read_results(grades_dir: Path, assignment: str, students: list[str] | None = None) -> list[SubmissionResult]:
    """Every stored result of one assignment (`<grades_dir>/results/<assignment>/<student>.json`),
    sorted by student id; only `students` when given.

    Raises GradebookExportError when there is none or a file is not a result."""
    folder = Path(grades_dir) / "results" / assignment
    paths = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    if students:
        wanted_ids = set(students)
        paths = [p for p in paths if p.stem in wanted_ids]
    if not paths:
        wanted = f" for {', '.join(students)}" if students else ""
        raise GradebookExportError(
            f"no results of assignment {assignment!r}{wanted} in {folder}: grade first "
            f"(`make grade ... OUT={grades_dir}`), or pass the grades folder with --grades"
        )
    results = []
    for path in paths:
        try:
            results.append(SubmissionResult.from_json(path.read_text(encoding="utf-8")))
        except ResultFormatError as exc:
            raise GradebookExportError(f"{path} is not a grading result: {exc}") from exc
    return results


def _spec_order(assignment: str) -> tuple[list[str], list[str]]:
    """(autograded units, written answers) in notebook order when the kit knows the assignment."""
    from grader.assignments import load_assignment

    try:
        spec = load_assignment(assignment)
    except (FileNotFoundError, ValueError):
        return [], []
    return [u.grade_id for u in spec.auto_units], [u.grade_id for u in spec.manual_units]


def _ordered(known_order: list[str], names: list[str]) -> list[str]:
    """`names` in `known_order`, then the others in their given order."""
    present = set(names)
    first = [name for name in known_order if name in present]
    placed = set(first)
    return first + [name for name in names if name not in placed]


# -- the nbgrader course ---------------------------------------------------------------------------
@dataclass
class Course:
    """An nbgrader course directory and its configuration (nbgrader_config.py)."""

    root: Path
    config: Any  # traitlets Config
    coursedir: Any  # nbgrader.coursedir.CourseDirectory

    @property
    def db_url(self) -> str:
        return self.coursedir.db_url

    @property
    def db_path(self) -> Path | None:
        """The sqlite file of the gradebook; None for another database."""
        prefix = "sqlite:///"
        return Path(self.db_url[len(prefix) :]) if self.db_url.startswith(prefix) else None

    def folder(self, step: str, student: str, assignment: str) -> Path:
        """<course>/<step>/<student>/<assignment> in the course's directory structure."""
        return Path(self.coursedir.format_path(step, student, assignment))

    def submitted(self, student: str, assignment: str) -> Path:
        return self.folder(self.coursedir.submitted_directory, student, assignment)

    def autograded(self, student: str, assignment: str) -> Path:
        return self.folder(self.coursedir.autograded_directory, student, assignment)

    def feedback(self, student: str, assignment: str) -> Path:
        return self.folder(self.coursedir.feedback_directory, student, assignment)

    @contextmanager
    def gradebook(self) -> Iterator[Any]:
        """nbgrader's Gradebook on the course's existing database."""
        from nbgrader.api import Gradebook

        if self.db_path is not None and not self.db_path.is_file():
            raise GradebookExportError(
                f"no nbgrader gradebook at {self.db_path}: in {self.root} run "
                "`nbgrader generate_assignment <assignment>` first (it creates gradebook.db)"
            )
        with warnings.catch_warnings(), Gradebook(self.db_url, self.coursedir.course_id) as gradebook:
            # nbgrader's add_submission triggers SQLAlchemy autoflush warnings that `nbgrader autograde`
            # prints too; they are harmless.
            warnings.filterwarnings("ignore", message=".*not in session.*")
            yield gradebook


def open_course(course_root: Path) -> Course:
    """Read <course_root>/nbgrader_config.py (when present) the way nbgrader does, with the
    course root fixed to course_root whatever the config says."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    root = Path(course_root).resolve()
    if not root.is_dir():
        raise GradebookExportError(f"no nbgrader course folder at {root}")
    config = Config()
    if (root / CONFIG_FILE).is_file():
        config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    coursedir = CourseDirectory(config=config)
    return Course(root, config, coursedir)


@dataclass(frozen=True)
class CellInfo:
    """A grade cell of the gradebook's copy of an assignment."""

    notebook: str
    cell_type: str  # "code" or "markdown"
    max_score: float
    solution: bool  # a solution cell (it has a Comment besides its Grade)


def assignment_cells(gradebook: Any, assignment: str, course: Course) -> dict[str, CellInfo]:
    """grade_id -> CellInfo for every grade cell of the assignment's notebooks in the gradebook.

    Raises GradebookExportError naming the nbgrader command to run when the assignment is missing."""
    from nbgrader.api import MissingEntry

    try:
        record = gradebook.find_assignment(assignment)
    except MissingEntry:
        raise GradebookExportError(
            f"assignment {assignment!r} is not in the nbgrader gradebook {course.db_url}: in {course.root} "
            f"run `nbgrader generate_assignment {assignment}` (it adds the assignment, its notebooks and "
            "their graded cells), then run this again"
        ) from None
    cells = {}
    for notebook in record.notebooks:
        solutions = {cell.name for cell in notebook.solution_cells}
        for cell in notebook.grade_cells:
            cells[cell.name] = CellInfo(notebook.name, cell.cell_type, float(cell.max_score), cell.name in solutions)
    if not cells:
        raise GradebookExportError(
            f"assignment {assignment!r} has no graded cells in {course.db_url}: in {course.root} run "
            f"`nbgrader generate_assignment {assignment} --force`"
        )
    return cells


def _check_units(results: list[SubmissionResult], cells: dict[str, CellInfo], assignment: str, course: Course):
    unknown = sorted({gid for r in results for gid in r.units if gid not in cells})
    if unknown:
        raise GradebookExportError(
            f"the gradebook's assignment {assignment!r} has no graded cell(s) {', '.join(unknown)}: it was generated "
            f"from another version of the notebook. In {course.root} run `nbgrader generate_assignment {assignment} "
            "--force` (nbgrader refuses once submissions are recorded: then `nbgrader db assignment remove` first)"
        )


# -- nbgrader's autograde step, without executing anything ------------------------------------------
def _nbgrader_logger() -> logging.Logger:
    logger = logging.getLogger("segkit.gradebook.nbgrader")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("nbgrader: %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    return logger


def _without_execution(preprocessors: list) -> list:
    """The configured autograde preprocessors minus any that executes the notebook."""
    from nbconvert.preprocessors import ExecutePreprocessor
    from traitlets.utils.importstring import import_item

    kept = []
    for preprocessor in preprocessors:
        cls = import_item(preprocessor) if isinstance(preprocessor, str) else preprocessor
        if not (isinstance(cls, type) and issubclass(cls, ExecutePreprocessor)):
            kept.append(cls)
    return kept


def autograde_without_execution(course: Course, assignment: str, student: str, *, force: bool = False):
    """nbgrader's Autograde converter on submitted/<student>/<assignment>/ with its Execute step
    removed: sanitize, copy to autograded/, record student, submission and written-answer grades.
    Student code never runs. Raises GradebookExportError when nbgrader reports a failure."""
    from nbgrader.converters import Autograde
    from nbgrader.converters.base import NbGraderException

    course.coursedir.assignment_id = assignment
    course.coursedir.student_id = student
    converter = Autograde(coursedir=course.coursedir, config=course.config, log=_nbgrader_logger())
    converter.force = force
    converter.autograde_preprocessors = _without_execution(list(converter.autograde_preprocessors))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not in session.*")  # as in Course.gradebook
            converter.start()
    except NbGraderException as exc:
        raise GradebookExportError(f"nbgrader could not process {student}'s {assignment}: {exc}") from exc


def _assign_late_penalties(course: Course, assignment: str, student: str, notebooks: list[str]):
    """nbgrader's AssignLatePenalties on the complete score (autograde ran it before our scores)."""
    from nbformat.v4 import new_notebook
    from nbgrader.preprocessors import AssignLatePenalties

    for notebook in notebooks:
        resources = {
            "nbgrader": {"notebook": notebook, "assignment": assignment, "student": student, "db_url": course.db_url}
        }
        AssignLatePenalties(config=course.config, log=_nbgrader_logger()).preprocess(new_notebook(), resources)


# -- our scores into the gradebook --------------------------------------------------------------------
MAX_COMMENT_BYTES = 16 * 1024  # one unit's comment in the gradebook


def unit_comment(unit: UnitResult) -> str:
    """The comment formgrader shows under an autograded unit: its points and each failed check.

    nbgrader renders comments as Markdown, so each check's detail (untrusted: it may carry what the
    student's code raised) is cut and written as a code span or block (grader.report.md_code); a
    detail repeated by several checks (a unit's error) is written once; the whole stays under
    MAX_COMMENT_BYTES."""
    lines = [f"Autograded by segkit: {format_points(unit.points)} / {format_points(unit.max_points)} points."]
    passed = len(unit.checks) - len(unit.failed_checks)
    if unit.checks:
        lines.append(f"{passed} of {len(unit.checks)} checks passed.")
    budget = Budget(MAX_COMMENT_BYTES - 1024)
    seen: dict[tuple[int, str], int] = {}
    for number, check in enumerate(unit.failed_checks, start=1):
        lines.append(f"- failed: {check.question} {check.message}".rstrip())
        if not check.detail:
            continue
        key = detail_key(check.detail)
        if key in seen:
            lines.append(f"  - the same detail as failed check {seen[key]} above")
            continue
        seen[key] = number
        detail = md_code(check.detail, indent="    ")
        if not budget.take("\n".join(detail)):
            lines.append(f"  - {LEFT_OUT.format(kb=MAX_COMMENT_BYTES // 1024)}")
        elif len(detail) == 1:
            lines.append(f"  - {detail[0]}")
        else:
            lines += ["  - detail:", *detail]
    return "\n".join(lines)


def _exported_units(result: SubmissionResult) -> dict[str, UnitResult]:
    """The units a result actually checked (a --units-map result checked only some)."""
    if result.checked_units is None:
        return dict(result.units)
    return {gid: unit for gid, unit in result.units.items() if gid in set(result.checked_units)}


def record_scores(
    gradebook: Any,
    result: SubmissionResult,
    cells: dict[str, CellInfo],
    *,
    missing_notebook: bool,
    hand_scores: dict[str, float | None] | None = None,
):
    """Our unit scores into the student's Grades (and Comments), through nbgrader's API.

    Autograded units: auto_score = points; needs_manual_grade False (True only when a TA's manual
    score exists and our score changed). Other grade cells are left as nbgrader's autograde step set
    them (written answers), except: a notebook that could not be found gets 0 for its written answers
    (nbgrader's rule for a missing notebook), and a cell that nbgrader would have graded by executing
    tests is flagged for manual grading (this exporter never executes). A written answer's score in
    `hand_scores` (the rubric file of `segkit written`) becomes its manual score. Returns warnings."""
    assignment, student = result.assignment, result.student_id
    gradebook.update_or_create_student(student)
    gradebook.update_or_create_submission(assignment, student)
    warnings = []
    units = _exported_units(result)
    for grade_id, unit in units.items():
        info = cells[grade_id]
        grade = gradebook.find_grade(grade_id, info.notebook, assignment, student)
        score = float(unit.points)
        changed = grade.auto_score is None or abs(grade.auto_score - score) > SCORE_TOLERANCE
        grade.auto_score = score
        if grade.manual_score is None:
            grade.needs_manual_grade = False
        elif changed:
            grade.needs_manual_grade = True  # nbgrader's rule: a hand override of a changed score is reviewed
        if info.solution:
            gradebook.find_comment(grade_id, info.notebook, assignment, student).auto_comment = unit_comment(unit)
    for grade_id, info in cells.items():
        if grade_id in result.units:
            continue
        grade = gradebook.find_grade(grade_id, info.notebook, assignment, student)
        if (hand_scores or {}).get(grade_id) is not None:
            grade.manual_score, grade.needs_manual_grade = hand_scores[grade_id], False
            continue
        if grade.manual_score is not None:
            continue
        if missing_notebook:
            grade.auto_score, grade.needs_manual_grade = 0.0, False
        elif not info.solution and info.cell_type == "code":
            grade.auto_score, grade.needs_manual_grade = None, True
            warnings.append(f"{grade_id}: an nbgrader test cell, not graded by segkit: grade it in formgrader")
        elif info.cell_type == "code" and grade.needs_manual_grade:
            warnings.append(f"{grade_id}: code cell without an autograded score in the results: grade it in formgrader")
    gradebook.db.commit()
    return warnings


# -- feedback in nbgrader's layout --------------------------------------------------------------------
@dataclass
class WrittenAnswer:
    grade_id: str
    max_score: float
    score: float | None  # None: not graded yet
    comment: str


def written_answers(
    gradebook: Any, result: SubmissionResult, cells: dict[str, CellInfo], notebook: str
) -> list[WrittenAnswer]:
    """The notebook's grade cells that are not autograded units, with their gradebook state."""
    from nbgrader.api import MissingEntry

    answers = []
    for grade_id, info in cells.items():
        if info.notebook != notebook or grade_id in result.units:
            continue
        try:
            grade = gradebook.find_grade(grade_id, notebook, result.assignment, result.student_id)
        except MissingEntry:
            answers.append(WrittenAnswer(grade_id, info.max_score, None, ""))
            continue
        comment = ""
        if info.solution:
            comment = gradebook.find_comment(grade_id, notebook, result.assignment, result.student_id).comment or ""
        score = None if grade.needs_manual_grade else float(grade.score)
        answers.append(WrittenAnswer(grade_id, info.max_score, score, comment))
    return answers


def _written_html(answers: list[WrittenAnswer]) -> str:
    if not answers:
        return ""
    rows = []
    for answer in answers:
        points = (
            "not graded yet"
            if answer.score is None
            else f"{format_points(answer.score)} / {format_points(answer.max_score)}"
        )
        comment = html.escape(answer.comment).replace("\n", "<br>")
        rows.append(f"<tr><td><code>{html.escape(answer.grade_id)}</code></td><td>{points}</td><td>{comment}</td></tr>")
    return (
        "<h2>Written answers (graded by hand)</h2>"
        "<table><tr><th>answer</th><th>points</th><th>comment</th></tr>" + "".join(rows) + "</table>"
    )


# The grader's page holds at most 64 kB of results and a 2 MB view of the notebook; a larger file is not one.
MAX_FEEDBACK_PAGE_BYTES = MAX_FEEDBACK_BYTES + MAX_NOTEBOOK_VIEW_BYTES + 64 * 1024


def grader_feedback_html(grades_dir: Path, result: SubmissionResult) -> str:
    """The feedback page the grader wrote for this submission (<grades>/feedback/<student>/<assignment>.html);
    a plain rendering of the result's units when that file is gone."""
    path = Path(grades_dir) / "feedback" / result.student_id / f"{result.assignment}.html"
    if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_FEEDBACK_PAGE_BYTES:
        return path.read_text(encoding="utf-8", errors="replace")
    return feedback_html(result)


def feedback_page(
    grader_page: str, result: SubmissionResult, answers: list[WrittenAnswer], late_penalty: float = 0.0
) -> str:
    """One notebook's feedback HTML: the grader's page (per-unit points, each check, messages), then
    the written answers' scores and comments from the gradebook, then the total."""
    graded = [a.score for a in answers if a.score is not None]
    pending = len(answers) - len(graded)
    total = result.total + sum(graded) - late_penalty
    maximum = result.max_points + sum(a.max_score for a in answers)
    late = f" (after a late penalty of {format_points(late_penalty)})" if late_penalty else ""
    waiting = f"; {pending} written answer(s) not graded yet" if pending else ""
    return (
        grader_page
        + _written_html(answers)
        + f"<h2>Total: {format_points(round(total, 4))} / {format_points(round(maximum, 4))}{late}{waiting}</h2>"
    )


def write_feedback(
    course: Course, gradebook: Any, result: SubmissionResult, cells: dict[str, CellInfo], grades_dir: Path
) -> list[Path]:
    """feedback/<student>/<assignment>/<notebook>.html for each notebook of the assignment (the kit's
    assignments have one), plus the submission's timestamp.txt and submission_secret.txt; returns
    the HTML paths."""
    from nbgrader.api import MissingEntry

    assignment, student = result.assignment, result.student_id
    folder = course.feedback(student, assignment)
    grader_page = grader_feedback_html(grades_dir, result)
    written = []
    for notebook in sorted({info.notebook for info in cells.values()}):
        try:
            penalty = gradebook.find_submission_notebook(notebook, assignment, student).late_submission_penalty or 0.0
        except MissingEntry:
            penalty = 0.0
        page = feedback_page(grader_page, result, written_answers(gradebook, result, cells, notebook), penalty)
        written.append(write_atomic(folder / f"{notebook}.html", page))
    for name in SUBMISSION_FILES:
        for source in (course.autograded(student, assignment) / name, course.submitted(student, assignment) / name):
            if source.is_file():
                write_atomic(folder / name, source.read_bytes())
                break
    return written


# -- one assignment ------------------------------------------------------------------------------------
@dataclass
class StudentExport:
    student_id: str
    staged: Path | None = None  # the notebook copied into submitted/ (it was not there)
    missing_notebook: bool = False
    needs_grading: list[str] = field(default_factory=list)  # written answers still to grade by hand
    feedback: list[Path] = field(default_factory=list)
    releasable: bool = True  # feedback/ has timestamp.txt and submission_secret.txt (nbgrader submit + collect)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ExportSummary:
    assignment: str
    course: Path
    students: list[StudentExport] = field(default_factory=list)


def _notebook_file(result: SubmissionResult, grades_dir: Path) -> Path | None:
    """The notebook the grader graded, if it still exists (absolute, or relative to the working
    directory or the grades folder's parent)."""
    if not result.notebook:
        return None
    path = Path(result.notebook)
    for candidate in (path, Path(grades_dir).parent / path):
        if candidate.is_file():
            return candidate
    return None


def _stage_submission(
    course: Course, result: SubmissionResult, grades_dir: Path, notebooks: list[str]
) -> tuple[bool, Path | None]:
    """(a submitted notebook exists, the path it was staged to or None)."""
    folder = course.submitted(result.student_id, result.assignment)
    if any(folder.glob("*.ipynb")):
        return True, None
    source = _notebook_file(result, grades_dir)
    if source is None or len(notebooks) != 1:
        return False, None
    destination = folder / f"{notebooks[0]}.ipynb"
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    return True, destination


def export_nbgrader(
    grades_dir: Path,
    course_root: Path,
    assignment: str,
    *,
    students: list[str] | None = None,
    force: bool = False,
) -> ExportSummary:
    """Write one assignment's autograded scores into the nbgrader course's gradebook, the sanitized
    notebooks into autograded/ and the feedback into feedback/ (see the module docstring).

    Inputs: grades_dir: a `make grade` output folder; course_root: the nbgrader course directory,
    whose gradebook already holds the assignment (`nbgrader generate_assignment`); students: only
    these (default: every result); force: redo nbgrader's autograde step for submissions it already
    processed (their written answers then need grading again, as after `nbgrader autograde --force`).
    Returns an ExportSummary. Raises GradebookExportError with the command to run when the course
    is not ready."""
    grades_dir = Path(grades_dir)
    course = open_course(course_root)
    results = read_results(grades_dir, assignment, students)
    with course.gradebook() as gradebook:
        cells = assignment_cells(gradebook, assignment, course)
    _check_units(results, cells, assignment, course)
    notebooks = sorted({info.notebook for info in cells.values()})
    manual_max = {gid: p for result in results for gid, p in result.manual_points.items()}
    rubric = read_rubric(rubric_path(grades_dir, assignment), manual_max)
    summary = ExportSummary(assignment, course.root)
    for result in results:
        entry = StudentExport(result.student_id)
        found, entry.staged = _stage_submission(course, result, grades_dir, notebooks)
        if found:
            try:
                autograde_without_execution(course, assignment, result.student_id, force=force)
            except GradebookExportError as exc:  # e.g. a notebook that is not JSON: scored as missing
                found = False
                entry.warnings.append(f"{exc}; its written answers score 0")
        else:
            entry.warnings.append("no notebook in submitted/ or at the graded path: formgrader cannot show it")
        entry.missing_notebook = not found
        with course.gradebook() as gradebook:
            entry.warnings += record_scores(
                gradebook,
                result,
                cells,
                missing_notebook=entry.missing_notebook,
                hand_scores=rubric.get(result.student_id),
            )
        _assign_late_penalties(course, assignment, result.student_id, notebooks)
        with course.gradebook() as gradebook:
            entry.feedback = write_feedback(course, gradebook, result, cells, grades_dir)
            folder = course.feedback(result.student_id, assignment)
            entry.releasable = all((folder / name).is_file() for name in SUBMISSION_FILES)
            entry.needs_grading = [
                answer.grade_id
                for notebook in notebooks
                for answer in written_answers(gradebook, result, cells, notebook)
                if answer.score is None
            ]
        summary.students.append(entry)
    return summary


# -- the LMS CSV ---------------------------------------------------------------------------------------
def _written_scores(course_root: Path, assignment: str, results: list[SubmissionResult]):
    """(written grade_ids, {grade_id: max}, {student: {grade_id: score or None}}, {student: penalty})
    from the gradebook; students without a submission there get None everywhere."""
    from nbgrader.api import MissingEntry

    course = open_course(course_root)
    with course.gradebook() as gradebook:
        cells = assignment_cells(gradebook, assignment, course)
        autograded = {gid for r in results for gid in r.units}
        names = [gid for gid in cells if gid not in autograded]
        scores, penalties = {}, {}
        for result in results:
            row = {}
            for grade_id in names:
                try:
                    grade = gradebook.find_grade(grade_id, cells[grade_id].notebook, assignment, result.student_id)
                except MissingEntry:
                    row[grade_id] = None
                    continue
                row[grade_id] = None if grade.needs_manual_grade else float(grade.score)
            scores[result.student_id] = row
            try:
                submission = gradebook.find_submission(assignment, result.student_id)
                penalties[result.student_id] = float(submission.late_submission_penalty or 0.0)
            except MissingEntry:
                penalties[result.student_id] = 0.0
        return names, {gid: cells[gid].max_score for gid in names}, scores, penalties


def lms_csv_text(grades_dir: Path, assignment: str, *, course_root: Path | None = None) -> str:
    """The LMS CSV of one assignment (header in the module docstring)."""
    results = read_results(grades_dir, assignment)
    auto_order, manual_order = _spec_order(assignment)
    seen = list(dict.fromkeys(gid for r in results for gid in r.units))
    units = _ordered(auto_order, seen)
    unit_max = {}
    for result in results:
        for gid, unit in result.units.items():
            unit_max.setdefault(gid, float(unit.max_points))
    written, written_max, written_scores, penalties = [], {}, {}, {}
    if course_root is not None:
        written, written_max, written_scores, penalties = _written_scores(course_root, assignment, results)
        written = _ordered(manual_order, written)
    manual_max = {gid: p for result in results for gid, p in result.manual_points.items()}
    rubric = read_rubric(rubric_path(grades_dir, assignment), manual_max)
    if rubric:  # a filled rubric cell (segkit written) wins over the gradebook's state
        columns = [gid for row in rubric.values() for gid in row]
        written = _ordered(manual_order, list(dict.fromkeys([*written, *columns])))
        for gid in written:
            written_max.setdefault(gid, manual_max.get(gid, 0.0))
        for student, row in rubric.items():
            written_scores.setdefault(student, {}).update({g: v for g, v in row.items() if v is not None})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student_id", "total", "max", *units, *written])
    maximum = sum(unit_max.values()) + sum(written_max.values())
    for result in sorted(results, key=lambda r: r.student_id):
        code = [float(result.units[gid].points) if gid in result.units else None for gid in units]
        hand = [written_scores.get(result.student_id, {}).get(gid) for gid in written]
        total = sum(v for v in code + hand if v is not None) - penalties.get(result.student_id, 0.0)
        cells = ["" if v is None else format_points(v) for v in code + hand]
        writer.writerow(
            [result.student_id, format_points(round(max(total, 0.0), 4)), format_points(round(maximum, 4)), *cells]
        )
    return buffer.getvalue()


def export_lms_csv(grades_dir: Path, assignment: str, *, course_root: Path | None = None) -> Path:
    """Write <grades_dir>/lms-<assignment>.csv; returns its path."""
    return write_atomic(
        Path(grades_dir) / f"lms-{assignment}.csv", lms_csv_text(grades_dir, assignment, course_root=course_root)
    )


# -- command line -------------------------------------------------------------------------------------
def build_parser(prog: str = "segkit gradebook") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Export a grades folder to nbgrader (gradebook.db, autograded/, feedback/) and/or an LMS CSV.",
    )
    parser.add_argument("--grades", type=Path, default=Path("grades"), help="the `make grade` output folder")
    parser.add_argument("--course", type=Path, help="the nbgrader course directory (holds gradebook.db)")
    parser.add_argument(
        "--assignment", action="append", help="only this assignment (repeatable or a,b; default: every graded one)"
    )
    parser.add_argument("--student", action="append", help="only this student (repeatable)")
    parser.add_argument("--lms-csv", action="store_true", help="also write <grades>/lms-<assignment>.csv")
    parser.add_argument(
        "--force", action="store_true", help="redo nbgrader's autograde step for submissions already exported"
    )
    return parser


def _print_summary(summary: ExportSummary):
    waiting = [s for s in summary.students if s.needs_grading]
    print(
        f"{summary.assignment}: {len(summary.students)} submission(s) -> {summary.course / 'gradebook.db'}; "
        f"written answers to grade in formgrader: {len(waiting)} submission(s)"
    )
    for entry in summary.students:
        notes = [f"staged {entry.staged}"] if entry.staged else []
        notes += entry.warnings
        todo = f"to grade: {', '.join(entry.needs_grading)}" if entry.needs_grading else "fully graded"
        print(f"  {entry.student_id:<24} {todo}" + (f"  ({'; '.join(notes)})" if notes else ""))
    pages = [path for entry in summary.students for path in entry.feedback]
    if pages:
        print(f"  feedback (nbgrader's layout), e.g. {pages[0]}")
    unreleasable = [s.student_id for s in summary.students if not s.releasable]
    if unreleasable:
        print(
            f"  not submitted through nbgrader's exchange (no timestamp.txt/submission_secret.txt): "
            f"{', '.join(unreleasable)}; hand their feedback out yourself and release the others with\n"
            f"    nbgrader release_feedback {summary.assignment} --CourseDirectory.student_id_exclude={','.join(unreleasable)}"
        )


def main(argv: list[str] | None = None, prog: str = "segkit gradebook") -> int:
    options = build_parser(prog).parse_args(argv)
    if options.course is None and not options.lms_csv:
        print("error: give --course (nbgrader) and/or --lms-csv", file=sys.stderr)
        return 2
    assignments = [a.strip() for item in options.assignment or [] for a in item.split(",") if a.strip()]
    assignments = assignments or graded_assignments(options.grades)
    if not assignments:
        print(f"error: no results in {options.grades / 'results'}: grade first (make grade)", file=sys.stderr)
        return 2
    try:
        for assignment in assignments:
            if options.course is not None:
                summary = export_nbgrader(
                    options.grades, options.course, assignment, students=options.student, force=options.force
                )
                _print_summary(summary)
            if options.lms_csv:
                path = export_lms_csv(options.grades, assignment, course_root=options.course)
                print(f"{assignment}: LMS CSV {path}")
    except GradebookExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m integrations.gradebook"))
