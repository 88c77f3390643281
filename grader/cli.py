"""`make grade` / `python -m grader`: grade a folder of submissions into a gradebook.

    python -m grader submitted/              # nbgrader layout: submitted/<student>/<assignment>/*.ipynb
    python -m grader hw1/ --assignment fcn   # a plain folder of <student_id>.ipynb files
    python -m grader zips/                   # a folder of <student_id>.zip made by `python -m starter.submit`
    python -m grader ... --student alice     # regrade one student (others are reused)
    python -m grader ... --shard 2/4         # grade only the second of 4 slices of the students
    options: --out grades  -j N  --force  --unsafe-no-sandbox

This module only parses the command line and calls the run library (grader.run; docs/architecture.md):
intake and shards (discovery), cached results and run.json (store), the pool of trusted grading
processes (pool), the gradebook and feedback (render). Grading refuses to start when the host
cannot build the sandbox, unless --unsafe-no-sandbox is given (and then every report says so).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from grader.assignments import REPO_ROOT
from grader.report import RELEASE_STAGES, UNSAFE_FLAG
from grader.run.config import GradeSettings
from grader.run.discovery import Shard
from grader.run.grading import RunRequest, forbidden_folders, run, units_map
from grader.sandbox import Limits, SandboxUnavailable, active_protections

SUBMISSION_TIMEOUT_S = 900  # all checks of one submission together
DEFAULT_PROG = "python -m grader"


def build_parser(prog: str = DEFAULT_PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add = parser.add_argument
    add(
        "paths",
        nargs="*",
        type=Path,
        help="submission folders or notebooks (`segkit grade` with none grades the bundled examples)",
    )
    add("--assignment", help="assignment of loose notebooks (inferred from their cells if omitted)")
    add("--student", action="append", help="grade only these student ids")
    add(
        "--shard",
        metavar="K/N",
        help="grade only slice K of N of the students (by a hash of the id; one folder per slice, then `segkit collect`; docs/many-machines.md)",
    )
    add("--out", type=Path, default=REPO_ROOT / "grades", help="output folder (default: grades/)")
    add("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="parallel submissions")
    add("--force", action="store_true", help="regrade even when a result is up to date")
    add(
        UNSAFE_FLAG,
        dest="unsafe_no_sandbox",
        action="store_true",
        help="grade even though the host cannot build the sandbox: student code then runs as you, with your files and network (every report says so)",
    )
    add(
        "--submission-timeout",
        type=float,
        default=SUBMISSION_TIMEOUT_S,
        help="seconds before one submission's grading is abandoned",
    )
    add(
        "--release-stage",
        choices=RELEASE_STAGES,
        help="write the feedback (.md, .html) as students see it before the due date (only results set `visible` in the assignment's [visibility]) or after it, grades published (all but `hidden`; the default); given, every feedback file is rewritten, reused results' too",
    )
    add("--cell-timeout", type=float, help="seconds one notebook cell may run (default 120)")
    add("--probe-timeout-cap", type=float, help="cap on every check's time limit, in seconds")
    add("--memory-mb", type=int, help="memory cap of each worker (default 6144)")
    add(
        "--units-map",
        type=Path,
        help="JSON {student_id: [grade_id, ...]}: check only these units for those students (e.g. regrade one unit after fixing its check)",
    )
    add(
        "--reference-cache",
        type=Path,
        default=REPO_ROOT / "build" / "reference-cache",
        help="cache of the reference solution's probe results (shared by runs)",
    )
    return parser


def request_of(options: argparse.Namespace) -> RunRequest:
    """The run the parsed options ask for. Raises ValueError for a malformed --shard."""
    given = {
        "cell_timeout": options.cell_timeout,
        "memory_mb": options.memory_mb,
        "probe_timeout_cap": options.probe_timeout_cap,
        "submission_timeout": options.submission_timeout,
    }
    out_dir = options.out.resolve()
    settings = GradeSettings(
        limits=Limits(**{key: value for key, value in given.items() if value is not None}),
        forbidden=forbidden_folders(out_dir, options.paths),
        sandbox=not options.unsafe_no_sandbox,
        reference_cache=options.reference_cache.resolve(),
        units_map=units_map(options.units_map),
    )
    return RunRequest(
        paths=tuple(p.resolve() for p in options.paths),
        out_dir=out_dir,
        settings=settings,
        assignment=options.assignment,
        students=tuple(options.student or ()),
        shard=Shard.parse(options.shard) if options.shard else None,
        processes=options.jobs,
        force=options.force,
        release_stage=options.release_stage,
    )


def grade(options: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Grade what the parsed `options` name (`segkit grade` parses once and calls this)."""
    try:
        request = request_of(options)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        protections = active_protections(sandbox=not options.unsafe_no_sandbox)
    except SandboxUnavailable as exc:
        print(
            f"error: refusing to grade: student code would run without the sandbox.\n  Why: {exc}\n"
            f"  Fix the host as described (docs/instructor-guide.md, section 7), or, knowing what it gives up, "
            f"pass {UNSAFE_FLAG} (make grade UNSAFE_NO_SANDBOX=1).",
            file=sys.stderr,
        )
        return 2
    if not options.paths:
        parser.error(
            "name the submissions to grade (a folder or notebooks); `segkit grade` (make grade) with "
            "none grades the bundled example submissions"
        )
    return run(request, protections)


def main(argv: list[str] | None = None, prog: str = DEFAULT_PROG) -> int:
    parser = build_parser(prog)
    return grade(parser.parse_args(argv), parser)
