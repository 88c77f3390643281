"""`make grade` / `python -m grader`: grade a folder of submissions into a gradebook.

    python -m grader submitted/              # nbgrader layout: submitted/<student>/<assignment>/*.ipynb
    python -m grader hw1/ --assignment fcn   # a plain folder of <student_id>.ipynb files
    python -m grader zips/                   # a folder of <student_id>.zip made by `python -m starter.submit`
    python -m grader ... --student alice     # regrade one student (others are reused)
    python -m grader ... --shard 2/4         # grade only the second of 4 slices of the students
    options: --out grades  -j N  --force  --unsafe-no-sandbox

What is graded comes from the intake step (grader.intake): every file under the submissions ends
graded, superseded, ignored or rejected with its reason, in <out>/intake.csv (summarised on the
terminal); zips in any layout, LMS exports and Gradescope's export are accepted, notebooks are
recognised by their graded cells, and a student whose files were all rejected gets a 0 row.

Submissions are graded by a pool of trusted processes (`grader.runner.grade`), each starting
a sandboxed worker per submission for the student's code. A pool process that dies, whatever
killed it, costs only the submission it was grading, which is retried once in a process of its own.
Grading refuses to start when the host cannot build the sandbox (`grader.sandbox.host_sandbox`),
unless `--unsafe-no-sandbox` is given (and then every report says so). Finished results are kept in
<out>/results/<assignment>/<student>.json, keyed by a fingerprint of the submission and
the grader, so an interrupted run resumes and a re-run reuses every unchanged result.

Many machines: `--shard K/N` grades the students whose id hashes to slice K of N (sha256 of the
id, so every machine agrees, whatever the order of the folders). Each shard grades into its own
folder; `segkit collect OUT SHARD_DIR...` (grader.collect) merges them into one gradebook, rendered
by the same code as a normal run. Every run records what it did in <out>/run.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import wait
from pathlib import Path

from tqdm.auto import tqdm

from grader.assignments import REPO_ROOT, NotebookError, assignment_names, read_notebook
from grader.intake import Intake, Job, MissingSubmission, Outcome, take_in, write_table
from grader.report import (
    DEFAULT_RELEASE_STAGE,
    RELEASE_STAGES,
    UNSAFE_FLAG,
    protections_text,
    summary_table,
    write_gradebook,
    write_run_report,
    write_submission_reports,
)
from grader.results import ResultFormatError, SubmissionResult, UnitResult
from grader.run.store import (
    expected_fingerprint,
    grader_fingerprint,
    read_cached_result,
)
from grader.run.store import spec_of as _assignment
from grader.sandbox import Limits, Protection, SandboxUnavailable, active_protections
from starter import common
from starter.common import write_atomic

SUBMISSION_TIMEOUT_S = 900  # all checks of one submission together
RUN_MANIFEST = "run.json"  # what a run graded, reused and failed, and the protections it had


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` (1 <= K <= N) -> (K, N); raises ValueError with a readable message otherwise."""
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise ValueError(f"--shard takes K/N, e.g. 2/4 (the second of four slices), not {text!r}") from None
    if not 1 <= shard[0] <= shard[1]:
        raise ValueError(f"--shard {text}: K must be between 1 and N")
    return shard


def shard_of(student: str, count: int) -> int:
    """The 1-based slice of `count` that grades `student`: sha256 of the id, not Python's hash()
    (randomised per process), so every machine and every re-run puts a student in the same slice."""
    return int.from_bytes(hashlib.sha256(student.encode("utf-8")).digest(), "big") % count + 1


def infer_assignment(path: Path, known: list[str]) -> str | None:
    """The assignment whose graded cell ids the notebook shares most (None if unreadable)."""
    try:
        notebook = read_notebook(path)
    except (NotebookError, OSError):
        return None
    units = {name: [u.grade_id for u in _assignment(name).units] for name in known}
    return common.infer_assignment(notebook, units)


