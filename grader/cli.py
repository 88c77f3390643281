"""`make grade` / `python -m grader`: grade a folder of submissions into a gradebook.

    python -m grader                         # the bundled example submissions
    python -m grader submitted/              # nbgrader layout: submitted/<student>/<assignment>/*.ipynb
    python -m grader hw1/ --assignment fcn   # a plain folder of <student_id>.ipynb files
    python -m grader zips/                   # a folder of <student_id>.zip made by `python -m starter.submit`
    python -m grader ... --student alice     # regrade one student (others are reused)
    options: --out grades  -j N  --force  --no-sandbox

Each submission is graded by its own trusted runner process (`grader.runner`), which starts
a sandboxed worker for the student's code. Finished results are kept in
<out>/results/<assignment>/<student>.json, keyed by a fingerprint of the submission and
the grader, so an interrupted run resumes and a re-run reuses every unchanged result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from grader.examples import EXAMPLES_DIR, build_examples
from grader.notebooks import (
    REPO_ROOT, NotebookError, assignment_names, cells_by_grade_id, load_assignment, read_json_notebook,
)
from grader.report import summary_table, write_gradebook, write_run_report, write_submission_reports, protections_text
from grader.runner import write_atomic
from grader.sandbox import active_protections

SUBMISSION_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Job:
    student: str
    assignment: str
    notebook: Path


def infer_assignment(path: Path, known: list[str]) -> str | None:
    """The assignment whose graded cell ids the notebook shares most (None if unreadable)."""
    try:
        ids = set(cells_by_grade_id(read_json_notebook(path)))
    except (NotebookError, OSError):
        return None
    scores = {name: len(ids & {u.grade_id for u in load_assignment(name).units}) for name in known}
    best = max(scores, key=scores.get, default=None)
    return best if best and scores[best] > 0 else None


MAX_ZIP_MEMBER_BYTES = 64 * 1024 * 1024


def unpack_submission_zip(archive: Path, unpack_root: Path, known: list[str]) -> list[Job]:
    """A zip made by `python -m starter.submit`: <assignment>/<assignment>.ipynb entries.

    Only notebook members with a known assignment folder are read, each size-capped; nothing
    is extracted by the archive's own paths (no traversal)."""
    student = archive.stem
    jobs = []
    try:
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                parts = Path(info.filename).parts
                if len(parts) != 2 or parts[0] not in known or not parts[1].endswith(".ipynb"):
                    continue
                if info.file_size > MAX_ZIP_MEMBER_BYTES:
                    raise SystemExit(f"error: {archive}: {info.filename} is larger than {MAX_ZIP_MEMBER_BYTES} bytes")
                target = unpack_root / student / parts[0] / f"{parts[0]}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(bundle.read(info))
                jobs.append(Job(student, parts[0], target))
    except zipfile.BadZipFile:
        print(f"warning: {archive} is not a valid zip file; skipped", file=sys.stderr)
    return jobs


def discover(paths: list[Path], assignment: str | None, unpack_root: Path | None = None) -> list[Job]:
    known = assignment_names()
    jobs: list[Job] = []
    loose: list[Path] = []
    for path in paths:
        if path.is_file() and path.suffix == ".ipynb":
            loose.append(path)
            continue
        if path.is_file() and path.suffix == ".zip":
            jobs += unpack_submission_zip(path, unpack_root, known)
            continue
        if not path.is_dir():
            raise SystemExit(f"error: {path} is neither a folder, a .zip nor a .ipynb file")
        loose += sorted(path.glob("*.ipynb"))
        for archive in sorted(path.glob("*.zip")):
            jobs += [j for j in unpack_submission_zip(archive, unpack_root, known)
                     if not assignment or j.assignment == assignment]
        for student_dir in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for assignment_dir in sorted(p for p in student_dir.iterdir() if p.is_dir() and p.name in known):
                if assignment and assignment_dir.name != assignment:
                    continue
                preferred = assignment_dir / f"{assignment_dir.name}.ipynb"
                notebooks = [preferred] if preferred.exists() else sorted(assignment_dir.glob("*.ipynb"))
                if notebooks:
                    jobs.append(Job(student_dir.name, assignment_dir.name, notebooks[0]))
    inferred = {p: assignment or infer_assignment(p, known) for p in loose}
    majority = max(set(inferred.values()) - {None}, key=list(inferred.values()).count, default=None)
    for path in loose:
        name = inferred[path] or majority
        if name is None:
            raise SystemExit(f"error: cannot tell which assignment {path} is; pass --assignment")
        jobs.append(Job(path.stem, name, path))
    return jobs


