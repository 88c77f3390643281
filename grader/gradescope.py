"""Gradescope: the two steps the autograder's `run_autograder` calls for every submission.

    python -m grader.gradescope stage   --submission DIR --assignments fcn --dest STAGE --report stage.json
    python -m grader.gradescope results --grades OUT --assignments fcn --report stage.json --out results.json

`stage` finds the student's notebook(s) in Gradescope's submission folder (a single `.ipynb`,
the unpacked or still zipped archive of `python -m starter.submit`, or any folder; symlinks
are never followed) and copies each into nbgrader's layout `STAGE/submission/<a>/<a>.ipynb`,
which `python -m grader STAGE --out OUT -j 1` grades. `results` turns what the grader wrote
(`OUT/gradescope/<a>/submission/results.json`) into `/autograder/results/results.json`, with
score 0 and a clear message for a missing notebook or a grading run that failed.

The upload zip itself is built by `segkit gradescope` (segkit/build/gradescope_zip.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grader.assignments import assignment_names, load_assignment
from starter.common import MAX_NOTEBOOK_BYTES, infer_assignment, write_atomic

STAGE_STUDENT = "submission"  # the one "student" of a Gradescope run (results are per upload)
MAX_CANDIDATES = 200  # a submission folder with more files than this is not a notebook upload
SKIPPED_DIRS = {"__MACOSX", ".ipynb_checkpoints", ".git", "__pycache__"}


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
@dataclass
class Candidate:
    label: str  # path shown to the student, relative to the submission folder
    parts: tuple  # path components (for matching folder names)
    size: int
    read: Callable[[], bytes]


def _walk(root: Path) -> list[Candidate]:
    """Notebooks in the submission folder and inside zips there; never follows symlinks."""
    found: list[Candidate] = []
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(files):
            path = Path(directory) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue  # a symlink could point at the solutions: never read through one
            relative = path.relative_to(root)
            if name.endswith(".ipynb"):
                found.append(Candidate(relative.as_posix(), relative.parts, path.stat().st_size, path.read_bytes))
            elif name.endswith(".zip"):
                found += _zip_members(path, relative)
            if len(found) > MAX_CANDIDATES:
                return found
    return found


def _zip_members(path: Path, relative: Path) -> list[Candidate]:
    try:
        bundle = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return []
    members = []
    for info in bundle.infolist():
        parts = tuple(p for p in info.filename.split("/") if p)
        if (
            info.is_dir()
            or not parts
            or not parts[-1].endswith(".ipynb")
            or parts[-1].startswith(".")
            or any(p in SKIPPED_DIRS or p == ".." for p in parts)
        ):
            continue
        members.append(
            Candidate(
                f"{relative.as_posix()}:{'/'.join(parts)}", parts, info.file_size, lambda info=info: bundle.read(info)
            )
        )
    return members


def _match(candidate: Candidate, assignment: str) -> int:
    """How clearly a candidate is this assignment's notebook: 2 by name, 1 by folder, 0 not."""
    if candidate.parts[-1] == f"{assignment}.ipynb":
        return 2
    return 1 if assignment in candidate.parts[:-1] else 0


def choose_notebooks(candidates: list[Candidate], assignments: list[str]) -> dict[str, tuple[Candidate, str]]:
    """assignment -> (chosen candidate, note for the student). By file name, then folder name,
    then (one assignment, one notebook) whatever the student called it, then by its graded cells."""
    chosen: dict[str, tuple[Candidate, str]] = {}
    usable = [c for c in candidates if c.size <= MAX_NOTEBOOK_BYTES]
    for assignment in assignments:
        ranked = sorted(
            (c for c in usable if _match(c, assignment)), key=lambda c: (-_match(c, assignment), len(c.parts), c.label)
        )
        if ranked:
            others = [c.label for c in ranked[1:]]
            note = f"; also found and ignored: {', '.join(others)}" if others else ""
            chosen[assignment] = (ranked[0], note)
    unclaimed = [c for c in usable if not any(_match(c, a) for a in assignments)]
    missing = [a for a in assignments if a not in chosen]
    if len(missing) == 1 and len(assignments) == 1 and len(unclaimed) == 1:
        chosen[missing[0]] = (unclaimed[0], f" (expected the name {missing[0]}.ipynb; graded it anyway)")
    elif missing and unclaimed:
        for candidate in unclaimed:
            assignment = _infer_by_cells(candidate, missing)
            if assignment and assignment not in chosen:
                chosen[assignment] = (candidate, f" (recognised by its graded cells; expected {assignment}.ipynb)")
    return chosen


