"""Gradescope: the two steps the autograder's `run_autograder` calls for every submission.

    python -m integrations.gradescope stage   --submission DIR --assignments fcn --dest STAGE --report stage.json
    python -m integrations.gradescope results --grades OUT --assignments fcn --report stage.json --out results.json

`stage` finds the student's notebook(s) in Gradescope's submission folder with the intake step
of `make grade` (grader.intake: a single `.ipynb`, the unpacked or still zipped archive of
`python -m starter.submit`, any zip or folder; recognised by their graded cells; symlinks never
followed) and copies each into nbgrader's layout `STAGE/submission/<a>/<a>.ipynb`,
which `python -m grader STAGE --out OUT -j 1` grades. `results` turns what the grader wrote
(`OUT/gradescope/<a>/submission/results.json`) into `/autograder/results/results.json`, with
score 0 and a clear message for a missing notebook or a grading run that failed.

The upload zip itself is built by `segkit gradescope` (segkit/build/gradescope_zip.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grader.assignments import VISIBILITY_LEVELS, assignment_names, load_assignment
from grader.intake import Intake, IntakeRecord, Job, Outcome, Owner, take_in
from grader.report import (
    GRADESCOPE_TEXT,
    LEFT_OUT,
    MAX_FEEDBACK_BYTES,
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    Budget,
    safe_line,
    safe_text,
)
from starter.common import write_atomic

STAGE_STUDENT = "submission"  # the one "student" of a Gradescope run (results are per upload)


# -- assignments -------------------------------------------------------------------------------------
def parse_assignments(text: str | list[str]) -> list[str]:
    """'fcn,cam' or ['fcn', 'cam'] -> ['fcn', 'cam'], each checked against assignments/."""
    items = text if isinstance(text, list) else [text]
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    known = assignment_names()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SystemExit(
            f"error: unknown assignment(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}"
        )
    return list(dict.fromkeys(names))


# -- staging a submission --------------------------------------------------------------------------
def stage(submission: Path, assignments: list[str], dest: Path) -> dict:
    """Stage one upload through the intake step `make grade` uses (grader.intake): the whole upload
    is the student's, a notebook anywhere in it (in a zip, or a zip in a zip, too) is recognised by
    its graded cells, the newest of an assignment wins, symlinks are never followed. Each is copied
    to dest/submission/<a>/<a>.ipynb; returns the staging report, with the intake table."""
    owner = Owner((STAGE_STUDENT,), "upload", "gradescope upload")
    intake = (
        take_in([submission], assignment_names(), assignments, dest, owner=owner) if submission.is_dir() else Intake()
    )
    by_assignment = {job.assignment: job for job in intake.jobs}
    # Notebooks and zips only: other files' names are not repeated back to the student.
    shown = [
        r
        for r in intake.records
        if r.outcome is not Outcome.IGNORED and r.file.rsplit(":", 1)[-1].endswith((".ipynb", ".zip"))
    ]
    report = {
        "found": [f"{r.file} ({r.outcome.value}: {r.reason})" if r.reason else r.file for r in shown[:50]],
        "assignments": {},
        "intake": [dict(zip(IntakeRecord.FIELDS, record.row())) for record in intake.records[:500]],
    }
    for assignment in assignments:
        job = by_assignment.get(assignment)
        if job is None:
            report["assignments"][assignment] = {"staged": False}
            continue
        source = intake.graded_from[job]
        target = dest / STAGE_STUDENT / assignment / f"{assignment}.ipynb"
        if job.notebook != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, job.notebook.read_bytes())
        report["assignments"][assignment] = {"staged": True, "source": source, "note": _stage_note(intake, job, source)}
    return report


def _stage_note(intake: Intake, job: Job, source: str) -> str:
    """What the student reads after "graded <source>": how it was recognised, what else was found."""
    note = ""
    if source.rsplit("/", 1)[-1].rsplit(":", 1)[-1] != f"{job.assignment}.ipynb":
        note += f" (recognised by its graded cells; expected {job.assignment}.ipynb)"
    records = [r for r in intake.records if r.assignment == job.assignment]
    note += "".join(f"; {r.reason}" for r in records if r.file == source and r.reason)
    older = [r.file for r in records if r.outcome is Outcome.SUPERSEDED]
    if older:
        note += f"; also found, older, not graded: {', '.join(older[:10])}"
    return note


# -- results.json --------------------------------------------------------------------------------
MAX_RESULT_FILE_BYTES = 4 * 1024 * 1024  # a per-assignment results.json the grader wrote (it holds < 64 kB)


def missing_notebook_message(assignment: str, found: list[str]) -> str:
    names = [safe_line(name) for name in found[:10]]
    seen = f" Files found: {', '.join(names)}." if names else " The submission contained no notebook."
    return (
        f"No notebook for '{assignment}' was found in your submission.{seen} Upload {assignment}.ipynb "
        f"(File > Download > .ipynb in Jupyter or Colab), or the zip made by `python -m starter.submit`."
    )


def _read_grader_result(path: Path) -> dict | None:
    """The grader's per-assignment results.json, read with a bound; None when absent or not one."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_RESULT_FILE_BYTES + 1)
        result = json.loads(data) if len(data) <= MAX_RESULT_FILE_BYTES else None
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and isinstance(result.get("tests", []), list) else None


