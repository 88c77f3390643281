"""What grading costs per submission, in wall seconds and in core-seconds (CPU time of every process:
the grader, its pool, the sandboxed workers), against `nbgrader autograde` on the same submissions
in the same run; and what the sandbox adds to a worker start.

    python bench/grade_speed.py [--assignment unet --assignment fcn] [--skip-nbgrader] [--starts 5]

Submissions are written independently of the kit where the assignment has them: its two correct
alternatives (assignments/<a>/alternatives.py), plus the solution and the all-bugs example. Our
grader runs the hidden checks against a sandboxed worker per submission; nbgrader autograde
executes each notebook top to bottom (fast mode, so training cells are cheap), the way nbgrader
courses grade. A submission's cost is its result's `cpu_s`: the sandboxed worker's process tree (read
from /proc while it lives) plus the trusted grading process. The kernel's accounting of finished
children (RUSAGE_CHILDREN) misses sandboxed workers (killed with their pid namespace), so it is
printed as the grader's side only, and in full for a run without the sandbox, which the nbgrader
ratio uses.
Sandboxed workers fork from a pre-imported template per grading slot (grader/sandbox/template.py,
WorkerTemplate); its start-up is printed once, apart from the per-submission figures. The layer
is this host's (SEGKIT_SANDBOX_LAYER forces one); `python bench/confine_start.py --layers` compares
a worker's start and a small submission's cost across the bubblewrap and Landlock layers in one run.
Targets (issue 14): at most 5 core-seconds per UNet/CAM/patches submission, 15 per FCN submission.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from grader.results import SubmissionResult  # noqa: E402
from segkit.proof.alternatives import alternative_notebook, assignments_with_alternatives  # noqa: E402
from segkit.proof.examples import example_notebooks  # noqa: E402

TARGET_CORE_SECONDS = {"fcn": 15.0}  # every other assignment: DEFAULT_TARGET
DEFAULT_TARGET = 5.0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def submissions(name: str) -> dict[str, dict]:
    """Independent correct alternatives where the assignment has them, the solution, the all-bugs example."""
    examples = example_notebooks(name)
    chosen = {"example-solution": examples["example-solution"], "example-buggy": examples["example-buggy"]}
    if name in assignments_with_alternatives():
        for k in (0, 1):
            chosen[f"alternative-{k}"] = alternative_notebook(name, k)
    return chosen


def write_submissions(root: Path, name: str) -> tuple[Path, list[str]]:
    notebooks = submissions(name)
    for student, notebook in notebooks.items():
        path = root / "submitted" / student / name / f"{name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(notebook), encoding="utf-8")
    return root / "submitted", sorted(notebooks)


def time_ours(
    submitted: Path, name: str, jobs: int, out: Path, *extra: str
) -> tuple[float, float, list[SubmissionResult]]:
    """Wall seconds, core-seconds and the results of one `python -m grader` run."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start, cpu = time.perf_counter(), children_cpu()
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
    elapsed, core = time.perf_counter() - start, children_cpu() - cpu
    results = [SubmissionResult.from_json(p.read_text()) for p in (out / "results" / name).glob("*.json")]
    return elapsed, core, results


def time_nbgrader(course: Path, name: str, students: list[str]) -> tuple[float, float]:
    """Wall seconds and core-seconds of `nbgrader autograde` over the same submissions."""
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
    for student in students:
        run("db", "student", "add", student)
    run("generate_assignment", name, "--force")
    start, cpu = time.perf_counter(), children_cpu()
    # nbgrader keeps going past a failing submission; check=False so a crash still yields a timing.
    subprocess.run(
        [*nbgrader, "autograde", name, "--force", "--ExecutePreprocessor.timeout=600"],
        cwd=course,
        env=env,
        capture_output=True,
    )
    return time.perf_counter() - start, children_cpu() - cpu


