"""`segkit slurm`: grade a class on a Slurm cluster, one job-array task per slice of the students.

    segkit slurm SUBMISSIONS --shards 10 --out grades-hw1            # writes grades-hw1/slurm/*
    bash grades-hw1/slurm/submit.sh                                   # or add --submit above

Writes three files into <out>/slurm/:
- grade.sbatch: a job array `--array=1-N`; task K runs
  `python -m grader SUBMISSIONS --shard K/N --out <out>/shards/K -j <cpus-per-task>`;
- collect.sbatch: `python -m integrations.collect <out> <out>/shards/1 ... <out>/shards/N --submissions ...`,
  which merges the slices into <out>/grades.csv, report.md and feedback/ (exit status 1 and a list
  when a student is missing, a result is stale or two slices disagree);
- submit.sh: submits the array, then collect with `--dependency=afterany:<array job>`: collect runs
  once every task has ended, also when one failed, so it can say which students are missing
  (`--dependency afterok` waits for success instead, and never runs collect after a failure).

Every node must see the kit, its Python environment, the submissions and <out> at the same paths
(a shared filesystem). Tasks never write the same file: each writes its own <out>/shards/K, and the
reference-solution cache is node-local by default ($TMPDIR), so no file lock is ever taken on the
shared filesystem. Re-submitting after a failure reuses every finished result. See
docs/many-machines.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from grader.assignments import REPO_ROOT
from segkit.build.gradescope_zip import joined_grader_args
from starter.common import write_atomic

NODE_LOCAL_REFERENCE_CACHE = '"${TMPDIR:-/tmp}/segkit-reference-cache-$(id -u)"'


def _q(value) -> str:
    return shlex.quote(str(value))


def sbatch_header(options, *, name: str, log: str, array: str | None = None, cpus: int, mem: str, time: str) -> str:
    lines = ["#!/bin/bash", "# Written by `segkit slurm` (segkit/slurm.py): regenerate it rather than edit it."]
    lines += [f"#SBATCH --job-name={name}", f"#SBATCH --output={log}", f"#SBATCH --cpus-per-task={cpus}"]
    if array:
        lines.append(f"#SBATCH --array={array}")
    if mem:
        lines.append(f"#SBATCH {mem}")
    lines.append(f"#SBATCH --time={time}")
    for flag in ("partition", "account"):
        if getattr(options, flag):
            lines.append(f"#SBATCH --{flag}={getattr(options, flag)}")
    lines += [f"#SBATCH {extra}" for extra in options.sbatch_option or ()]
    lines += ["set -euo pipefail", f"cd {_q(REPO_ROOT)}", f"export PYTHONPATH={_q(REPO_ROOT)}", ""]
    return "\n".join(lines)


def grade_script(options, submissions: list[Path], out: Path) -> str:
    """The job array: task K grades slice K of N into <out>/shards/K."""
    array = f"1-{options.shards}" + (f"%{options.max_parallel}" if options.max_parallel else "")
    header = sbatch_header(
        options,
        name=options.job_name,
        log=f"{out}/slurm/logs/grade-%A_%a.out",
        array=array,
        cpus=options.cpus_per_task,
        mem=f"--mem-per-cpu={options.mem_per_cpu}" if options.mem_per_cpu else "",
        time=options.time,
    )
    cache = _q(options.reference_cache) if options.reference_cache else NODE_LOCAL_REFERENCE_CACHE
    command = [
        _q(options.python),
        "-m grader",
        *(_q(p) for p in submissions),
        f'--shard "${{SLURM_ARRAY_TASK_ID}}/{options.shards}"',
        f'--out {_q(out)}/shards/"${{SLURM_ARRAY_TASK_ID}}"',
        f'-j "${{SLURM_CPUS_PER_TASK:-{options.cpus_per_task}}}"',
        f"--reference-cache {cache}",
        *_passthrough(options),
        *([" ".join(_q(arg) for arg in shlex.split(options.grader_args))] if options.grader_args.strip() else []),
    ]
    return header + (
        "# This task's slice of the students; its results carry their fingerprints, so a re-submitted\n"
        "# array reuses everything a previous attempt finished.\n"
        "exec " + " \\\n    ".join(command) + "\n"
    )


def collect_script(options, submissions: list[Path], out: Path) -> str:
    """One job after the array: merge the slices into <out>."""
    header = sbatch_header(
        options,
        name=f"{options.job_name}-collect",
        log=f"{out}/slurm/logs/collect-%j.out",
        cpus=1,
        mem="--mem=4G",
        time="01:00:00",
    )
    command = [
        _q(options.python),
        "-m integrations.collect",
        _q(out),
        f"{_q(out)}/shards/{{1..{options.shards}}}",
        *(f"--submissions {_q(p)}" for p in submissions),
        *_passthrough(options),
    ]
    return header + "exec " + " \\\n    ".join(command) + "\n"


def submit_script(out: Path, dependency: str) -> str:
    slurm = f"{_q(out)}/slurm"
    return (
        "#!/bin/bash\n"
        "# Written by `segkit slurm`: submit the grading array, then the collect job that waits for it.\n"
        "set -euo pipefail\n"
        f"mkdir -p {slurm}/logs\n"
        f"array=$(sbatch --parsable {slurm}/grade.sbatch)\n"
        'array="${array%%;*}"  # --parsable prints JOBID[;CLUSTER]\n'
        f'collect=$(sbatch --parsable --dependency={dependency}:"$array" {slurm}/collect.sbatch)\n'
        'collect="${collect%%;*}"\n'
        f'echo "$array $collect" > {slurm}/jobs\n'
        'echo "grading: array job $array; collect: job $collect (after the array, '
        f'{dependency}); logs in {slurm}/logs"\n'
    )


def _passthrough(options) -> list[str]:
    """Options the shards and collect must agree on."""
    args = []
    if options.assignment:
        args.append(f"--assignment {_q(options.assignment)}")
    if options.units_map:
        args.append(f"--units-map {_q(options.units_map.resolve())}")
    return args


def write_scripts(options) -> Path:
    """Write <out>/slurm/{grade,collect}.sbatch and submit.sh; returns that folder."""
    if any(c in options.grader_args for c in "\"'`$\\\n;&|<>()"):
        raise SystemExit("error: --grader-args takes plain options only (no quotes or shell syntax)")
    for forbidden in ("--shard", "--out", "-j", "--jobs", "--reference-cache"):
        if forbidden in shlex.split(options.grader_args):
            raise SystemExit(f"error: segkit slurm sets {forbidden} itself; use its own options")
    submissions = [p.resolve() for p in options.paths]
    if not submissions:
        from segkit.proof.examples import EXAMPLES_DIR, build_examples

        build_examples(assignments=[options.assignment] if options.assignment else None)
        submissions = [EXAMPLES_DIR]
        print(f"No submissions given: the job grades the bundled examples in {EXAMPLES_DIR}")
    out = options.out.resolve()
    folder = out / "slurm"
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "grade.sbatch", grade_script(options, submissions, out))
    write_atomic(folder / "collect.sbatch", collect_script(options, submissions, out))
    write_atomic(folder / "submit.sh", submit_script(out, options.dependency))
    os.chmod(folder / "submit.sh", 0o755)
    return folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segkit slurm",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("paths", nargs="*", type=Path, help="submissions (none: the bundled examples)")
    parser.add_argument("--shards", type=int, default=10, help="array tasks: slices of the students (default 10)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "grades", help="merged output folder (default grades/)")
    parser.add_argument("--cpus-per-task", type=int, default=4, help="cores per task = its -j (default 4)")
    parser.add_argument(
        "--mem-per-cpu",
        default="6G",
        help="memory per core (default 6G: one worker's default cap, --memory-mb 6144); '' leaves it to the site",
    )
    parser.add_argument("--time", default="04:00:00", help="time limit of each task (default 04:00:00)")
    parser.add_argument("--partition", help="Slurm partition")
    parser.add_argument("--account", help="Slurm account")
    parser.add_argument("--max-parallel", type=int, help="at most this many tasks at once (--array=1-N%%M)")
    parser.add_argument("--job-name", default="segkit-grade")
    parser.add_argument("--sbatch-option", action="append", help="another #SBATCH line, e.g. --qos=short")
    parser.add_argument("--assignment", help="assignment of loose notebooks (as for segkit grade)")
    parser.add_argument("--units-map", type=Path, help="as for segkit grade")
    parser.add_argument("--grader-args", default="", help="more `python -m grader` options, e.g. '--memory-mb 3000'")
    parser.add_argument(
        "--reference-cache",
        type=Path,
        help="shared cache of the reference's probe results (default: node-local, in $TMPDIR)",
    )
    parser.add_argument("--python", default=sys.executable, help="the kit's Python on the nodes (default: this one)")
    parser.add_argument(
        "--dependency",
        choices=("afterany", "afterok"),
        default="afterany",
        help="when collect runs: after every task ended (default; it reports what is missing) or only if all succeeded",
    )
    parser.add_argument("--submit", action="store_true", help="run submit.sh (sbatch) right away")
    return parser


def main(argv=None) -> int:
    options = build_parser().parse_args(joined_grader_args(list(sys.argv[1:] if argv is None else argv)))
    if options.shards < 1:
        raise SystemExit("error: --shards must be at least 1")
    folder = write_scripts(options)
    print(f"Wrote {folder}/grade.sbatch ({options.shards} array tasks), collect.sbatch and submit.sh")
    if not options.submit:
        print(f"Submit with: bash {folder}/submit.sh")
        return 0
    return subprocess.run(["bash", str(folder / "submit.sh")], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
