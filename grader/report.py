"""Turn per-submission results into grades.csv, feedback (Markdown + HTML) and Gradescope JSON."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from grader.results import CheckResult, SubmissionResult
from grader.sandbox import PROTECTION_TEXT, Protection
from starter.common import write_atomic

UNSAFE_FLAG = "--unsafe-no-sandbox"
UNSAFE_NOTE = (
    f"Graded with {UNSAFE_FLAG}: student code ran WITHOUT the sandbox (it could read and write "
    "everything the grading user can, use the network and signal other processes)."
)


def _fmt(points: float) -> str:
    return f"{points:g}"


def write_gradebook(results: list[SubmissionResult], unit_columns: list[str], out_dir: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student_id", "assignment", *unit_columns, "total", "max"])
    for result in sorted(results, key=lambda r: (r.assignment, r.student_id)):
        row = [result.student_id, result.assignment]
        row += [_fmt(result.units[gid].points) if gid in result.units else "" for gid in unit_columns]
        row += [_fmt(result.total), _fmt(result.max_points)]
        writer.writerow(row)
    path = out_dir / "grades.csv"
    write_atomic(path, buffer.getvalue())
    return path


def feedback_markdown(result: SubmissionResult) -> str:
    lines = [
        f"# Feedback: {result.assignment} — {result.student_id}",
        "",
        f"**Autograded score: {_fmt(result.total)} / {_fmt(result.max_points)}**",
        "",
    ]
    if result.unsafe_no_sandbox:
        lines += [f"> **{UNSAFE_NOTE}**", ""]
    if result.notebook_error:
        lines += [f"> Your notebook could not be graded: {result.notebook_error}", ""]
    lines += ["| unit | points | |", "|---|---|---|"]
    for grade_id, unit in result.units.items():
        mark = "✓" if unit.full_marks else "✗"
        lines.append(f"| `{grade_id}` | {_fmt(unit.points)} / {_fmt(unit.max_points)} | {mark} |")
    lines.append("")
    for grade_id, unit in result.units.items():
        lines += [f"## `{grade_id}` — {_fmt(unit.points)} / {_fmt(unit.max_points)}", ""]
        for check in unit.checks:
            status = "passed" if check.passed else "failed"
            lines.append(f"- **{status}** ({_fmt(check.points)} / {_fmt(check.max_points)}): {check.question}")
            if not check.passed:
                lines.append(f"  - {check.message}")
                if check.detail:
                    lines.append(f"  - Detail: {check.detail}")
        lines.append("")
    if result.manual_points:
        lines += [
            "## Written answers",
            "",
            "Graded by hand by the course staff: "
            + ", ".join(f"`{gid}` ({_fmt(p)} pts)" for gid, p in result.manual_points.items()),
            "",
        ]
    return "\n".join(lines)


def _check_html(check: CheckResult) -> str:
    failure = (
        ""
        if check.passed
        else f"<br><em>{html.escape(check.message)}</em>"
        + (f"<br><small>{html.escape(check.detail)}</small>" if check.detail else "")
    )
    return (
        f"<li class='{'ok' if check.passed else 'bad'}'>{'✓' if check.passed else '✗'} "
        f"{html.escape(check.question)} ({_fmt(check.points)}/{_fmt(check.max_points)})" + failure + "</li>"
    )


def feedback_html(result: SubmissionResult) -> str:
    rows = []
    for grade_id, unit in result.units.items():
        checks = "".join(_check_html(check) for check in unit.checks)
        rows.append(
            f"<h2><code>{html.escape(grade_id)}</code>: {_fmt(unit.points)} / {_fmt(unit.max_points)}</h2>"
            f"<ul>{checks}</ul>"
        )
    error = (
        f"<p class='bad'>Your notebook could not be graded: {html.escape(result.notebook_error)}</p>"
        if result.notebook_error
        else ""
    )
    if result.unsafe_no_sandbox:
        error = f"<p class='bad'><strong>{html.escape(UNSAFE_NOTE)}</strong></p>" + error
    return (
        "<!doctype html><meta charset='utf-8'>"
        f"<title>{html.escape(result.assignment)}: {html.escape(result.student_id)}</title>"
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}.ok{color:#176}.bad{color:#a11}"
        "li{margin:.3em 0}</style>"
        f"<h1>{html.escape(result.assignment)} — {html.escape(result.student_id)}</h1>"
        f"<p><strong>Autograded score: {_fmt(result.total)} / {_fmt(result.max_points)}</strong></p>{error}"
        + "".join(rows)
    )


def gradescope_json(result: SubmissionResult) -> dict:
    """Gradescope's results.json format: score, tests[] with name/score/max_score/output/visibility."""
    tests = []
    for grade_id, unit in result.units.items():
        for check in unit.checks:
            output = "" if check.passed else check.message + (f"\n{check.detail}" if check.detail else "")
            tests.append(
                {
                    "name": f"{grade_id}: {check.question}",
                    "score": check.points,
                    "max_score": check.max_points,
                    "output": output,
                    "visibility": "visible",
                }
            )
    return {
        "score": result.total,
        "tests": tests,
        "output": result.notebook_error or "Autograded units; written answers are graded by hand.",
    }


def write_submission_reports(result: SubmissionResult, out_dir: Path):
    base = out_dir / "feedback" / result.student_id
    write_atomic(base / f"{result.assignment}.md", feedback_markdown(result))
    write_atomic(base / f"{result.assignment}.html", feedback_html(result))
    write_atomic(
        out_dir / "gradescope" / result.assignment / result.student_id / "results.json",
        json.dumps(gradescope_json(result), indent=1),
    )


def summary_table(results: list[SubmissionResult]) -> str:
    lines = [f"{'student':<24} {'assignment':<12} {'score':>12}  notes"]
    for r in sorted(results, key=lambda r: (r.assignment, r.student_id)):
        notes = r.notebook_error[:50]
        if not notes and r.worker_restarts:
            notes = f"worker restarted {r.worker_restarts}x"
        lines.append(f"{r.student_id:<24} {r.assignment:<12} {_fmt(r.total):>6} / {_fmt(r.max_points):<5}  {notes}")
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
):
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
        summary_table(results),
        "```",
        "",
    ]
    write_atomic(out_dir / "report.md", "\n".join(text))
