"""Turn per-submission results into grades.csv, feedback (Markdown + HTML) and Gradescope JSON.

Every string that came from a student (a check's `detail`, a cell's error, `notebook_error`, the
student id, the student's own notebook) is untrusted here, whatever the worker or the grader did
to it before: it is cut to `MAX_TEXT_CHARS` (head and tail kept), stripped of control characters,
and written so that it can only render as text: a Markdown code span or fenced block in `.md`
(and nbgrader comments, through `md_code`), `html.escape` in `.html`, and Gradescope's `text`
output format in `results.json`. One submission's feedback stays under `MAX_FEEDBACK_BYTES` per
format (the HTML's view of the student's own notebook has its own bound, `MAX_NOTEBOOK_VIEW_BYTES`).

What a student sees also depends on when (issue 29): each check has a visibility level from the
assignment's `[visibility]` table (`grader.assignments.VisibilityConfig`), carried as is into
Gradescope's `results.json` (Gradescope applies it) and applied to the `.md`/`.html` for one release
stage: `before` (the due date: only `visible` results) or `after` (grades published: everything
but `hidden`).
"""

from __future__ import annotations

import base64
import binascii
import csv
import functools
import hashlib
import html
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from grader.assignments import (
    ASSIGNMENTS_DIR,
    CONFIG_NAME,
    SOLUTIONS_DIR,
    AssignmentConfigError,
    VisibilityConfig,
    read_config,
)
from grader.results import CheckResult, SubmissionResult, UnitResult
from grader.sandbox import PROTECTION_TEXT, Protection
from starter.common import (
    NotebookError,
    cell_source,
    grade_id,
    load_notebook,
    nbgrader_meta,
    parse_notebook,
    write_atomic,
)

if TYPE_CHECKING:
    import mistune

UNSAFE_FLAG = "--unsafe-no-sandbox"
UNSAFE_NOTE = (
    f"Graded with {UNSAFE_FLAG}: student code ran WITHOUT the sandbox (it could read and write "
    "everything the grading user can, use the network and signal other processes)."
)

# -- bounds on what one submission's feedback holds ------------------------------------------------
MAX_TEXT_CHARS = 2000  # one detail, cell error or notebook error (then cut, head and tail kept)
MAX_ID_CHARS = 120  # a student id or grade_id shown in a heading
MAX_FEEDBACK_BYTES = 64 * 1024  # the .md, the results part of the .html, Gradescope's results.json
FEEDBACK_RESERVE_BYTES = 6 * 1024  # kept for the lines after the checks (written answers, notes)
MAX_NOTEBOOK_VIEW_BYTES = 2 * 1024 * 1024  # the student's own cells in the .html, images included
MAX_CELL_CHARS = 20_000  # one cell's source in that view
MAX_IMAGE_BYTES = 256 * 1024  # one PNG output shown in that view (base64 text)
MAX_NOTEBOOK_READ_BYTES = 16 * 1024 * 1024  # read whole (outputs kept) up to this; above, sources only
LEFT_OUT = "(left out: the feedback of one submission is limited to {kb} kB)"

RELEASE_STAGES = ("before", "after")
DEFAULT_RELEASE_STAGE = "after"

# C0/C1 controls (not tab or newline) and the bidirectional overrides that can make text read
# differently from what it is.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def format_points(points: float) -> str:
    """Points as every output writes them: 2, 0.5, 1.25 (no trailing zeros)."""
    return f"{points:g}"


