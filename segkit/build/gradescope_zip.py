"""Build the Gradescope autograder zip (`segkit gradescope`, `make gradescope`).

    segkit gradescope --assignment fcn --out dist/gradescope-fcn.zip     # one notebook
    segkit gradescope --assignment fcn,cam --out dist/gradescope-hw.zip  # one upload, two notebooks

The zip's root becomes `/autograder/source` on Gradescope: `setup.sh` (run once when
Gradescope builds the image: a virtual environment from the lock file, an unprivileged
`student` account), `run_autograder` (run per submission), and only what grading needs: the
engine `grader/`, the `starter/` package the worker imports, `integrations/` (whose Gradescope
staging and results `run_autograder` calls), and per chosen assignment its
`assignment.toml`, hidden checks (with the shared ones they import, from `assignments/_shared/`) and
the solution and student notebooks the checks compare against. No build or proof tool, no example bugs, no correct alternatives, no other
assignment's checks (`tests/test_gradescope.py` opens the zip and checks).
Upload it as the assignment's "Autograder configuration" with the Ubuntu 22.04 base image.

`run_autograder` calls `python -m integrations.gradescope stage|results` and
`python -m grader`. Every `/autograder` path is relative to `$AUTOGRADER_ROOT` (default
`/autograder`), which is how the tests run `run_autograder` locally on a temporary tree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grader.assignments import REPO_ROOT, load_assignment
from grader.run.store import check_files
from integrations.gradescope import parse_assignments
from starter.common import write_zip

VENV_DEFAULT = "/opt/segkit-venv"
# Files of the kit copied to the zip besides the packages (setup.sh installs from them).
KIT_FILES = ("requirements.txt", "requirements-dev.txt", "requirements-lock.txt")
PACKAGES = ("grader", "starter", "integrations")  # the engine, what its worker imports, the Gradescope staging

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image (not per submission).
# It installs the kit's pinned Python packages into a virtual environment and creates the
# unprivileged account `student`. CPU-only torch wheels keep the image small (Gradescope has
# no GPU); set SEGKIT_TORCH_INDEX="" to take the default index instead.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
VENV="${SEGKIT_VENV:-@VENV@}"
TORCH_INDEX="${SEGKIT_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"

if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -y
    # util-linux brings `unshare` (namespaces, where the container allows them).
    apt-get install -y --no-install-recommends python3 python3-venv python3-pip util-linux
fi
python3 -c 'import sys; assert sys.version_info >= (3, 10), "the kit needs Python 3.10+"'
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# requirements-lock.txt pins the default torch build with its CUDA 13 libraries; with a torch index
# (CPU-only by default, or e.g. SEGKIT_TORCH_INDEX=https://download.pytorch.org/whl/cu126) those
# libraries are left out: the chosen build brings what it needs.
if [ -n "$TORCH_INDEX" ]; then
    grep -v -E '^(nvidia-|triton==)' "$SOURCE/requirements-lock.txt" > "$ROOT/requirements-lock.txt"
else
    cp "$SOURCE/requirements-lock.txt" "$ROOT/requirements-lock.txt"
fi
"$VENV/bin/python" -m pip install --quiet ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} \
    -r "$ROOT/requirements-lock.txt"
# The sandboxed worker runs student code as an unprivileged uid: it must read the environment.
chmod -R a+rX "$VENV"
if ! id -u student >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash student
fi
cd "$SOURCE" && PYTHONPATH="$SOURCE" "$VENV/bin/python" -c \
    "import torch, torchvision, cv2, nbgrader, grader.runner; print('segkit autograder ready: torch', torch.__version__)"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission, as root, in a fresh container.
# 1. stage the submitted notebook(s) into nbgrader's layout (python -m integrations.gradescope stage)
# 2. grade them with the kit's sandboxed grader (python -m grader ... -j 1)
# 3. write $ROOT/results/results.json in Gradescope's format (python -m integrations.gradescope results)
# Any failure still leaves a results.json: score 0 and a message saying what to do.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
SUBMISSION="$ROOT/submission"
RESULTS="$ROOT/results"
PYTHON="${SEGKIT_PYTHON:-${SEGKIT_VENV:-@VENV@}/bin/python}"
ASSIGNMENTS="${SEGKIT_ASSIGNMENTS:-@ASSIGNMENTS@}"
GRADER_ARGS="${SEGKIT_GRADER_ARGS-@GRADER_ARGS@}"  # extra `python -m grader` options, e.g. --memory-mb 3000
WORK="$ROOT/segkit-work"

mkdir -p "$RESULTS"
rm -rf "$WORK" && mkdir -p "$WORK"
# Student code runs in the kit's allow-list sandbox (bubblewrap, user namespaces) under a uid of its
# own (61000+); the permissions below are a second line. Where the container forbids user
# namespaces, the grader refuses (exit status 2) and every student sees a staff-facing message,
# unless the instructor built the zip with GRADER_ARGS=--unsafe-no-sandbox.
chmod 700 "$SOURCE" "$SUBMISSION" "$RESULTS" "$WORK" 2>/dev/null || true

fallback() {  # $1: message shown to the student (no quotes or backslashes)
    printf '{"score": 0, "output": "%s", "tests": [], "stdout_visibility": "hidden"}\n' "$1" > "$RESULTS/results.json"
}
fallback "The autograder stopped before grading your notebook. Nothing was graded; please resubmit, and contact course staff if this persists."

if [ ! -x "$PYTHON" ]; then
    echo "segkit: no Python environment at $PYTHON (did setup.sh run?)"
    fallback "The autograder is misconfigured (its Python environment is missing). This is not your fault: please tell course staff."
    exit 0
fi
cd "$SOURCE" || exit 0
export PYTHONPATH="$SOURCE"

echo "== staging the submission"
"$PYTHON" -m integrations.gradescope stage --submission "$SUBMISSION" --assignments "$ASSIGNMENTS" \
    --dest "$WORK/submitted" --report "$WORK/stage.json"

echo "== grading"
if [ -d "$WORK/submitted/submission" ]; then
    ASSIGNMENT_FLAG=()
    case "$ASSIGNMENTS" in *,*) ;; *) ASSIGNMENT_FLAG=(--assignment "$ASSIGNMENTS") ;; esac
    "$PYTHON" -m grader "$WORK/submitted" "${ASSIGNMENT_FLAG[@]}" --out "$RESULTS/grades" -j 1 --force \
        $GRADER_ARGS 2>&1
    STATUS=$?
    echo "grader exit status: $STATUS"
    if [ "$STATUS" = 2 ]; then
        fallback "The autograder could not start its sandbox in this container, so your notebook was not run. This is not your fault: please tell course staff (see the autograder log)."
        exit 0
    fi
fi

echo "== writing results.json"
"$PYTHON" -m integrations.gradescope results --grades "$RESULTS/grades" --assignments "$ASSIGNMENTS" \
    --report "$WORK/stage.json" --out "$RESULTS/results.json"
exit 0
"""