def _infer_by_cells(candidate: Candidate, assignments: list[str]) -> str | None:
    try:
        notebook = json.loads(candidate.read().decode("utf-8", "replace"))
        notebook["cells"] = [c for c in notebook["cells"] if isinstance(c, dict)]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return infer_assignment(notebook, {a: [u.grade_id for u in load_assignment(a).units] for a in assignments})


def stage(submission: Path, assignments: list[str], dest: Path) -> dict:
    """Copy the chosen notebooks to dest/submission/<a>/<a>.ipynb; return the staging report."""
    candidates = _walk(submission) if submission.is_dir() else []
    chosen = choose_notebooks(candidates, assignments)
    report = {"found": [c.label for c in candidates[:50]], "assignments": {}}
    for assignment in assignments:
        if assignment not in chosen:
            report["assignments"][assignment] = {"staged": False}
            continue
        candidate, note = chosen[assignment]
        target = dest / STAGE_STUDENT / assignment / f"{assignment}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(candidate.read())
        report["assignments"][assignment] = {"staged": True, "source": candidate.label, "note": note}
    return report


# -- results.json --------------------------------------------------------------------------------
def missing_notebook_message(assignment: str, found: list[str]) -> str:
    seen = f" Files found: {', '.join(found[:10])}." if found else " The submission contained no notebook."
    return (
        f"No notebook for '{assignment}' was found in your submission.{seen} Upload {assignment}.ipynb "
        f"(File > Download > .ipynb in Jupyter or Colab), or the zip made by `python -m starter.submit`."
    )


def gradescope_results(grades: Path, assignments: list[str], report: dict) -> dict:
    """Combine the grader's per-assignment results.json into one, with score 0 and a message
    for every assignment that has no notebook or no result."""
    score, tests, messages = 0.0, [], []
    for assignment in assignments:
        staged = report.get("assignments", {}).get(assignment, {})
        max_points = load_assignment(assignment).max_points
        result_path = grades / "gradescope" / assignment / STAGE_STUDENT / "results.json"
        if not staged.get("staged"):
            message = missing_notebook_message(assignment, report.get("found", []))
        elif not result_path.exists():
            message = (
                f"'{assignment}': the autograder could not grade {staged['source']} (an internal error, "
                "not a low score). Please resubmit; if this persists, contact course staff."
            )
        else:
            result = json.loads(result_path.read_text(encoding="utf-8"))
            score += float(result.get("score", 0))
            tests += result.get("tests", [])
            messages.append(
                f"'{assignment}': graded {staged['source']}{staged.get('note', '')}. " + result.get("output", "")
            )
            continue
        messages.append(message)
        tests.append(
            {
                "name": f"{assignment}: notebook found and graded",
                "score": 0.0,
                "max_score": max_points,
                "output": message,
                "visibility": "visible",
            }
        )
    return {"score": round(score, 4), "output": "\n".join(messages), "tests": tests, "stdout_visibility": "hidden"}


# -- command line -----------------------------------------------------------------------------------
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["stage"]:
        parser = argparse.ArgumentParser(prog="python -m grader.gradescope stage")
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
        parser = argparse.ArgumentParser(prog="python -m grader.gradescope results")
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
        "usage: python -m grader.gradescope {stage,results} ... (the zip is built by `segkit gradescope`)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