# -- untrusted text ------------------------------------------------------------------------------------
def safe_text(text: object, limit: int = MAX_TEXT_CHARS) -> str:
    """An untrusted string cut to `limit` characters (its head and tail, saying how much was left
    out), without control characters; line ends become \\n. Only the kept part is ever copied."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if len(text) > limit:
        tail = limit // 3
        head = limit - tail
        text = f"{text[:head]}\n… [{len(text) - head - tail} characters left out] …\n{text[-tail:]}"
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def safe_line(text: object, limit: int = MAX_ID_CHARS) -> str:
    """An untrusted string as one line (ids, names)."""
    return " ".join(safe_text(text, limit).split("\n")).strip()


def _longest_run(text: str, char: str) -> int:
    runs = re.findall(f"{re.escape(char)}+", text)
    return max((len(run) for run in runs), default=0)


# Text made only of these characters means nothing to Markdown (CommonMark and GitHub's extensions) when
# it follows other text on a line: no emphasis, link, image, HTML, entity, code, table cell or autolink.
_MD_PLAIN = re.compile(r"[A-Za-z0-9 .,:;()'\"=+/?!%-]*")
_MD_AUTOLINK = re.compile(r"://|www\.", re.IGNORECASE)


def md_inline(text: str) -> str:
    """One line of untrusted text, after other text on its line: as it is when it cannot be markup
    (so ordinary messages read naturally in the raw file), else as a code span."""
    line = safe_line(text, MAX_TEXT_CHARS)
    if _MD_PLAIN.fullmatch(line) and not _MD_AUTOLINK.search(line):
        return line
    return md_code_span(line)


def md_code_span(text: str) -> str:
    """One line of untrusted text as a Markdown code span: rendered verbatim, never as markup."""
    text = safe_line(text, MAX_TEXT_CHARS)
    if not text:
        return ""
    fence = "`" * (_longest_run(text, "`") + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_code_block(text: str, indent: str = "") -> list[str]:
    """Untrusted (multi-line) text as a fenced Markdown code block, each line indented by `indent`
    (to sit inside a list item). The fence is longer than any backtick run in the text, so no line
    of it can close the block early."""
    text = safe_text(text)
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    return [f"{indent}{fence}", *(f"{indent}{line}" if line else "" for line in text.split("\n")), f"{indent}{fence}"]


def md_code(text: str, indent: str = "") -> list[str]:
    """Untrusted text as inert Markdown: inline (`md_inline`) when it is one line, else a fenced block."""
    text = safe_text(text)
    if "\n" in text.strip("\n"):
        return md_code_block(text.strip("\n"), indent)
    return [md_inline(text)]


def md_table_cell(text: str) -> str:
    """An id as a code span inside a GFM table row (a pipe would end the cell, even in a span)."""
    return md_code_span(text).replace("|", "\\|")


def html_text(text: object, limit: int = MAX_TEXT_CHARS) -> str:
    """Untrusted text as HTML text: cut, cleaned, escaped; several lines keep their breaks in a <pre>."""
    cleaned = safe_text(text, limit)
    if "\n" in cleaned.strip("\n"):
        return f"<pre>{html.escape(cleaned.strip(chr(10)))}</pre>"
    return html.escape(cleaned)


# -- visibility -----------------------------------------------------------------------------------------
@functools.cache
def visibility_of(assignment: str) -> VisibilityConfig:
    """The assignment's `[visibility]` table (defaults for an assignment the kit does not know)."""
    path = ASSIGNMENTS_DIR / assignment / CONFIG_NAME
    if not re.fullmatch(r"[A-Za-z0-9_-]+", assignment) or not path.is_file():
        return VisibilityConfig()
    try:
        return read_config(path).visibility
    except AssignmentConfigError:
        return VisibilityConfig()


def shown_at(level: str, stage: str) -> bool:
    """Whether a result of this visibility level is shown at this release stage."""
    if stage == "before":
        return level == "visible"
    return level != "hidden"


def _release_note(level: str) -> str:
    return {
        "after_due_date": "shown after the due date",
        "after_published": "shown once the grades are published",
        "hidden": "not shown to students",
    }.get(level, "not shown yet")


@dataclass
class UnitView:
    """One unit as a student sees it at one stage: the checks shown and what is withheld."""

    unit: UnitResult
    shown: list[CheckResult]
    withheld: dict[str, int]  # level -> how many of its checks are withheld
    cell_error: str  # the error its cell raised when run ("" when it ran), or "" when withheld

    @property
    def points_shown(self) -> bool:
        return not self.withheld


@dataclass
class FeedbackView:
    """What of a submission's result a student sees at one release stage."""

    result: SubmissionResult
    stage: str
    visibility: VisibilityConfig
    units: dict[str, UnitView] = field(default_factory=dict)

    @property
    def total_shown(self) -> bool:
        # Gradescope shows the total only when the student sees every test that carries points.
        return shown_at(self.visibility.total, self.stage) and all(view.points_shown for view in self.units.values())


def feedback_view(result: SubmissionResult, stage: str = DEFAULT_RELEASE_STAGE) -> FeedbackView:
    if stage not in RELEASE_STAGES:
        raise ValueError(f"release stage {stage!r}: one of {', '.join(RELEASE_STAGES)}")
    visibility = visibility_of(result.assignment)
    view = FeedbackView(result, stage, visibility)
    public = shown_at(visibility.public_checks, stage)
    for gid, unit in result.units.items():
        shown: list[CheckResult] = []
        withheld: dict[str, int] = {}
        for check in unit.checks:
            level = visibility.for_check(gid, check.test)
            if shown_at(level, stage):
                shown.append(check)
            else:
                withheld[level] = withheld.get(level, 0) + 1
        status = result.cell_status.get(gid, "ok")
        view.units[gid] = UnitView(unit, shown, withheld, status if public and status != "ok" else "")
    return view


