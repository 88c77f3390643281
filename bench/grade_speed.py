"""Seconds per submission: our grader (-j 1 and -j 2) vs `nbgrader autograde`, same submissions, same run;
and what the sandbox costs: worker start-up and seconds per submission with and without it.

    python bench/grade_speed.py [--assignment fcn] [--skip-nbgrader] [--starts 5]

Submissions: the bundled examples of the assignment (solution, untouched, buggy). Our grader
runs hidden checks against a sandboxed worker; nbgrader autograde executes each notebook top
to bottom in its kernel (in fast mode here, so training cells are cheap) — the way nbgrader
courses grade. Prints seconds per submission, the ratio, and the peak worker memory we measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from grader.results import SubmissionResult  # noqa: E402
from segkit.proof.examples import example_notebooks  # noqa: E402

STUDENTS = ("example-solution", "example-untouched", "example-buggy")


def write_submissions(root: Path, name: str) -> Path:
    notebooks = example_notebooks(name)
    for student in STUDENTS:
        path = root / "submitted" / student / name / f"{name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(notebooks[student]), encoding="utf-8")
    return root / "submitted"


def time_ours(submitted: Path, name: str, jobs: int, out: Path, *extra: str) -> tuple[float, list[SubmissionResult]]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            str(submitted),
            "--assignment",
            name,
            "--out",
            str(out),
            "-j",
            str(jobs),
            "--force",
            *extra,
        ],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    results = [SubmissionResult.from_json(p.read_text()) for p in (out / "results" / name).glob("*.json")]
    return elapsed, results


def time_nbgrader(course: Path, name: str) -> float:
    shutil.copytree(REPO / "solutions", course / "solutions")
    shutil.copy(REPO / "nbgrader_config.py", course / "nbgrader_config.py")
    # nbgrader runs the `alembic` executable of its environment: put that environment's bin first.
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        SEGKIT_FAST="1",
        MPLBACKEND="Agg",
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    )
    nbgrader = [sys.executable, "-m", "nbgrader"]

    def run(*args):
        subprocess.run([*nbgrader, *args], cwd=course, env=env, check=True, capture_output=True)

    run("db", "assignment", "add", name)
    for student in STUDENTS:
        run("db", "student", "add", student)
    run("generate_assignment", name, "--force")
    start = time.perf_counter()
    # nbgrader keeps going past a failing submission; check=False so a crash still yields a timing.
    subprocess.run(
        [*nbgrader, "autograde", name, "--force", "--ExecutePreprocessor.timeout=600"],
        cwd=course,
        env=env,
        capture_output=True,
    )
    return time.perf_counter() - start


def worker_start_seconds(sandbox: bool, starts: int) -> float:
    """Median seconds from starting a worker to its first answer (torch imported), and stopping it."""
    from grader.sandbox import Worker

    times = []
    for slot in range(starts):
        started = time.perf_counter()
        worker = Worker(slot=slot, sandbox=sandbox)
        worker.start()
        worker.exec_cell("t", "x = 1")
        worker.stop()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="fcn")
    parser.add_argument("--skip-nbgrader", action="store_true")
    parser.add_argument("--starts", type=int, default=5, help="worker starts timed per mode")
    args = parser.parse_args()
    from grader.sandbox import host_sandbox

    host = host_sandbox()
    sandboxed, unsafe = worker_start_seconds(True, args.starts), worker_start_seconds(False, args.starts)
    print(
        f"worker start (median of {args.starts}; mechanisms: {'root' if host.as_root else 'ordinary user'}, "
        f"caps {host.caps}):"
    )
    print(f"  sandboxed                       : {sandboxed:6.2f} s")
    print(f"  --unsafe-no-sandbox (baseline)  : {unsafe:6.2f} s")
    print(
        f"  added by the sandbox            : {sandboxed - unsafe:+6.2f} s per worker start "
        f"(ratio {sandboxed / unsafe:.2f}x)"
    )
    n = len(STUDENTS)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        submitted = write_submissions(root / "course", args.assignment)
        # First run fills the reference cache, as the first submission of a real class does.
        cold, _ = time_ours(submitted, args.assignment, 1, root / "grades-cold")
        warm1, results = time_ours(submitted, args.assignment, 1, root / "grades-j1")
        warm2, _ = time_ours(submitted, args.assignment, 2, root / "grades-j2")
        peak = max(r.peak_worker_memory_mb or 0 for r in results)
        print(f"{args.assignment}: {n} submissions ({', '.join(STUDENTS)}), {os.cpu_count()} cores")
        print(f"  ours -j 1, cold reference cache : {cold / n:6.1f} s/submission")
        print(f"  ours -j 1                       : {warm1 / n:6.1f} s/submission")
        print(f"  ours -j 2                       : {warm2 / n:6.1f} s/submission")
        bare, _ = time_ours(submitted, args.assignment, 1, root / "grades-unsafe", "--unsafe-no-sandbox")
        print(
            f"  ours -j 1 --unsafe-no-sandbox   : {bare / n:6.1f} s/submission (sandbox adds "
            f"{(warm1 - bare) / n:+.2f} s/submission, ratio {warm1 / bare:.2f}x)"
        )
        print(f"  peak worker memory              : {peak:.0f} MB")
        if not args.skip_nbgrader:
            theirs = time_nbgrader(root / "course", args.assignment)
            print(f"  nbgrader autograde              : {theirs / n:6.1f} s/submission")
            print(f"  ratio nbgrader / ours (-j 1)    : {theirs / warm1:6.2f}x")


if __name__ == "__main__":
    main()
