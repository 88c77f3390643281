"""`segkit written` (`make written`): the written answers of every submission, for grading by hand.

    segkit written                                   # the bundled example submissions
    segkit written submitted/ [--assignment fcn]     # the same folders, notebooks and zips `segkit grade` reads
    segkit written ... --out grades                  # output folder (default grades/)
    segkit written --merge [--out grades]            # after a TA filled rubric.csv: grades.csv and lms-<a>.csv

For every submission, ``<out>/written/<assignment>/<student>.html``: each written question of the
notebook (its manually graded markdown cells, nbgrader ``solution`` + ``grade``, i.e. the assignment's
``manual_units``) in notebook order, with the question's text (from the *released* notebook, so a student
cannot change it), the student's answer (markdown rendered inert: no script, link or image of the student's
reaches the page), the figures near it in the student's notebook (PNG outputs, embedded as base64) and a
score box. A question the notebook lacks, or left as released or empty, is marked "No answer". Every
question starts on a new page when printed, so "Print to PDF" gives one page group per question for
Gradescope's manually graded questions (one file per student, named by student id).

And ``<out>/written/<assignment>/rubric.csv``: ``student_id`` and one column per question (grade_id),
one row per student, empty cells for a TA to fill with points. Running the export again keeps every score
already entered (new students get empty rows). The scores are read back by ``grader.report.read_rubric``
and added to ``grades.csv`` (``grader.report.write_gradebook``), to the LMS CSV and, with a course, to
nbgrader's gradebook as manual scores (``integrations.gradebook``): ``segkit written --merge`` rewrites
grades.csv and ``lms-<assignment>.csv`` from the results already in ``<out>``; ``make gradebook COURSE=...``
writes them into the gradebook.

PDF: not produced. The converters that work offline need what pip cannot install (WeasyPrint: the Pango
system libraries; nbconvert's PDF: TeX, or a Chromium download for webpdf); the page prints to PDF from
any browser, one question per page.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import html
import io
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from grader.assignments import (
    REPO_ROOT,
    AssignmentSpec,
    NotebookError,
    cell_source,
    load_assignment,
    nbgrader_meta,
    read_notebook,
)
from grader.report import markdown_cell_html, read_rubric, rubric_path
from starter.common import write_atomic

DEFAULT_OUT = REPO_ROOT / "grades"
MAX_FIGURES = 6  # figures shown per question: the nearest ones before its answer
MAX_FIGURE_CHARS = 4 * 1024**2  # base64 characters of one PNG (3 MB of image); larger ones are left out
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NO_ANSWER_MISSING = "No answer: the notebook has no cell for this question."
NO_ANSWER_UNCHANGED = "No answer: the cell is as it was released (or empty)."
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]")


@dataclass(frozen=True)
class Question:
    grade_id: str
    points: float
    prompt: str  # markdown of the released notebook's cells just before the answer cell
    released_answer: str  # the answer cell as released ("YOUR ANSWER HERE")


@dataclass
class Answer:
    question: Question
    text: str | None  # None: no answer (see `missing`)
    missing: str = ""  # why there is no answer: NO_ANSWER_MISSING or NO_ANSWER_UNCHANGED
    figures: list[tuple[int, str]] = field(default_factory=list)  # (cell number, base64 PNG)


def is_answer_cell(cell: dict) -> bool:
    """A written answer: a markdown cell nbgrader grades by hand."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "markdown" and bool(meta.get("solution")) and bool(meta.get("grade_id"))


def _is_heading(cell: dict) -> bool:
    return cell.get("cell_type") == "markdown" and cell_source(cell).lstrip().startswith("#")


def questions(spec: AssignmentSpec) -> list[Question]:
    """The assignment's written questions in notebook order, their text from the released notebook (the
    markdown cells right before each answer cell, up to the previous code or graded cell)."""
    released = read_notebook(spec.release_path)
    cells = released["cells"]
    points = {u.grade_id: u.points for u in spec.manual_units}
    found = []
    for index, cell in enumerate(cells):
        gid = nbgrader_meta(cell).get("grade_id")
        if gid not in points or not is_answer_cell(cell):
            continue
        prompt, back = [], index - 1
        while back >= 0 and cells[back].get("cell_type") == "markdown" and not nbgrader_meta(cells[back]):
            prompt.insert(0, cell_source(cells[back]))
            back -= 1
        found.append(Question(gid, points[gid], "\n\n".join(prompt), cell_source(cell)))
    return found