def unpack_submission_zip(archive: Path, unpack_root: Path, known: list[str]) -> list[Job]:
    """The notebooks of one zip, wherever they are in it (grader.intake: caps, no traversal,
    one level of zip in a zip), written to unpack_root/<student>/<a>/<a>.ipynb."""
    return take_in([archive], known, None, unpack_root).jobs


def take_in_submissions(
    paths: list[Path],
    assignment: str | None,
    unpack_root: Path | None = None,
    keep_student: Callable[[str], bool] | None = None,
) -> Intake:
    """The intake step (grader.intake) over `paths`: the table of every file, and the jobs.
    `keep_student(id)` False: that student's files are not even opened (a shard skips the others')."""
    return take_in(paths, assignment_names(), assignment, unpack_root, keep_student)


def discover(
    paths: list[Path],
    assignment: str | None,
    unpack_root: Path | None = None,
    keep_student: Callable[[str], bool] | None = None,
) -> list[Job]:
    """Every submission under `paths` (the jobs of `take_in_submissions`)."""
    return take_in_submissions(paths, assignment, unpack_root, keep_student).jobs


def missing_result(missing: MissingSubmission) -> SubmissionResult:
    """The 0 row of a student whose files were all rejected: every unit 0, the reason as the
    notebook error, as for a notebook that cannot be read, so grades.csv, report.md and the
    student's feedback say why."""
    spec = _assignment(missing.assignment)
    return SubmissionResult(
        student_id=missing.student,
        assignment=missing.assignment,
        total=0,
        max_points=spec.max_points,
        units={u.grade_id: UnitResult(u.grade_id, points=0, max_points=u.points) for u in spec.auto_units},
        manual_points={u.grade_id: u.points for u in spec.manual_units},
        notebook_error=missing.reason,
    )


def grade_job(job: Job, out_dir: Path, settings: dict, slot: int) -> SubmissionResult:
    """Grade one submission; runs in a (trusted) pool process that grades many in turn, so
    imports and the reference solution are loaded once per process, not once per student."""
    from grader.runner import grade

    options = {
        "limits": Limits(**settings["limits"]),
        "forbidden": tuple(settings["forbidden"]),
        "sandbox": settings["sandbox"],
        "slot": slot,
    }
    units = settings["units_map"].get(job.student)
    return grade(
        _assignment(job.assignment),
        job.notebook,
        job.student,
        worker_options=options,
        log_path=out_dir / "logs" / job.assignment / f"{job.student}.log",
        cache_dir=Path(settings["reference_cache"]),
        units=set(units) if units else None,
    )


def _pool_process(connection, out_dir: Path, settings: dict, slot: int):
    """A trusted grading process: receives jobs, answers each with its result as JSON text."""
    while True:
        job = connection.recv()
        if job is None:
            return
        try:
            # Not to_json(): its sorted keys would reorder the units, whose order the feedback follows.
            answer = ("ok", json.dumps(grade_job(job, out_dir, settings, slot).to_dict()))
        except Exception as exc:  # a bug in a check must not stop the others
            answer = ("error", f"{type(exc).__name__}: {exc}")
        connection.send(answer)


@dataclass
class _PoolSlot:
    slot: int
    alone: bool = False  # a retry: this process grades one submission and is then closed
    process: multiprocessing.Process | None = None
    connection: object = None
    job: Job | None = None
    done: int = 0