def grader_fingerprint(assignment: str) -> str:
    digest = hashlib.sha256()
    spec = load_assignment(assignment)
    for path in [spec.solution_path, spec.checks_path, *sorted((REPO_ROOT / "grader").glob("*.py"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def job_fingerprint(job: Job, grader_version: str) -> str:
    return hashlib.sha256(job.notebook.read_bytes() + grader_version.encode()).hexdigest()[:24]


def run_job(job: Job, out_dir: Path, slot_pool: queue.Queue, options: argparse.Namespace, hide: list[str]) -> dict:
    result_path = out_dir / "results" / job.assignment / f"{job.student}.json"
    log_path = out_dir / "logs" / job.assignment / f"{job.student}.log"
    slot = slot_pool.get()
    try:
        command = [sys.executable, "-m", "grader.runner", "--assignment", job.assignment, "--notebook",
                   str(job.notebook), "--student", job.student, "--result", str(result_path) + ".partial",
                   "--log", str(log_path), "--slot", str(slot), "--cache", str(out_dir / ".reference-cache")]
        for path in hide:
            command += ["--hide", path]
        if options.no_sandbox:
            command.append("--no-sandbox")
        for flag in ("cell_timeout", "probe_timeout_cap", "memory_mb"):
            if getattr(options, flag) is not None:
                command += [f"--{flag.replace('_', '-')}", str(getattr(options, flag))]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        try:
            completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                       timeout=options.submission_timeout)
            failure = "" if completed.returncode == 0 else completed.stderr[-3000:]
        except subprocess.TimeoutExpired:
            failure = f"grading took longer than {options.submission_timeout} s"
        partial = Path(str(result_path) + ".partial")
        if failure or not partial.exists():
            raise RuntimeError(f"grading {job.student}/{job.assignment} failed: {failure}")
        result = json.loads(partial.read_text())
        partial.unlink()
        return result
    finally:
        slot_pool.put(slot)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="submission folders or notebooks (default: bundled examples)")
    parser.add_argument("--assignment", help="assignment of loose notebooks (inferred from their cells if omitted)")
    parser.add_argument("--student", action="append", help="grade only these student ids")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "grades", help="output folder (default: grades/)")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="parallel submissions")
    parser.add_argument("--force", action="store_true", help="regrade even when a result is up to date")
    parser.add_argument("--no-sandbox", action="store_true", help="separate process and limits only (debugging)")
    parser.add_argument("--submission-timeout", type=float, default=SUBMISSION_TIMEOUT_S,
                        help="seconds before one submission's grading is abandoned")
    parser.add_argument("--cell-timeout", type=float, help="seconds one notebook cell may run (default 120)")
    parser.add_argument("--probe-timeout-cap", type=float, help="cap on every check's time limit, in seconds")
    parser.add_argument("--memory-mb", type=int, help="memory cap of each worker (default 6144)")
    options = parser.parse_args(argv)

    if not options.paths:
        build_examples(assignments=[options.assignment] if options.assignment else None)
        options.paths = [EXAMPLES_DIR]
        print(f"No submissions given: grading the bundled examples in {EXAMPLES_DIR.relative_to(REPO_ROOT)}/")
    out_dir = options.out.resolve()
    jobs = discover([p.resolve() for p in options.paths], options.assignment, out_dir / "submissions")
    if options.student:
        unknown = set(options.student) - {j.student for j in jobs}
        if unknown:
            raise SystemExit(f"error: no submission from {', '.join(sorted(unknown))}")
    if not jobs:
        print("No submissions found.")
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    hide = sorted({str(out_dir)} | {str(p.resolve() if p.is_dir() else p.resolve().parent) for p in options.paths})
    versions = {name: grader_fingerprint(name) for name in {j.assignment for j in jobs}}

    results: dict[Job, dict] = {}
    pending = []
    for job in jobs:
        fingerprint = job_fingerprint(job, versions[job.assignment])
        path = out_dir / "results" / job.assignment / f"{job.student}.json"
        cached = json.loads(path.read_text()) if path.exists() else None
        selected = not options.student or job.student in options.student
        if cached and (not selected or (cached.get("fingerprint") == fingerprint and not options.force)):
            results[job] = cached  # --student: everyone else keeps their last grade
            continue
        if selected:
            pending.append((job, fingerprint))
    if results:
        print(f"Reusing {len(results)} up-to-date result(s); grading {len(pending)}.")

    slot_pool: queue.Queue = queue.Queue()
    for slot in range(max(1, options.jobs)):
        slot_pool.put(slot)
    failures = []
    started = time.time()
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        futures = {pool.submit(run_job, job, out_dir, slot_pool, options, hide): (job, fp) for job, fp in pending}
        progress = tqdm(as_completed(futures), total=len(futures), desc="grading", unit="submission",
                        disable=not pending)
        for future in progress:
            job, fingerprint = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # a runner crash must not stop the others
                failures.append(f"{job.student}/{job.assignment}: {exc}")
                continue
            result["fingerprint"] = fingerprint
            write_atomic(out_dir / "results" / job.assignment / f"{job.student}.json",
                         json.dumps(result, indent=1, sort_keys=True))
            write_submission_reports(result, out_dir)
            results[job] = result
            progress.set_postfix_str(f"{job.student}: {result['total']:g}/{result['max']:g}")

    all_results = list(results.values())
    for result in all_results:  # reports of reused results may be missing (e.g. deleted by hand)
        if not (out_dir / "feedback" / result["student_id"] / f"{result['assignment']}.md").exists():
            write_submission_reports(result, out_dir)
    columns = [u.grade_id for name in sorted({r["assignment"] for r in all_results})
               for u in load_assignment(name).auto_units]
    gradebook = write_gradebook(all_results, columns, out_dir)
    protections = active_protections(sandbox=not options.no_sandbox)
    write_run_report(all_results, out_dir, protections)
    print(summary_table(all_results))
    print(f"\nProtections around student code:\n{protections_text(protections)}")
    print(f"\nWrote {gradebook.relative_to(out_dir.parent) if out_dir.parent in gradebook.parents else gradebook}, "
          f"feedback/, gradescope/ and report.md in {out_dir} ({time.time() - started:.0f} s)")
    for failure in failures:
        print(f"ERROR: {failure}", file=sys.stderr)
    return 1 if failures else 0