def png_outputs(cell: dict) -> list[str]:
    """The cell's image/png outputs that are base64 of a PNG and not too large (untrusted: checked)."""
    images = []
    outputs = cell.get("outputs") if cell.get("cell_type") == "code" else None
    for output in outputs if isinstance(outputs, list) else []:
        data = output.get("data") if isinstance(output, dict) else None
        png = data.get("image/png") if isinstance(data, dict) else None
        if isinstance(png, list):
            png = "".join(part for part in png if isinstance(part, str))
        if not isinstance(png, str) or len(png) > MAX_FIGURE_CHARS:
            continue
        compact = "".join(png.split())
        try:
            if base64.b64decode(compact, validate=True).startswith(PNG_SIGNATURE):
                images.append(compact)
        except (binascii.Error, ValueError):
            continue
    return images


def nearby_figures(cells: list[dict], answer_index: int) -> list[tuple[int, str]]:
    """The figures a written answer refers to: walking back from its cell, the PNG outputs of the nearest
    code cells, at most MAX_FIGURES, stopping at a section heading once one has been found."""
    figures: list[tuple[int, str]] = []
    for index in range(answer_index - 1, -1, -1):
        cell = cells[index]
        if _is_heading(cell) and figures:
            break
        images = png_outputs(cell) if isinstance(cell, dict) else []
        figures[:0] = [(index + 1, image) for image in images]
        if len(figures) >= MAX_FIGURES:
            return figures[-MAX_FIGURES:]
    return figures