def worker_start_seconds(sandbox: bool, starts: int, template: bool = True) -> float:
    """Median seconds from starting a worker to its first answer (torch imported), and stopping it.
    With the template (the default for sandboxed grading) the first start of a slot also starts the
    template; that one is left out here and reported by template_start()."""
    from grader.sandbox import ENV_TEMPLATE, Worker

    previous = os.environ.get(ENV_TEMPLATE)
    os.environ[ENV_TEMPLATE] = "1" if template else "0"
    try:
        times = []
        for index in range(starts + (1 if sandbox and template else 0)):
            started = time.perf_counter()
            worker = Worker(slot=0 if template else index, sandbox=sandbox)
            worker.start()
            worker.exec_cell("t", "x = 1")
            worker.stop()
            times.append(time.perf_counter() - started)
        times = times[1:] if sandbox and template else times
        return sorted(times)[len(times) // 2]
    finally:
        if previous is None:
            os.environ.pop(ENV_TEMPLATE, None)
        else:
            os.environ[ENV_TEMPLATE] = previous


def template_start() -> tuple[float, float]:
    """Wall seconds and core-seconds of starting one slot's worker template (once per grading process)."""
    from grader.sandbox import Limits, WorkerTemplate, host_sandbox

    template = WorkerTemplate(host_sandbox(), 500, (), 4096)
    started = time.perf_counter()
    template.start(Limits().startup_timeout)
    wall = time.perf_counter() - started
    template.stop()
    return wall, template.cpu_seconds


def bench_assignment(name: str, root: Path, skip_nbgrader: bool) -> dict[str, float]:
    """Print one assignment's figures; return the per-result CPU cost the docs quote (docs/figures)."""
    submitted, students = write_submissions(root / "course", name)
    n = len(students)
    # The first run fills the reference cache, as the first submission of a real class does.
    cold, cold_core, _ = time_ours(submitted, name, 1, root / "grades-cold")
    wall1, core1, results = time_ours(submitted, name, 1, root / "grades-j1")
    wall2, core2, _ = time_ours(submitted, name, 2, root / "grades-j2")
    per_result = sorted(r.cpu_s for r in results)
    target = TARGET_CORE_SECONDS.get(name, DEFAULT_TARGET)
    peak = max(r.peak_worker_memory_mb or 0 for r in results)
    print(f"{name}: {n} submissions ({', '.join(students)}), {os.cpu_count()} cores")
    # Sandboxed workers are killed with their pid namespace at the end of a submission, so their CPU time never
    # reaches RUSAGE_CHILDREN: for sandboxed runs that figure is the grader's side only. Each result's cpu_s
    # (worker tree read from /proc while it lives + the trusted process) is the per-submission cost.
    print(f"  ours -j 1, cold reference cache : {cold / n:6.1f} s/submission (grader side {cold_core / n:.1f} core-s)")
    print(f"  ours -j 1                       : {wall1 / n:6.1f} s/submission (grader side {core1 / n:.1f} core-s)")
    print(f"  ours -j 2                       : {wall2 / n:6.1f} s/submission (grader side {core2 / n:.1f} core-s)")
    print(
        f"  per result (worker + grading)   : median {per_result[len(per_result) // 2]:.1f}, "
        f"max {per_result[-1]:.1f} core-s (target {target:.0f}; without the run's start-up)"
    )
    bare, bare_core, _ = time_ours(submitted, name, 1, root / "grades-unsafe", "--unsafe-no-sandbox")
    print(
        f"  ours -j 1 --unsafe-no-sandbox   : {bare / n:6.1f} s/submission {bare_core / n:6.1f} core-s/submission "
        "(every process counted, start-up included; the sandbox adds the worker-start figure above)"
    )
    print(f"  peak worker memory              : {peak:.0f} MB")
    if not skip_nbgrader:
        theirs, theirs_core = time_nbgrader(root / "course", name, students)
        print(
            f"  nbgrader autograde              : {theirs / n:6.1f} s/submission {theirs_core / n:6.1f} core-s/submission"
        )
        print(
            f"  ratio nbgrader / ours (-j 1)    : {theirs / wall1:6.2f}x wall (sandboxed), "
            f"{theirs_core / bare_core:6.2f}x core-s (ours counted without the sandbox)"
        )
    return {"median": round(per_result[len(per_result) // 2], 1), "max": round(per_result[-1], 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", action="append", help="repeatable; default: every assignment")
    parser.add_argument("--skip-nbgrader", action="store_true")
    parser.add_argument("--starts", type=int, default=5, help="worker starts timed per mode")
    args = parser.parse_args()
    from grader.assignments import assignment_names
    from grader.sandbox import host_sandbox

    host = host_sandbox()
    forked = worker_start_seconds(True, args.starts)
    scratch = worker_start_seconds(True, args.starts, template=False)
    unsafe = worker_start_seconds(False, args.starts)
    template_wall, template_core = template_start()
    print(
        f"worker start (median of {args.starts}; mechanisms: {'root' if host.as_root else 'ordinary user'}, "
        f"caps {host.caps}):"
    )
    print(f"  sandboxed, forked from the template : {forked:6.2f} s")
    print(f"  sandboxed, from scratch             : {scratch:6.2f} s (SEGKIT_WORKER_TEMPLATE=0)")
    print(f"  --unsafe-no-sandbox (baseline)      : {unsafe:6.2f} s")
    print(
        f"  the template itself                 : {template_wall:6.2f} s, {template_core:.1f} core-s "
        "once per grading slot (-j N: N templates per run)"
    )
    print(
        f"  ratio from scratch / forked         : {scratch / forked:6.1f}x; "
        f"from scratch / unsafe {scratch / unsafe:.2f}x"
    )
    per_result = {}
    for name in args.assignment or assignment_names():
        with tempfile.TemporaryDirectory() as tmp:
            per_result[name] = bench_assignment(name, Path(tmp), args.skip_nbgrader)
    if args.assignment:
        return  # the docs quote every assignment from one run: a partial run leaves docs/figures as it is
    from segkit.docs import write_figures

    starts = {"forked": forked, "scratch": scratch, "unsafe": unsafe, "template": template_wall}
    write_figures(
        "grade_speed",
        f"python bench/grade_speed.py --starts {args.starts}" + (" --skip-nbgrader" if args.skip_nbgrader else ""),
        {
            "caps": str(host.caps),
            "worker_start_s": {k: round(v, 2) for k, v in starts.items()}
            | {"template_core_s": round(template_core, 1)},
            "per_result_core_s": per_result,
        },
    )


if __name__ == "__main__":
    main()