def _withheld_text(withheld: dict[str, int]) -> str:
    return "; ".join(
        f"{count} check{'s' if count > 1 else ''}: {_release_note(level)}" for level, count in withheld.items()
    )


# -- one budget per feedback file ---------------------------------------------------------------------
class Budget:
    """Bytes left for untrusted text in one output file; once spent, details are left out."""

    def __init__(self, total: int = MAX_FEEDBACK_BYTES - FEEDBACK_RESERVE_BYTES) -> None:
        self.left = total

    def take(self, text: str) -> bool:
        size = len(text.encode("utf-8"))
        if size > self.left:
            self.left = 0
            return False
        self.left -= size
        return True


def _left_out() -> str:
    return LEFT_OUT.format(kb=MAX_FEEDBACK_BYTES // 1024)


def detail_key(text: str) -> tuple[int, str]:
    """What identifies a detail as shown: its length and a digest of the part that is shown (never a
    copy of a huge text). Equal details (a unit's error copied into each of its checks) are written once."""
    return len(text), hashlib.sha256(safe_text(text).encode("utf-8", "replace")).hexdigest()


def ends_with_error(detail: str, error: str) -> bool:
    """Whether a check's detail is '...: <error>' (the runner's text for a unit whose cell failed),
    compared in place: no copy of either text."""
    size = len(error)
    return bool(error) and len(detail) > size + 1 and detail.endswith(error) and detail[-size - 2 : -size] == ": "


def _repeats(unit_view: UnitView, check: CheckResult, seen: dict[tuple[int, str], int]) -> str:
    """'' when the check's detail is new; else a sentence pointing to where it was shown."""
    status = unit_view.cell_error
    if ends_with_error(check.detail, status):
        return "the error your cell raised, shown under the unit's heading."
    key = detail_key(check.detail)
    if key in seen:
        return f"the same as for check {seen[key]} above."
    return ""


# -- Markdown ---------------------------------------------------------------------------------------------
# Written answers graded by hand: `segkit written` writes <out>/written/<assignment>/rubric.csv (student_id,
# then one column per written answer's grade_id, empty until a TA fills it in); grades.csv and the LMS CSV
# add its scores. The reader lives here because the grading engine imports no tool (segkit/).
class RubricError(ValueError):
    """A rubric file that cannot be read; the message names the file, the row and the column."""


def rubric_path(out_dir: Path, assignment: str) -> Path:
    return Path(out_dir) / "written" / assignment / "rubric.csv"


def read_rubric(path: Path, max_points: dict[str, float] | None = None) -> dict[str, dict[str, float | None]]:
    """{student: {grade_id: score, None where the cell is empty}} of a rubric CSV ({} when there is none).
    A score that is not a number, or lies outside 0..max_points[grade_id], raises RubricError."""
    if not Path(path).is_file():
        return {}
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    scores: dict[str, dict[str, float | None]] = {}
    for number, row in enumerate(rows, start=2):
        student = (row.pop("student_id", None) or "").strip()
        if not student:
            continue
        scores[student] = {}
        for gid, text in row.items():
            text = (text or "").strip()
            if gid is None or not gid.strip():
                continue
            try:
                value = float(text) if text else None
            except ValueError:
                raise RubricError(f"{path}, line {number}, column {gid}: {text!r} is not a number") from None
            limit = (max_points or {}).get(gid)
            upper = limit if limit is not None else float("inf")
            if value is not None and not (0 <= value <= upper):
                raise RubricError(f"{path}, line {number}, column {gid}: {text} is outside 0..{format_points(upper)}")
            scores[student][gid.strip()] = value
    return scores


MAX_NOTE_CHARS = 300  # one notes cell of grades.csv
_SPREADSHEET_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a cell starting so is a formula to a spreadsheet


def gradebook_note(result: SubmissionResult) -> str:
    """The notes cell of a grades.csv row: why it is 0 without grading (a student whose files were all
    rejected, a notebook that could not be read), empty otherwise. Untrusted text: capped, without
    control characters, on one line, and quoted when a spreadsheet would read it as a formula."""
    if not result.notebook_error:
        return ""
    note = " ".join(safe_text(result.notebook_error, MAX_NOTE_CHARS).split())
    return f"'{note}" if note.startswith(_SPREADSHEET_FORMULA) else note


def write_gradebook(results: list[SubmissionResult], unit_columns: list[str], out_dir: Path) -> Path:
    rubrics = {}  # assignment -> the rubric's scores, for assignments whose written answers have a rubric file
    for result in results:
        if result.assignment not in rubrics:
            rubrics[result.assignment] = read_rubric(rubric_path(out_dir, result.assignment), result.manual_points)
    written = list(dict.fromkeys(gid for rubric in rubrics.values() for row in rubric.values() for gid in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student_id", "assignment", *unit_columns, *written, "total", "max", "notes"])
    for result in sorted(results, key=lambda r: (r.assignment, r.student_id)):
        row = [result.student_id, result.assignment]
        row += [format_points(result.units[gid].points) if gid in result.units else "" for gid in unit_columns]
        hand = rubrics[result.assignment].get(result.student_id, {})
        row += ["" if (score := hand.get(gid)) is None else format_points(score) for gid in written]
        graded = sum(v for v in hand.values() if v is not None)
        hand_max = sum(result.manual_points.get(gid, 0.0) for gid in written) if rubrics[result.assignment] else 0.0
        row += [format_points(result.total + graded), format_points(result.max_points + hand_max)]
        writer.writerow([*row, gradebook_note(result)])
    path = out_dir / "grades.csv"
    write_atomic(path, buffer.getvalue())
    return path


def _md_score_line(view: FeedbackView) -> str:
    result = view.result
    if view.total_shown:
        return f"**Autograded score: {format_points(result.total)} / {format_points(result.max_points)}**"
    return f"**Autograded score: {_release_note(view.visibility.total)} (out of {format_points(result.max_points)})**"


def _md_unit_points(unit_view: UnitView) -> str:
    unit = unit_view.unit
    if unit_view.points_shown:
        return f"{format_points(unit.points)} / {format_points(unit.max_points)}"
    return f"? / {format_points(unit.max_points)}"


NOT_IMPLEMENTED_CELL = "Your cell is not implemented yet (it still raises NotImplementedError)."
CELL_ERROR = "Your cell raised an error when the grader ran it:"


def _md_cell_error(status: str, budget: Budget) -> list[str]:
    if status.startswith("NotImplementedError"):
        return [NOT_IMPLEMENTED_CELL]
    error = md_code_block(status) if budget.take(safe_text(status)) else [_left_out()]
    return [CELL_ERROR, "", *error]


def _md_unit(gid: str, unit_view: UnitView, budget: Budget) -> list[str]:
    lines = [f"## {md_code_span(gid)} — {_md_unit_points(unit_view)}", ""]
    if unit_view.cell_error:
        lines += [*_md_cell_error(unit_view.cell_error, budget), ""]
    seen: dict[tuple[int, str], int] = {}  # detail_key -> the number of the check that showed it
    for number, check in enumerate(unit_view.shown, start=1):
        status = "passed" if check.passed else "failed"
        lines.append(
            f"- **{status}** ({format_points(check.points)} / {format_points(check.max_points)}): {check.question}"
        )
        if check.passed:
            continue
        lines.append(f"  - {check.message}")
        if not check.detail:
            continue
        repeat = _repeats(unit_view, check, seen)
        if repeat:
            lines.append(f"  - Detail: {repeat}")
            continue
        seen[detail_key(check.detail)] = number
        detail = md_code(check.detail, indent="    ")
        if not budget.take("\n".join(detail)):
            lines.append(f"  - Detail: {_left_out()}")
        elif len(detail) == 1:
            lines.append(f"  - Detail: {detail[0]}")
        else:
            lines += ["  - Detail:", *detail]
    if unit_view.withheld:
        lines.append(f"- {_withheld_text(unit_view.withheld)}")
    lines.append("")
    return lines


def feedback_markdown(result: SubmissionResult, stage: str = DEFAULT_RELEASE_STAGE) -> str:
    view = feedback_view(result, stage)
    budget = Budget()
    lines = [
        f"# Feedback: {md_inline(result.assignment)} — {md_inline(result.student_id)}",
        "",
        _md_score_line(view),
        "",
    ]
    if result.unsafe_no_sandbox:
        lines += [f"> **{UNSAFE_NOTE}**", ""]
    if sandbox_note(result):
        lines += [f"> {sandbox_note(result)}", ""]
    if result.notebook_error:
        error = md_code(result.notebook_error)
        budget.take("\n".join(error))
        if len(error) == 1:
            lines += [f"> Your notebook could not be graded: {error[0]}", ""]
        else:
            lines += ["> Your notebook could not be graded:", "", *error, ""]
    lines += ["| unit | points | |", "|---|---|---|"]
    for gid, unit_view in view.units.items():
        mark = ("✓" if unit_view.unit.full_marks else "✗") if unit_view.points_shown else "…"
        lines.append(f"| {md_table_cell(gid)} | {_md_unit_points(unit_view)} | {mark} |")
    lines.append("")
    for gid, unit_view in view.units.items():
        if budget.left == 0:
            lines += [f"## {md_code_span(gid)} — {_md_unit_points(unit_view)}", "", _left_out(), ""]
            continue
        lines += _md_unit(gid, unit_view, budget)
    if result.manual_points:
        lines += [
            "## Written answers",
            "",
            "Graded by hand by the course staff: "
            + ", ".join(
                f"{md_code_span(gid)} ({format_points(p)} pts)" for gid, p in list(result.manual_points.items())[:50]
            ),
            "",
        ]
    return "\n".join(lines)


# -- HTML ----------------------------------------------------------------------------------------------------
STYLE = (
    "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}.ok{color:#176}.bad{color:#a11}"
    "li{margin:.3em 0}</style>"
)
NOTEBOOK_STYLE = (  # added to STYLE by the notebook view
    "<style>body{max-width:56em;padding:0 1em}pre{white-space:pre-wrap;overflow-wrap:anywhere;"
    "background:#f6f6f6;padding:.5em}.cell{border:1px solid #ccc;border-radius:4px;margin:1em 0;padding:0 .8em}"
    ".cell-label{color:#777;font-size:.8em;margin:.4em 0 0}.results{border-left:4px solid #888;"
    "padding:.2em 1em;margin:-.6em 0 1.2em;background:#fafafa}.results.full{border-color:#176}"
    ".results.part{border-color:#a11}.cell img{max-width:100%}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.2em .6em}</style>"
)


def _check_html(check: CheckResult, repeat: str, budget: Budget) -> str:
    failure = ""
    if not check.passed:
        failure = f"<br><em>{html.escape(check.message)}</em>"
        if repeat:
            failure += f"<br><small>Detail: {html.escape(repeat)}</small>"
        elif check.detail:
            detail = html_text(check.detail)
            failure += f"<br><small>{detail if budget.take(detail) else html.escape(_left_out())}</small>"
    return (
        f"<li class='{'ok' if check.passed else 'bad'}'>{'✓' if check.passed else '✗'} "
        f"{html.escape(check.question)} ({format_points(check.points)}/{format_points(check.max_points)})"
        + failure
        + "</li>"
    )


def _unit_html(gid: str, unit_view: UnitView, budget: Budget, *, under_cell: bool = False) -> str:
    """A unit's points, its cell's error and its checks; `under_cell`: as a box under the cell in the
    notebook view (with an anchor the summary table links to)."""
    unit = unit_view.unit
    points = _md_unit_points(unit_view)
    anchor = f" id='unit-{_anchor(gid)}'" if under_cell else ""
    parts = [f"<h2{anchor}><code>{html.escape(safe_line(gid))}</code>: {points}</h2>"]
    if unit_view.cell_error.startswith("NotImplementedError"):
        parts.append(f"<p class='bad'>{html.escape(NOT_IMPLEMENTED_CELL)}</p>")
    elif unit_view.cell_error:
        error = html_text(unit_view.cell_error)
        shown = error if budget.take(error) else html.escape(_left_out())
        parts.append(f"<p class='bad'>{html.escape(CELL_ERROR)} {shown}</p>")
    seen: dict[tuple[int, str], int] = {}  # detail_key -> the number of the check that showed it
    items = []
    for number, check in enumerate(unit_view.shown, start=1):
        repeat = "" if check.passed or not check.detail else _repeats(unit_view, check, seen)
        if not check.passed and check.detail and not repeat:
            seen[detail_key(check.detail)] = number
        items.append(_check_html(check, repeat, budget))
    if unit_view.withheld:
        items.append(f"<li>{html.escape(_withheld_text(unit_view.withheld))}</li>")
    parts.append(f"<ul>{''.join(items)}</ul>")
    if not under_cell:
        return "".join(parts)
    state = "full" if unit_view.points_shown and unit.full_marks else "part" if unit_view.points_shown else ""
    return f"<section class='results {state}'>{''.join(parts)}</section>"


def _anchor(gid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", safe_line(gid, 80))


def _html_head(view: FeedbackView) -> str:
    result = view.result
    assignment, student = html.escape(safe_line(result.assignment)), html.escape(safe_line(result.student_id))
    if view.total_shown:
        score = f"Autograded score: {format_points(result.total)} / {format_points(result.max_points)}"
    else:
        score = f"Autograded score: {_release_note(view.visibility.total)} (out of {format_points(result.max_points)})"
    notes = ""
    if result.unsafe_no_sandbox:
        notes += f"<p class='bad'><strong>{html.escape(UNSAFE_NOTE)}</strong></p>"
    if sandbox_note(result):
        notes += f"<p>{html.escape(sandbox_note(result))}</p>"
    if result.notebook_error:
        notes += f"<p class='bad'>Your notebook could not be graded: {html_text(result.notebook_error)}</p>"
    return (
        f"<!doctype html><meta charset='utf-8'><title>{assignment}: {student}</title>{STYLE}"
        f"<h1>{assignment} — {student}</h1><p><strong>{html.escape(score)}</strong></p>{notes}"
    )


def _summary_table(view: FeedbackView) -> str:
    rows = "".join(
        f"<tr><td><a href='#unit-{_anchor(gid)}'><code>{html.escape(safe_line(gid))}</code></a></td>"
        f"<td>{_md_unit_points(unit_view)}</td></tr>"
        for gid, unit_view in view.units.items()
    )
    return f"<table><tr><th>unit</th><th>points</th></tr>{rows}</table>" if rows else ""


def feedback_html(
    result: SubmissionResult, stage: str = DEFAULT_RELEASE_STAGE, notebook: dict[str, Any] | None = None
) -> str:
    """The feedback page. With the student's notebook (`notebook`, as read by `read_student_notebook`)
    it shows the notebook's cells in order, each graded cell followed by its unit's results; without,
    the units one after the other."""
    view = feedback_view(result, stage)
    budget = Budget()
    if notebook is None:
        return _html_head(view) + "".join(_unit_html(gid, uv, budget) for gid, uv in view.units.items())
    return _html_head(view) + NOTEBOOK_STYLE + _summary_table(view) + notebook_view_html(view, notebook, budget)


# -- the student's own notebook in the feedback page --------------------------------------------------------
def read_student_notebook(result: SubmissionResult) -> dict[str, Any] | None:
    """The graded notebook (SubmissionResult.notebook) for the feedback page, or None when it cannot be
    read. Never follows a symlink at the file itself, never reads a file of the kit's solutions, and
    never holds more than MAX_NOTEBOOK_READ_BYTES of it with its outputs (a larger one is read as
    grading reads it: outputs dropped as they are parsed)."""
    if not result.notebook:
        return None
    path = Path(result.notebook)
    try:
        if path.resolve().is_relative_to(SOLUTIONS_DIR.resolve()):
            return None
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except (OSError, ValueError):
        return None
    try:
        with os.fdopen(descriptor, "rb") as handle:
            data = handle.read(MAX_NOTEBOOK_READ_BYTES + 1)
        if len(data) <= MAX_NOTEBOOK_READ_BYTES:
            return parse_notebook(data).notebook
        del data
        return load_notebook(path).notebook
    except (OSError, NotebookError, ValueError, RecursionError):
        return None


def _markdown_renderer() -> mistune.Markdown | None:
    """Markdown to HTML for the student's own markdown cells: raw HTML escaped, links and images shown
    as text, headings moved below the page's own; None when mistune (nbconvert's) is missing."""
    try:
        import mistune
        from mistune.renderers.html import HTMLRenderer
    except ImportError:
        return None

    class InertRenderer(HTMLRenderer):
        def heading(self, text: str, level: int, **attrs: Any) -> str:
            level = min(6, level + 2)
            return f"<h{level}>{text}</h{level}>\n"

        def link(self, text: str, url: str, title: str | None = None) -> str:
            return f"{text} ({html.escape(url)})"

        def image(self, text: str, url: str, title: str | None = None) -> str:
            return f"[image: {text}]"

    return mistune.create_markdown(escape=True, renderer=InertRenderer(escape=True), plugins=["strikethrough", "table"])


_ALLOWED_TAGS = frozenset(
    "p h3 h4 h5 h6 em strong code pre ul ol li blockquote table thead tbody tr th td hr br del".split()
)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)([^>]*)>")


def _only_allowed_tags(rendered: str) -> str:
    """Second line behind the renderer: any tag outside a small allow-list, and every attribute, is
    escaped or dropped, so even a renderer bug cannot put a script, an image or a link in the page."""

    def keep(match: re.Match[str]) -> str:
        closing, name = match.group(1), match.group(2).lower()
        if name in _ALLOWED_TAGS:
            return f"<{closing}{name}>"
        return html.escape(match.group(0))

    return _TAG.sub(keep, rendered)


def markdown_cell_html(source: str) -> str:
    text = safe_text(source, MAX_CELL_CHARS)
    render = _markdown_renderer()
    if render is None:
        return f"<pre>{html.escape(text)}</pre>"
    return _only_allowed_tags(cast(str, render(text)))  # an HTML renderer renders to text


def _png_outputs(cell: dict[str, Any], budget: Budget) -> list[str]:
    """The cell's image/png outputs that are plain base64 of a PNG, within the size bounds."""
    images = []
    outputs = cell.get("outputs")
    for output in outputs if isinstance(outputs, list) else []:
        data = output.get("data") if isinstance(output, dict) else None
        png = data.get("image/png") if isinstance(data, dict) else None
        if isinstance(png, list):
            png = "".join(part for part in png if isinstance(part, str))
        if not isinstance(png, str) or len(png) > MAX_IMAGE_BYTES or not _BASE64.match(png):
            continue
        compact = "".join(png.split())
        try:
            if not base64.b64decode(compact[:16], validate=True).startswith(_PNG_SIGNATURE):
                continue
            base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            continue
        tag = f"<img alt='output of this cell' src='data:image/png;base64,{compact}'>"
        if budget.take(tag):
            images.append(tag)
    return images


def _cell_html(number: int, cell: dict[str, Any], budget: Budget) -> str:
    kind = cell.get("cell_type")
    source = cell_source(cell)
    if kind == "markdown":
        body = markdown_cell_html(source)
    else:
        body = f"<pre><code>{html.escape(safe_text(source, MAX_CELL_CHARS))}</code></pre>"
    label = f"<p class='cell-label'>cell {number} ({'markdown' if kind == 'markdown' else 'code'})</p>"
    if not budget.take(body):
        return f"<div class='cell'>{label}<p>{html.escape(_left_out_view())}</p></div>"
    images = "".join(_png_outputs(cell, budget)) if kind == "code" else ""
    return f"<div class='cell'>{label}{body}{images}</div>"


def _left_out_view() -> str:
    return f"(not shown: the view of your notebook is limited to {MAX_NOTEBOOK_VIEW_BYTES // 1024**2} MB)"


def notebook_view_html(view: FeedbackView, notebook: dict[str, Any], results_budget: Budget) -> str:
    """The student's cells in order; under each graded cell, its unit's results. Units whose cell is
    not in the notebook are listed after it."""
    cells_budget = Budget(MAX_NOTEBOOK_VIEW_BYTES)
    result = view.result
    parts, placed = ["<h2>Your notebook, with the results of each graded cell</h2>"], set()
    cells = listed if isinstance(listed := notebook.get("cells"), list) else []

    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict):
            continue
        parts.append(_cell_html(number, cell, cells_budget))
        gid = grade_id(cell)
        if gid in view.units and gid not in placed:
            placed.add(gid)
            parts.append(_unit_html(gid, view.units[gid], results_budget, under_cell=True))
        elif gid in result.manual_points or (
            gid and cell.get("cell_type") == "markdown" and nbgrader_meta(cell).get("solution")
        ):
            points = result.manual_points.get(gid)
            note = f": {format_points(points)} pts" if points is not None else ""
            parts.append(
                f"<section class='results'><p>Written answer <code>{html.escape(safe_line(gid))}</code>, "
                f"graded by hand by the course staff{note}.</p></section>"
            )
    missing = [gid for gid in view.units if gid not in placed]
    if missing:
        parts.append("<h2>Graded cells not found in your notebook</h2>")
        parts += [_unit_html(gid, view.units[gid], results_budget, under_cell=True) for gid in missing]
    return "".join(parts)


# -- Gradescope ------------------------------------------------------------------------------------------------
GRADESCOPE_TEXT = "text"  # Gradescope's output format that shows a string as it is, in a <pre>
PUBLIC_TEST_NAME = "{assignment}: your notebook was found and its graded cells ran"


def _public_test(result: SubmissionResult, visibility: VisibilityConfig) -> dict[str, Any]:
    """A 0-point test every student sees (public_checks): the notebook was read, each graded cell
    ran or the error it raised (what running the notebook shows them anyway)."""
    lines = []
    if result.notebook_error:
        lines.append(f"Your notebook could not be graded: {safe_text(result.notebook_error)}")
    failed = {gid: status for gid, status in result.cell_status.items() if status != "ok"}
    for gid in result.units:
        if gid in failed:
            lines.append(
                f"{safe_line(gid)}: your cell raised an error when the grader ran it:\n{safe_text(failed[gid])}"
            )
        elif gid in result.cell_status:
            lines.append(f"{safe_line(gid)}: ran without an error")
    return {
        "name": PUBLIC_TEST_NAME.format(assignment=safe_line(result.assignment)),
        "name_format": GRADESCOPE_TEXT,
        "score": 0.0,
        "max_score": 0.0,
        "status": "failed" if result.notebook_error or failed else "passed",
        "output": "\n".join(lines),
        "output_format": GRADESCOPE_TEXT,
        "visibility": visibility.public_checks,
    }


def sandbox_note(result: SubmissionResult) -> str:
    """One line naming the sandbox protections a weaker layer did not give this grading ("" when every one
    was active, or when the run was unsafe: that has its own note)."""
    if result.unsafe_no_sandbox or not result.protections:
        return ""
    missing = [name for name in PROTECTION_TEXT if name not in result.protections]
    if not missing:
        return ""
    return (
        f"Sandbox: {len(PROTECTION_TEXT) - len(missing)} of {len(PROTECTION_TEXT)} protections were active on this "
        f"grading host; not active: {', '.join(missing)} (the grader's report.md says why)."
    )


def gradescope_json(result: SubmissionResult) -> dict[str, Any]:
    """Gradescope's results.json (their autograder specification): one test per hidden check with its
    visibility from `[visibility]`, numbered <unit>.<check> and tagged with its unit; a 0-point public
    test for the notebook and its cells; every string in the `text` output format (shown as is), every
    untrusted one cut, the whole within MAX_FEEDBACK_BYTES."""
    visibility = visibility_of(result.assignment)
    budget = Budget()
    public = _public_test(result, visibility)
    budget.take(public["output"])
    tests = [public]
    for unit_number, (gid, unit) in enumerate(result.units.items(), start=1):
        status = result.cell_status.get(gid, "ok")
        for check_number, check in enumerate(unit.checks, start=1):
            output = ""
            if not check.passed:
                output = check.message
                if status != "ok" and ends_with_error(check.detail, status):
                    output += f"\nYour cell raised an error: see the test '{public['name']}'."
                elif check.detail:
                    detail = safe_text(check.detail)
                    output += "\n" + (detail if budget.take(detail) else _left_out())
            tests.append(
                {
                    "name": f"{safe_line(gid)}: {check.question}",
                    "name_format": GRADESCOPE_TEXT,
                    "number": f"{unit_number}.{check_number}",
                    "tags": [safe_line(gid)],
                    "score": check.points,
                    "max_score": check.max_points,
                    "status": "passed" if check.passed else "failed",
                    "output": output,
                    "output_format": GRADESCOPE_TEXT,
                    "visibility": visibility.for_check(gid, check.test),
                }
            )
    summary = "Autograded units; written answers are graded by hand."
    if result.notebook_error:
        summary = f"Your notebook could not be graded: {safe_text(result.notebook_error)}"
    if sandbox_note(result):
        summary += "\n" + sandbox_note(result)
    return {
        "score": result.total,
        "output": summary,
        "output_format": GRADESCOPE_TEXT,
        "test_output_format": GRADESCOPE_TEXT,
        "test_name_format": GRADESCOPE_TEXT,
        "visibility": visibility.total,
        "stdout_visibility": visibility.stdout,
        "tests": tests,
    }


def write_submission_reports(result: SubmissionResult, out_dir: Path, stage: str = DEFAULT_RELEASE_STAGE) -> None:
    base = out_dir / "feedback" / result.student_id
    write_atomic(base / f"{result.assignment}.md", feedback_markdown(result, stage))
    write_atomic(base / f"{result.assignment}.html", feedback_html(result, stage, read_student_notebook(result)))
    write_atomic(
        out_dir / "gradescope" / result.assignment / result.student_id / "results.json",
        json.dumps(gradescope_json(result), indent=1),
    )


def summary_table(results: list[SubmissionResult]) -> str:
    lines = [f"{'student':<24} {'assignment':<12} {'score':>12}  notes"]
    for r in sorted(results, key=lambda r: (r.assignment, r.student_id)):
        notes = safe_line(r.notebook_error, 50)
        if not notes and r.worker_restarts:
            notes = f"worker restarted {r.worker_restarts}x"
        lines.append(
            f"{safe_line(r.student_id):<24} {r.assignment:<12} {format_points(r.total):>6} / {format_points(r.max_points):<5}  {notes}"
        )
    return "\n".join(lines)


def protections_text(protections: list[Protection], *, unsafe: bool = False) -> str:
    """One line per protection: what it does and how this host provides it; missing ones say NOT active."""
    by_name = {p.name: p for p in protections}
    lines = [f"**{UNSAFE_NOTE}**", ""] if unsafe else []
    for name, text in PROTECTION_TEXT.items():
        lines.append(
            f"- `{name}`: {by_name[name].describe()}" if name in by_name else f"- NOT active: `{name}`: {text}"
        )
    return "\n".join(lines)


def write_run_report(
    results: list[SubmissionResult], out_dir: Path, protections: list[Protection], *, unsafe: bool = False
) -> None:
    text = [
        "# Grading run",
        "",
        "## Protections around student code",
        "",
        protections_text(protections, unsafe=unsafe),
        "",
        "## Scores",
        "",
        "```",
        summary_table(results).replace("`", "'"),
        "```",
        "",
    ]
    write_atomic(out_dir / "report.md", "\n".join(text))