def student_answers(notebook: dict, asked: list[Question]) -> list[Answer]:
    """One Answer per question, in the questions' order (a grade_id in several cells: the first)."""
    cells = [c for c in notebook.get("cells", []) if isinstance(c, dict)]
    where = {}
    for index, cell in enumerate(cells):
        gid = nbgrader_meta(cell).get("grade_id")
        if gid and cell.get("cell_type") == "markdown" and gid not in where:
            where[gid] = index
    answers = []
    for question in asked:
        index = where.get(question.grade_id)
        if index is None:
            answers.append(Answer(question, None, NO_ANSWER_MISSING))
            continue
        text = cell_source(cells[index])
        unchanged = not text.strip() or text.strip() == question.released_answer.strip()
        answer = Answer(question, None if unchanged else text, NO_ANSWER_UNCHANGED if unchanged else "")
        answer.figures = nearby_figures(cells, index)
        answers.append(answer)
    return answers


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:60em;color:#222}
section.question{border-top:2px solid #888;margin-top:2em;padding-top:.5em}
.prompt{background:#f4f4f4;padding:.3em .8em;border-left:4px solid #999}
.answer{padding:.3em .8em;border-left:4px solid #3465a4}
.missing{color:#a40000;font-weight:bold}
figure{margin:.6em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{color:#666;font-size:.85em}
.score{margin-top:1em;font-size:1.1em}
@media print{section.question{page-break-before:always;border:none}}
"""


def render_html(assignment: str, student: str, answers: list[Answer]) -> str:
    """One student's written answers as a self-contained page (figures embedded, nothing fetched)."""
    total = sum(a.question.points for a in answers)
    parts = [
        f"<h1>Written answers: {html.escape(assignment)}, student {html.escape(student)}</h1>",
        f"<p>{len(answers)} question(s), {total:g} point(s) graded by hand; "
        f"{sum(a.text is None for a in answers)} without an answer.</p>",
    ]
    for number, answer in enumerate(answers, start=1):
        question = answer.question
        gid = html.escape(question.grade_id)
        body = (
            f"<p class='missing'>{html.escape(answer.missing)}</p>"
            if answer.text is None
            else markdown_cell_html(answer.text)
        )
        figures = "".join(
            f"<figure><img alt='output of cell {cell}' src='data:image/png;base64,{image}'>"
            f"<figcaption>Figure: output of cell {cell} of the student's notebook</figcaption></figure>"
            for cell, image in answer.figures
        )
        parts.append(
            f"<section class='question' id='{gid}'><h2>Question {number} <code>{gid}</code> "
            f"({question.points:g} points)</h2><div class='prompt'>{markdown_cell_html(question.prompt)}</div>"
            f"<h3>Answer</h3><div class='answer'>{body}</div>{figures}"
            f"<p class='score'>Score: ______ / {question.points:g}</p></section>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(assignment)}: {html.escape(student)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )


def safe_file_name(student: str) -> str:
    """The student id as a file name (ids from the intake are already plain; this never lets one escape)."""
    name = _UNSAFE_NAME.sub("_", student).lstrip(".")
    return name or "_"


def write_rubric(path: Path, students: list[str], asked: list[Question]) -> Path:
    """rubric.csv with a row per student (old rows kept) and a column per question; scores already
    entered are kept, everything else is empty for a TA to fill."""
    kept = read_rubric(path)
    columns = [q.grade_id for q in asked]
    columns += [gid for row in kept.values() for gid in row if gid not in columns]
    columns = list(dict.fromkeys(columns))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student_id", *columns])
    for student in sorted({*students, *kept}):
        row = kept.get(student, {})
        writer.writerow([student, *("" if row.get(gid) is None else f"{row[gid]:g}" for gid in columns)])
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, buffer.getvalue())


@dataclass
class ExportResult:
    assignment: str
    pages: list[Path]
    rubric: Path
    unanswered: dict[str, list[str]]  # student -> grade_ids without an answer
    unreadable: list[str]  # students whose notebook could not be read


def export_assignment(name: str, submissions: list[tuple[str, Path]], out: Path) -> ExportResult:
    """Every submission's page and the assignment's rubric.csv in ``<out>/written/<name>/``."""
    spec = load_assignment(name)
    asked = questions(spec)
    folder = rubric_path(out, name).parent
    folder.mkdir(parents=True, exist_ok=True)
    result = ExportResult(name, [], rubric_path(out, name), {}, [])
    students = []
    for student, notebook_path in sorted(submissions):
        try:
            notebook = read_notebook(notebook_path)
        except (NotebookError, OSError):
            result.unreadable.append(student)
            notebook = {"cells": []}  # every question then shows "No answer"
        answers = student_answers(notebook, asked)
        page = folder / f"{safe_file_name(student)}.html"
        write_atomic(page, render_html(name, student, answers))
        result.pages.append(page)
        result.unanswered[student] = [a.question.grade_id for a in answers if a.text is None]
        students.append(student)
    write_rubric(result.rubric, students, asked)
    return result


def merge(out: Path) -> list[Path]:
    """grades.csv and every lms-<assignment>.csv of `out` rewritten from its results, with the rubric scores."""
    from grader.report import write_gradebook
    from integrations.gradebook import export_lms_csv, graded_assignments, read_results

    names = graded_assignments(out)
    results = [r for name in names for r in read_results(out, name)]
    columns = [u.grade_id for name in sorted(names) for u in load_assignment(name).auto_units]
    return [write_gradebook(results, columns, out), *(export_lms_csv(out, name) for name in names)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segkit written",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="*", type=Path, help="submission folders, notebooks or zips (none: the bundled examples)"
    )
    parser.add_argument("--assignment", help="only this assignment (and the assignment of loose notebooks)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default grades/)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="only merge: rewrite <out>/grades.csv and <out>/lms-<a>.csv with the rubric scores",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    out = options.out.resolve()
    if options.merge:
        for path in merge(out):
            print(f"wrote {path}")
        return 0
    from segkit.similarity import find_submissions, submission_paths

    paths = submission_paths(options.paths, options.assignment, "exporting")

    with tempfile.TemporaryDirectory(prefix="segkit-written-") as unpack_root:
        found = find_submissions(paths, options.assignment, Path(unpack_root))
        if not found:
            print("No submissions found.", file=sys.stderr)
            return 1
        for name in sorted(found):
            result = export_assignment(name, found[name], out)
            missing = sum(bool(v) for v in result.unanswered.values())
            print(
                f"{name}: {len(result.pages)} page(s) in {result.rubric.parent}; rubric {result.rubric.name}; "
                f"{missing} student(s) with an unanswered question"
                + (f"; unreadable: {', '.join(result.unreadable)}" if result.unreadable else "")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
