"""From results to what people read: grades.csv, report.md, every feedback file, the terminal summary.

A grading run and `segkit collect` both render through `render_outputs`, so the same results give
the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from grader.report import (
    DEFAULT_RELEASE_STAGE,
    protections_text,
    summary_table,
    write_gradebook,
    write_run_report,
    write_submission_reports,
)
from grader.results import SubmissionResult
from grader.run.store import RUN_MANIFEST, spec_of
from grader.sandbox import Protection


def render_outputs(
    results: list[SubmissionResult],
    out_dir: Path,
    protections: list[Protection],
    *,
    unsafe: bool,
    refresh_feedback: bool = False,
    release_stage: str = DEFAULT_RELEASE_STAGE,
) -> Path:
    """grades.csv, report.md and every result's feedback (Markdown, HTML, Gradescope JSON) in
    `out_dir`. Feedback already on disk is kept unless `refresh_feedback`. The .md and .html show
    what students see at `release_stage` (grader.report: before or after the due date)."""
    for result in results:  # reports of reused results may be missing (e.g. deleted by hand)
        if refresh_feedback or not (out_dir / "feedback" / result.student_id / f"{result.assignment}.md").exists():
            write_submission_reports(result, out_dir, release_stage)
    columns = [u.grade_id for name in sorted({r.assignment for r in results}) for u in spec_of(name).auto_units]
    gradebook = write_gradebook(results, columns, out_dir)
    write_run_report(results, out_dir, protections, unsafe=unsafe)
    return gradebook


def student_list(students: list[str], limit: int = 20) -> str:
    """The first `limit` ids, then how many more (all of them are in run.json)."""
    shown = ", ".join(students[:limit])
    return shown + (f" and {len(students) - limit} more (all in {RUN_MANIFEST})" if len(students) > limit else "")


def print_run_summary(
    results: list[SubmissionResult],
    gradebook: Path,
    out_dir: Path,
    protections: list[Protection],
    *,
    unsafe: bool,
    seconds: float,
) -> None:
    """The summary table, the protections, and where everything was written."""
    print(summary_table(results))
    print(f"\nProtections around student code:\n{protections_text(protections, unsafe=unsafe)}")
    where = gradebook.relative_to(out_dir.parent) if out_dir.parent in gradebook.parents else gradebook
    print(f"\nWrote {where}, feedback/, gradescope/ and report.md in {out_dir} ({seconds:.0f} s)")