def _bounded_tests(tests: list, budget: Budget) -> list[dict]:
    """Tests as the grader wrote them, each output cut again and all within the budget (a second line
    behind grader.report.gradescope_json, whose file this process did not necessarily write)."""
    kept = []
    for test in tests:
        if not isinstance(test, dict):
            continue
        test = dict(test)
        output = safe_text(test.get("output", ""), 2 * MAX_TEXT_CHARS)
        test["output"] = output if budget.take(output) else LEFT_OUT.format(kb=MAX_FEEDBACK_BYTES // 1024)
        test["name"] = safe_line(test.get("name", ""), 2 * MAX_ID_CHARS)
        test["output_format"] = test["name_format"] = GRADESCOPE_TEXT
        kept.append(test)
    return kept


def _least_shown(levels: list[str], default: str) -> str:
    """The most restrictive of several visibility levels (several assignments in one upload)."""
    known = [level for level in levels if level in VISIBILITY_LEVELS]
    return max(known, key=VISIBILITY_LEVELS.index) if known else default


def gradescope_results(grades: Path, assignments: list[str], report: dict) -> dict:
    """Combine the grader's per-assignment results.json into one, with score 0 and a message
    for every assignment that has no notebook or no result. Every string is Gradescope's `text`
    format (shown as it is); each assignment's tests keep the visibility `[visibility]` gave them; the
    top-level `visibility` (the total) and `stdout_visibility` are the most restrictive of the
    assignments'."""
    score, tests, messages, totals, stdouts = 0.0, [], [], [], []
    budget = Budget(MAX_FEEDBACK_BYTES * max(1, len(assignments)))
    for assignment in assignments:
        staged = report.get("assignments", {}).get(assignment, {})
        spec = load_assignment(assignment)
        visibility = spec.config.visibility
        totals.append(visibility.total)
        stdouts.append(visibility.stdout)
        result_path = grades / "gradescope" / assignment / STAGE_STUDENT / "results.json"
        result = _read_grader_result(result_path) if staged.get("staged") else None
        source = safe_line(staged.get("source", ""))
        if not staged.get("staged"):
            message = missing_notebook_message(assignment, report.get("found", []))
        elif result is None:
            message = (
                f"'{assignment}': the autograder could not grade {source} (an internal error, "
                "not a low score). Please resubmit; if this persists, contact course staff."
            )
        else:
            score += float(result.get("score", 0) or 0)
            tests += _bounded_tests(result.get("tests", []), budget)
            note = safe_text(staged.get("note", ""), MAX_TEXT_CHARS)
            messages.append(
                f"'{assignment}': graded {source}{note}. " + safe_text(result.get("output", ""), MAX_TEXT_CHARS)
            )
            continue
        messages.append(message)
        tests.append(
            {
                "name": f"{assignment}: notebook found and graded",
                "name_format": GRADESCOPE_TEXT,
                "score": 0.0,
                "max_score": spec.max_points,
                "status": "failed",
                "output": message,
                "output_format": GRADESCOPE_TEXT,
                "visibility": visibility.public_checks,
            }
        )
    return {
        "score": round(score, 4),
        "output": "\n".join(messages),
        "output_format": GRADESCOPE_TEXT,
        "test_output_format": GRADESCOPE_TEXT,
        "test_name_format": GRADESCOPE_TEXT,
        "visibility": _least_shown(totals, "after_published"),
        "stdout_visibility": _least_shown(stdouts, "hidden"),
        "tests": tests,
    }


# -- command line -----------------------------------------------------------------------------------
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["stage"]:
        parser = argparse.ArgumentParser(prog="python -m integrations.gradescope stage")
        parser.add_argument("--submission", type=Path, required=True)
        parser.add_argument("--assignments", required=True)
        parser.add_argument("--dest", type=Path, required=True)
        parser.add_argument("--report", type=Path, required=True)
        args = parser.parse_args(argv[1:])
        report = stage(args.submission, parse_assignments(args.assignments), args.dest)
        args.report.write_text(json.dumps(report, indent=1), encoding="utf-8")
        for assignment, entry in report["assignments"].items():
            print(
                f"{assignment}: " + (f"grading {entry['source']}{entry['note']}" if entry["staged"] else "no notebook")
            )
        return 0
    if argv[:1] == ["results"]:
        parser = argparse.ArgumentParser(prog="python -m integrations.gradescope results")
        parser.add_argument("--grades", type=Path, required=True)
        parser.add_argument("--assignments", required=True)
        parser.add_argument("--report", type=Path, required=True)
        parser.add_argument("--out", type=Path, required=True)
        args = parser.parse_args(argv[1:])
        report = json.loads(args.report.read_text()) if args.report.exists() else {}
        results = gradescope_results(args.grades, parse_assignments(args.assignments), report)
        write_atomic(args.out, json.dumps(results, indent=1))
        print(f"score {results['score']:g}")
        return 0
    print(
        "usage: python -m integrations.gradescope {stage,results} ... (the zip is built by `segkit gradescope`)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