def grade_all(
    pending: list[tuple[Job, str]], out_dir: Path, settings: dict, jobs: int, on_result, process_main=_pool_process
) -> list[str]:
    """Grade in `jobs` trusted processes. A process that dies (killed for memory, by the OOM killer,
    by a signal) costs only the submission it was grading: that one is retried once, alone, in a
    fresh process; the others go on. Returns failure messages. `process_main(connection, out_dir,
    settings, slot)` is the pool process's loop (tests substitute one that dies on purpose)."""
    fingerprints = dict(pending)
    queue: deque[Job] = deque(job for job, _ in pending)
    retries: deque[Job] = deque()
    attempts = {job: 0 for job in fingerprints}
    failures: list[str] = []
    context = multiprocessing.get_context("spawn")
    progress = tqdm(total=len(queue), desc="grading", unit="submission", disable=not queue)
    slots = [_PoolSlot(slot) for slot in range(max(1, min(jobs, len(queue))))]
    next_slot = len(slots)

    def launch(pool_slot: _PoolSlot):
        parent, child = context.Pipe()
        pool_slot.process = context.Process(
            target=process_main, args=(child, out_dir, settings, pool_slot.slot), daemon=True
        )
        pool_slot.process.start()
        child.close()
        pool_slot.connection = parent

    def retire(pool_slot: _PoolSlot):
        if pool_slot.process is not None:
            try:
                pool_slot.connection.send(None)
            except OSError:
                pass
            pool_slot.process.join(timeout=10)
            if pool_slot.process.is_alive():
                pool_slot.process.kill()
            pool_slot.connection.close()
        pool_slot.process = pool_slot.connection = None

    def finish(job: Job, message: str | None, result: SubmissionResult | None):
        if result is not None:
            result.fingerprint = fingerprints[job]
            on_result(job, result)
            progress.set_postfix_str(f"{job.student}: {result.total:g}/{result.max_points:g}")
        else:
            failures.append(f"{job.student}/{job.assignment}: {message}")
        progress.update()

    try:
        while queue or retries or any(s.job for s in slots):
            for pool_slot in list(slots):
                if pool_slot.job is not None:
                    continue
                if pool_slot.alone and pool_slot.done:
                    retire(pool_slot)
                    slots.remove(pool_slot)
                    continue
                source = retries if (retries and pool_slot.alone) else queue
                if not source:
                    continue
                if pool_slot.process is None or not pool_slot.process.is_alive():
                    launch(pool_slot)
                pool_slot.job = source.popleft()
                attempts[pool_slot.job] += 1
                pool_slot.connection.send(pool_slot.job)
            if retries and not any(s.alone and s.job is None and not s.done for s in slots):
                slots.append(_PoolSlot(next_slot, alone=True))  # the retry gets a process of its own
                next_slot += 1
            busy = [s for s in slots if s.job is not None]
            if not busy:
                continue
            ready = wait([s.connection for s in busy] + [s.process.sentinel for s in busy])
            for pool_slot in busy:
                job = pool_slot.job
                if pool_slot.connection in ready:
                    try:
                        status, payload = pool_slot.connection.recv()
                    except (EOFError, OSError):
                        status, payload = "died", None
                else:
                    status, payload = ("died", None) if pool_slot.process.sentinel in ready else (None, None)
                if status is None:
                    continue
                pool_slot.job = None
                pool_slot.done += 1
                if status == "ok":
                    try:
                        result = SubmissionResult.from_json(payload)
                    except ResultFormatError as exc:  # a grading bug, not the student's: no grade, the others go on
                        finish(job, f"the grading process sent back {exc}", None)
                    else:
                        finish(job, None, result)
                elif status == "error":
                    finish(job, payload, None)
                else:
                    code = pool_slot.process.exitcode
                    retire(pool_slot)
                    if attempts[job] < 2:
                        retries.append(job)
                    else:
                        finish(job, f"the grading process died twice (exit code {code}); no grade", None)
        for pool_slot in slots:  # done: each process stops its worker template and cleans up after it
            retire(pool_slot)
    finally:
        for pool_slot in slots:
            if pool_slot.process is not None and pool_slot.process.is_alive():
                pool_slot.process.kill()
        progress.close()
    return failures


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
    `out_dir`; a normal run and `segkit collect` both render through here, so the same results
    give the same bytes. Feedback already on disk is kept unless `refresh_feedback`. The .md and
    .html show what students see at `release_stage` (grader.report: before or after the due date)."""
    for result in results:  # reports of reused results may be missing (e.g. deleted by hand)
        if refresh_feedback or not (out_dir / "feedback" / result.student_id / f"{result.assignment}.md").exists():
            write_submission_reports(result, out_dir, release_stage)
    columns = [u.grade_id for name in sorted({r.assignment for r in results}) for u in _assignment(name).auto_units]
    gradebook = write_gradebook(results, columns, out_dir)
    write_run_report(results, out_dir, protections, unsafe=unsafe)
    return gradebook


def write_run_manifest(out_dir: Path, record: dict) -> Path:
    """<out>/run.json: what this run graded, reused and failed, with the protections it had (read
    back by `segkit collect`, which renders report.md from it)."""
    return write_atomic(out_dir / RUN_MANIFEST, json.dumps(record, indent=1, sort_keys=True) + "\n")


def protections_record(protections: list[Protection]) -> list[dict]:
    return [asdict(protection) for protection in protections]


def _student_list(students: list[str], limit: int = 20) -> str:
    shown = ", ".join(students[:limit])
    return shown + (f" and {len(students) - limit} more (all in {RUN_MANIFEST})" if len(students) > limit else "")


def build_parser(prog: str = "python -m grader") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="submission folders or notebooks (`segkit grade` with none grades the bundled examples)",
    )
    parser.add_argument("--assignment", help="assignment of loose notebooks (inferred from their cells if omitted)")
    parser.add_argument("--student", action="append", help="grade only these student ids")
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="grade only slice K of N of the students (by a hash of the id; one folder per slice, "
        "then `segkit collect`; docs/many-machines.md)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "grades", help="output folder (default: grades/)")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="parallel submissions")
    parser.add_argument("--force", action="store_true", help="regrade even when a result is up to date")
    parser.add_argument(
        UNSAFE_FLAG,
        dest="unsafe_no_sandbox",
        action="store_true",
        help="grade even though the host cannot build the sandbox: student code then runs as you, "
        "with your files and network (every report says so)",
    )
    parser.add_argument("--no-sandbox", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--submission-timeout",
        type=float,
        default=SUBMISSION_TIMEOUT_S,
        help="seconds before one submission's grading is abandoned",
    )
    parser.add_argument(
        "--release-stage",
        choices=RELEASE_STAGES,
        help="write the feedback (.md, .html) as students see it before the due date (only results set "
        "`visible` in the assignment's [visibility]) or after it, grades published (all but `hidden`; the "
        "default); given, every feedback file is rewritten, reused results' too",
    )
    parser.add_argument("--cell-timeout", type=float, help="seconds one notebook cell may run (default 120)")
    parser.add_argument("--probe-timeout-cap", type=float, help="cap on every check's time limit, in seconds")
    parser.add_argument("--memory-mb", type=int, help="memory cap of each worker (default 6144)")
    parser.add_argument(
        "--units-map",
        type=Path,
        help="JSON {student_id: [grade_id, ...]}: check only these "
        "units for those students (e.g. regrade one unit after fixing its check)",
    )
    parser.add_argument(
        "--reference-cache",
        type=Path,
        default=REPO_ROOT / "build" / "reference-cache",
        help="cache of the reference solution's probe results (shared by runs)",
    )
    return parser


def main(argv=None, prog: str = "python -m grader") -> int:
    parser = build_parser(prog)
    options = parser.parse_args(argv)
    if options.no_sandbox:
        parser.error(f"--no-sandbox is now spelled {UNSAFE_FLAG} (and is recorded in every report)")
    try:
        shard = parse_shard(options.shard) if options.shard else None
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
    out_dir = options.out.resolve()
    in_shard = (lambda student: shard_of(student, shard[1]) == shard[0]) if shard else None
    intake = take_in_submissions(
        [p.resolve() for p in options.paths], options.assignment, out_dir / "submissions", in_shard
    )
    jobs = intake.jobs
    if intake.records:
        write_table(intake, out_dir)
        print(intake.summary())
    if options.student:
        # With --shard, zips of other slices are not even opened: only this slice's ids can be checked.
        unknown = {s for s in set(options.student) - {j.student for j in jobs} if not shard or in_shard(s)}
        if unknown:
            raise SystemExit(f"error: no submission from {', '.join(sorted(unknown))}")
    if not jobs and not intake.missing:
        print("No submissions found.")
        return 1
    if shard:
        students = sorted({j.student for j in jobs} | intake.other_shards)
        jobs = [j for j in jobs if in_shard(j.student)]
        taken = sorted({j.student for j in jobs})
        print(
            f"Shard {shard[0]}/{shard[1]}: {len(taken)} of {len(students)} students, {len(jobs)} submission(s)"
            + (f": {_student_list(taken)}" if taken else "")
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    forbidden = sorted({str(out_dir)} | {str(p.resolve() if p.is_dir() else p.resolve().parent) for p in options.paths})
    versions = {name: grader_fingerprint(name) for name in {j.assignment for j in jobs}}

    results: dict[Job, SubmissionResult] = {}
    pending = []
    units_map = json.loads(options.units_map.read_text()) if options.units_map else {}
    for job in jobs:
        fingerprint = expected_fingerprint(job, versions, units_map)
        path = out_dir / "results" / job.assignment / f"{job.student}.json"
        cached = read_cached_result(path)
        selected = not options.student or job.student in options.student
        if cached is not None and (not selected or (cached.fingerprint == fingerprint and not options.force)):
            results[job] = cached  # --student: everyone else keeps their last grade
            continue
        if selected:
            pending.append((job, fingerprint))
    if results:
        print(f"Reusing {len(results)} up-to-date result(s); grading {len(pending)}.")

    settings = {
        "limits": {
            k: v
            for k, v in (
                ("cell_timeout", options.cell_timeout),
                ("memory_mb", options.memory_mb),
                ("probe_timeout_cap", options.probe_timeout_cap),
                ("submission_timeout", options.submission_timeout),
            )
            if v is not None
        },
        "forbidden": forbidden,
        "sandbox": not options.unsafe_no_sandbox,
        "reference_cache": str(options.reference_cache.resolve()),
        "units_map": units_map,
    }
    started = time.time()

    def on_result(job: Job, result: SubmissionResult):
        write_atomic(out_dir / "results" / job.assignment / f"{job.student}.json", result.to_json())
        write_submission_reports(result, out_dir, options.release_stage or DEFAULT_RELEASE_STAGE)
        results[job] = result

    reused = len(results)
    failures = grade_all(pending, out_dir, settings, options.jobs, on_result)

    # A student whose files were all rejected gets a 0 row saying why (and feedback saying so).
    rejected = [missing_result(missing) for missing in intake.missing]
    for result in rejected:
        write_submission_reports(result, out_dir)
    all_results = list(results.values()) + rejected
    gradebook = render_outputs(
        all_results,
        out_dir,
        protections,
        unsafe=options.unsafe_no_sandbox,
        refresh_feedback=options.release_stage is not None,
        release_stage=options.release_stage or DEFAULT_RELEASE_STAGE,
    )
    graded = [results[job] for job, _ in pending if job in results]
    write_run_manifest(
        out_dir,
        {
            "shard": f"{shard[0]}/{shard[1]}" if shard else None,
            "students": sorted({j.student for j in jobs}),
            "submissions": sorted([j.student, j.assignment] for j in jobs),
            "intake": {outcome.value: intake.count(outcome) for outcome in Outcome},
            "rejected_without_grade": sorted([m.student, m.assignment] for m in intake.missing),
            "graded": len(graded),
            "reused": reused,
            "failures": failures,
            "protections": protections_record(protections),
            "unsafe_no_sandbox": options.unsafe_no_sandbox,
            "host": socket.gethostname(),
            "jobs": options.jobs,
            "seconds": round(time.time() - started, 1),
            "cpu_seconds": round(sum(r.cpu_s for r in graded), 1),
        },
    )
    print(summary_table(all_results))
    print(f"\nProtections around student code:\n{protections_text(protections, unsafe=options.unsafe_no_sandbox)}")
    print(
        f"\nWrote {gradebook.relative_to(out_dir.parent) if out_dir.parent in gradebook.parents else gradebook}, "
        f"feedback/, gradescope/ and report.md in {out_dir} ({time.time() - started:.0f} s)"
    )
    for failure in failures:
        print(f"ERROR: {failure}", file=sys.stderr)
    return 1 if failures else 0