def source_files(assignments: list[str]) -> list[Path]:
    """Repository files the autograder needs, relative to the repository root."""
    selected = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*")):
            relative = path.relative_to(REPO_ROOT)
            if path.is_file() and "__pycache__" not in relative.parts and path.suffix != ".pyc":
                selected.append(relative)
    for name in assignments:
        spec = load_assignment(name)
        for path in (spec.folder / "assignment.toml", spec.solution_path, spec.release_path):
            selected.append(path.relative_to(REPO_ROOT))
        # The hidden checks and the kit's modules they import (assignments/_shared/ among them).
        selected += [p.relative_to(REPO_ROOT) for p in check_files(spec) if p.relative_to(REPO_ROOT) not in selected]
    selected += [Path(f) for f in KIT_FILES if (REPO_ROOT / f).exists()]
    missing = [str(p) for p in selected if not (REPO_ROOT / p).is_file()]
    if missing:
        raise SystemExit(f"error: missing {', '.join(missing)} (run `make generate`?)")
    return selected


def build_zip(assignments: list[str], out: Path, venv: str = VENV_DEFAULT, grader_args: str = "") -> dict:
    """Write the Gradescope autograder zip; return its manifest (also stored in the zip)."""
    specs = {name: load_assignment(name) for name in assignments}
    manifest = {
        "assignments": assignments,
        "max_points": {name: spec.max_points for name, spec in specs.items()},
        "total_max_points": sum(spec.max_points for spec in specs.values()),
        "manual_points": {name: sum(u.points for u in spec.manual_units) for name, spec in specs.items()},
        "venv": venv,
        "grader_args": grader_args,
    }
    if any(c in grader_args for c in "\"'`$\\\n;&|<>()"):
        raise SystemExit("error: --grader-args takes plain options only (no quotes or shell syntax)")
    script = (
        RUN_AUTOGRADER.replace("@VENV@", venv)
        .replace("@ASSIGNMENTS@", ",".join(assignments))
        .replace("@GRADER_ARGS@", grader_args)
    )
    members = {
        "setup.sh": SETUP_SH.replace("@VENV@", venv).encode(),
        "run_autograder": script.encode(),
        "segkit-gradescope.json": (json.dumps(manifest, indent=1) + "\n").encode(),
    }
    for relative in source_files(assignments):
        members[relative.as_posix()] = (REPO_ROOT / relative).read_bytes()
    write_zip(Path(out), members, executable=("setup.sh", "run_autograder"))
    return manifest


def joined_grader_args(argv: list[str]) -> list[str]:
    """`--grader-args --unsafe-no-sandbox` as `--grader-args=--unsafe-no-sandbox`: argparse takes a
    value that starts with a dash (and has no space) for an option of its own and stops with
    "expected one argument", so every documented spelling is joined before parsing."""
    joined, rest = [], iter(argv)
    for arg in rest:
        value = next(rest, None) if arg == "--grader-args" else None
        joined.append(arg if value is None else f"{arg}={value}")
    return joined


def main(argv=None) -> int:
    argv = joined_grader_args(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog="segkit gradescope", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--assignment",
        action="append",
        required=True,
        help="assignment(s) this Gradescope assignment grades (repeat or comma-separate)",
    )
    parser.add_argument("--out", type=Path, help="zip to write (default: dist/gradescope-<assignments>.zip)")
    parser.add_argument("--venv", default=VENV_DEFAULT, help="where setup.sh puts the environment on Gradescope")
    parser.add_argument(
        "--grader-args",
        default="",
        help="extra `python -m grader` options for every submission, e.g. '--memory-mb 3000' or "
        "--unsafe-no-sandbox (also spelt --grader-args=...)",
    )
    args = parser.parse_args(argv)
    assignments = parse_assignments(args.assignment)
    out = args.out or REPO_ROOT / "dist" / f"gradescope-{'-'.join(assignments)}.zip"
    manifest = build_zip(assignments, out, venv=args.venv, grader_args=args.grader_args)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) for {', '.join(assignments)}")
    print(
        f"On Gradescope: set the assignment's total to {manifest['total_max_points']:g} autograded points "
        f"(+ {sum(manifest['manual_points'].values()):g} for written answers graded by hand), "
        "base image Ubuntu 22.04, and upload the zip as the autograder configuration."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
