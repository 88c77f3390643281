"""One grading run, from the paths given to grades.csv: the library behind `segkit grade`.

`run(request, protections)`: the intake step over the paths (grader.run.discovery), the results
that are still up to date (grader.run.store), the pool for the others (grader.run.pool), a 0 row for
each student whose files were all rejected, then the gradebook, reports and feedback
(grader.run.render) and <out>/run.json.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from grader.intake import Intake, Job, Outcome, write_table
from grader.report import DEFAULT_RELEASE_STAGE, write_submission_reports
from grader.results import SubmissionResult
from grader.run.config import GradeSettings
from grader.run.discovery import Shard, missing_result, take_in_submissions
from grader.run.pool import grade_all
from grader.run.render import print_run_summary, render_outputs, student_list
from grader.run.store import RunManifest, expected_fingerprints, read_cached_result, result_path, write_result
from grader.sandbox import Protection


@dataclass(frozen=True)
class RunRequest:
    """What one `segkit grade` run is asked to do (the parsed command line)."""

    paths: tuple[Path, ...]
    out_dir: Path
    settings: GradeSettings
    assignment: str | None = None
    students: tuple[str, ...] = ()  # --student: grade only these (everyone else keeps their last grade)
    shard: Shard | None = None
    processes: int = 1  # -j: parallel grading processes
    force: bool = False
    release_stage: str | None = None  # None: the default stage, and feedback of reused results kept

    @property
    def unsafe_no_sandbox(self) -> bool:
        return not self.settings.sandbox

    def selects(self, student: str) -> bool:
        return not self.students or student in self.students


def forbidden_folders(out_dir: Path, paths: list[Path]) -> tuple[str, ...]:
    """Folders no worker may see: the output folder and those holding the submissions."""
    return tuple(sorted({str(out_dir)} | {str(p.resolve() if p.is_dir() else p.resolve().parent) for p in paths}))


@dataclass
class Selection:
    """The submissions a run takes: the intake and its jobs (of this shard only)."""

    intake: Intake
    jobs: list[Job]


class NothingToGrade(Exception):
    """No submission was found (exit status 1)."""


def select(request: RunRequest) -> Selection:
    """The intake step over the request's paths (its table written and summarised), the jobs of the
    request's shard. Raises SystemExit for a --student without a submission, NothingToGrade."""
    shard = request.shard
    keep = shard.takes if shard else None
    intake = take_in_submissions(list(request.paths), request.assignment, request.out_dir / "submissions", keep)
    jobs = intake.jobs
    if intake.records:
        write_table(intake, request.out_dir)
        print(intake.summary())
    # With --shard, zips of other slices are not even opened: only this slice's ids can be checked.
    unknown = {s for s in set(request.students) - {j.student for j in jobs} if not shard or shard.takes(s)}
    if unknown:
        raise SystemExit(f"error: no submission from {', '.join(sorted(unknown))}")
    if not jobs and not intake.missing:
        raise NothingToGrade
    if shard:
        students = sorted({j.student for j in jobs} | intake.other_shards)
        jobs = [j for j in jobs if shard.takes(j.student)]
        taken = sorted({j.student for j in jobs})
        print(
            f"Shard {shard}: {len(taken)} of {len(students)} students, {len(jobs)} submission(s)"
            + (f": {student_list(taken)}" if taken else "")
        )
    return Selection(intake, jobs)


@dataclass
class Plan:
    """The results still up to date (by job) and the jobs to grade, with the fingerprint each will carry."""

    reused: dict[Job, SubmissionResult] = field(default_factory=dict)
    pending: list[tuple[Job, str]] = field(default_factory=list)


def plan(request: RunRequest, jobs: list[Job]) -> Plan:
    """Reuse every result whose fingerprint is current (unless --force); with --student, everyone
    else keeps their last grade whatever its fingerprint."""
    fingerprints = expected_fingerprints(jobs, request.settings.units_map)
    planned = Plan()
    for job in jobs:
        cached = read_cached_result(result_path(request.out_dir, job.student, job.assignment))
        selected = request.selects(job.student)
        current = cached is not None and cached.fingerprint == fingerprints[job] and not request.force
        if cached is not None and (not selected or current):
            planned.reused[job] = cached
        elif selected:
            planned.pending.append((job, fingerprints[job]))
    if planned.reused:
        print(f"Reusing {len(planned.reused)} up-to-date result(s); grading {len(planned.pending)}.")
    return planned


def run(request: RunRequest, protections: list[Protection]) -> int:
    """Grade what the request names into request.out_dir; the exit status (1 when a grade failed)."""
    out_dir = request.out_dir
    try:
        selection = select(request)
    except NothingToGrade:
        print("No submissions found.")
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    planned = plan(request, selection.jobs)
    results = dict(planned.reused)
    release_stage = request.release_stage or DEFAULT_RELEASE_STAGE
    started = time.time()

    def on_result(job: Job, result: SubmissionResult) -> None:
        write_result(out_dir, result)
        write_submission_reports(result, out_dir, release_stage)
        results[job] = result

    failures = grade_all(planned.pending, out_dir, request.settings, request.processes, on_result)
    # A student whose files were all rejected gets a 0 row saying why (and feedback saying so).
    rejected = [missing_result(missing) for missing in selection.intake.missing]
    for result in rejected:
        write_submission_reports(result, out_dir)
    all_results = list(results.values()) + rejected
    unsafe = request.unsafe_no_sandbox
    gradebook = render_outputs(
        all_results,
        out_dir,
        protections,
        unsafe=unsafe,
        refresh_feedback=request.release_stage is not None,
        release_stage=release_stage,
    )
    graded = [results[job] for job, _ in planned.pending if job in results]
    manifest(request, selection, planned, graded, failures, protections, time.time() - started).write(out_dir)
    print_run_summary(all_results, gradebook, out_dir, protections, unsafe=unsafe, seconds=time.time() - started)
    for failure in failures:
        print(f"ERROR: {failure}", file=sys.stderr)
    return 1 if failures else 0


def manifest(
    request: RunRequest,
    selection: Selection,
    planned: Plan,
    graded: list[SubmissionResult],
    failures: list[str],
    protections: list[Protection],
    seconds: float,
) -> RunManifest:
    """What this run graded, reused and failed (run.json)."""
    jobs, intake = selection.jobs, selection.intake
    return RunManifest(
        shard=str(request.shard) if request.shard else None,
        students=sorted({j.student for j in jobs}),
        submissions=sorted((j.student, j.assignment) for j in jobs),
        intake={outcome.value: intake.count(outcome) for outcome in Outcome},
        rejected_without_grade=sorted((m.student, m.assignment) for m in intake.missing),
        graded=len(graded),
        reused=len(planned.reused),
        failures=failures,
        protections=protections,
        unsafe_no_sandbox=request.unsafe_no_sandbox,
        host=socket.gethostname(),
        processes=request.processes,
        seconds=round(seconds, 1),
        cpu_seconds=round(sum(r.cpu_s for r in graded), 1),
    )


def units_map(path: Path | None) -> dict[str, list[str]]:
    """--units-map: {student_id: [grade_id, ...]} (empty without the option)."""
    return json.loads(path.read_text()) if path else {}
