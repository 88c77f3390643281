"""Gradescope autograder: build the upload zip, and the two steps its `run_autograder` calls.

    python -m grader.gradescope --assignment fcn --out dist/gradescope-fcn.zip     # build (make gradescope)
    python -m grader.gradescope --assignment fcn,cam --out dist/gradescope-hw.zip  # one upload, two notebooks

The zip's root becomes `/autograder/source` on Gradescope: `setup.sh` (run once when
Gradescope builds the image: a virtual environment with requirements-dev.txt, an
unprivileged `student` account), `run_autograder` (run per submission), and the kit's
`grader/`, `starter/`, the selected assignments' `solutions/` and `notebooks/`, the
requirements files and `nbgrader_config.py`. Upload it as the assignment's
"Autograder configuration" with the Ubuntu 22.04 base image.

`run_autograder` (bash) calls back into this module with trusted, stdlib-plus-grader code:

    python -m grader.gradescope stage   --submission DIR --assignments fcn --dest STAGE --report stage.json
    python -m grader.gradescope results --grades OUT --assignments fcn --report stage.json --out results.json

`stage` finds the student's notebook(s) in Gradescope's submission folder (a single `.ipynb`,
the unpacked or still zipped archive of `python -m starter.submit`, or any folder; symlinks
are never followed) and copies each into nbgrader's layout `STAGE/submission/<a>/<a>.ipynb`,
which `python -m grader STAGE --out OUT -j 1` grades. `results` turns what the grader wrote
(`OUT/gradescope/<a>/submission/results.json`) into `/autograder/results/results.json`, with
score 0 and a clear message for a missing notebook or a grading run that failed.

Every `/autograder` path is relative to `$AUTOGRADER_ROOT` (default `/autograder`), which is
how `tests/test_gradescope.py` runs `run_autograder` locally on a temporary tree.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grader.notebooks import REPO_ROOT, assignment_names, load_assignment

STAGE_STUDENT = "submission"  # the one "student" of a Gradescope run (results are per upload)
MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024
MAX_CANDIDATES = 200  # a submission folder with more files than this is not a notebook upload
SKIPPED_DIRS = {"__MACOSX", ".ipynb_checkpoints", ".git", "__pycache__"}
ZIP_EPOCH = (2024, 1, 1, 0, 0, 0)  # fixed member timestamps: the same kit builds the same zip
VENV_DEFAULT = "/opt/segkit-venv"

# Files of the kit copied to the zip (relative to the repository root); per-assignment
# files are added by `source_files`.
KIT_FILES = ("requirements.txt", "requirements-dev.txt", "nbgrader_config.py", "pyproject.toml")
KIT_PACKAGES = ("grader", "starter")

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
"$VENV/bin/python" -m pip install --quiet ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} \
    -r "$SOURCE/requirements-dev.txt"
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
# 1. stage the submitted notebook(s) into nbgrader's layout (python -m grader.gradescope stage)
# 2. grade them with the kit's sandboxed grader (python -m grader ... -j 1)
# 3. write $ROOT/results/results.json in Gradescope's format (python -m grader.gradescope results)
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
"$PYTHON" -m grader.gradescope stage --submission "$SUBMISSION" --assignments "$ASSIGNMENTS" \
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
"$PYTHON" -m grader.gradescope results --grades "$RESULTS/grades" --assignments "$ASSIGNMENTS" \
    --report "$WORK/stage.json" --out "$RESULTS/results.json"
exit 0
"""


# -- building the zip ------------------------------------------------------------------------------
def parse_assignments(text: str | list[str]) -> list[str]:
    """'fcn,cam' or ['fcn', 'cam'] -> ['fcn', 'cam'], each checked against solutions/."""
    items = text if isinstance(text, list) else [text]
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    known = assignment_names()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SystemExit(f"error: unknown assignment(s) {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(known)}")
    return list(dict.fromkeys(names))


def source_files(assignments: list[str]) -> list[Path]:
    """Repository files the autograder needs, relative to the repository root."""
    selected = []
    for package in KIT_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*")):
            relative = path.relative_to(REPO_ROOT)
            if not path.is_file() or "__pycache__" in relative.parts or path.suffix == ".pyc":
                continue
            # Only the selected assignments' hidden checks travel (helpers and specs all do).
            if relative.parts[:2] == ("grader", "checks") and path.name.startswith("test_") \
                    and path.stem[len("test_"):] not in assignments:
                continue
            selected.append(relative)
    for name in assignments:
        selected += [Path("solutions") / name / f"{name}.ipynb", Path("notebooks") / name / f"{name}.ipynb"]
    selected += [Path(f) for f in KIT_FILES if (REPO_ROOT / f).exists()]
    missing = [str(p) for p in selected if not (REPO_ROOT / p).is_file()]
    if missing:
        raise SystemExit(f"error: missing {', '.join(missing)} (run `make generate`?)")
    return selected


def _add(bundle: zipfile.ZipFile, name: str, data: bytes, executable: bool = False):
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
    bundle.writestr(info, data)


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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(temporary, "w") as bundle:
        _add(bundle, "setup.sh", SETUP_SH.replace("@VENV@", venv).encode(), executable=True)
        if any(c in grader_args for c in "\"'`$\\\n;&|<>()"):
            raise SystemExit("error: --grader-args takes plain options only (no quotes or shell syntax)")
        script = (RUN_AUTOGRADER.replace("@VENV@", venv).replace("@ASSIGNMENTS@", ",".join(assignments))
                  .replace("@GRADER_ARGS@", grader_args))
        _add(bundle, "run_autograder", script.encode(), executable=True)
        _add(bundle, "segkit-gradescope.json", (json.dumps(manifest, indent=1) + "\n").encode())
        for relative in source_files(assignments):
            _add(bundle, relative.as_posix(), (REPO_ROOT / relative).read_bytes())
    os.replace(temporary, out)
    return manifest


# -- staging a submission --------------------------------------------------------------------------
@dataclass
class Candidate:
    label: str            # path shown to the student, relative to the submission folder
    parts: tuple          # path components (for matching folder names)
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
        if info.is_dir() or not parts or not parts[-1].endswith(".ipynb") or parts[-1].startswith(".") \
                or any(p in SKIPPED_DIRS or p == ".." for p in parts):
            continue
        members.append(Candidate(f"{relative.as_posix()}:{'/'.join(parts)}", parts, info.file_size,
                                 lambda info=info: bundle.read(info)))
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
        ranked = sorted((c for c in usable if _match(c, assignment)),
                        key=lambda c: (-_match(c, assignment), len(c.parts), c.label))
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
    from grader.notebooks import cells_by_grade_id

    try:
        ids = set(cells_by_grade_id(json.loads(candidate.read().decode("utf-8", "replace"))))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    scores = {a: len(ids & {u.grade_id for u in load_assignment(a).units}) for a in assignments}
    best = max(scores, key=scores.get)
    return best if scores[best] else None


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
    return (f"No notebook for '{assignment}' was found in your submission.{seen} Upload {assignment}.ipynb "
            f"(File > Download > .ipynb in Jupyter or Colab), or the zip made by `python -m starter.submit`.")


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
            message = (f"'{assignment}': the autograder could not grade {staged['source']} (an internal error, "
                       "not a low score). Please resubmit; if this persists, contact course staff.")
        else:
            result = json.loads(result_path.read_text(encoding="utf-8"))
            score += float(result.get("score", 0))
            tests += result.get("tests", [])
            messages.append(f"'{assignment}': graded {staged['source']}{staged.get('note', '')}. "
                            + result.get("output", ""))
            continue
        messages.append(message)
        tests.append({"name": f"{assignment}: notebook found and graded", "score": 0.0, "max_score": max_points,
                      "output": message, "visibility": "visible"})
    return {"score": round(score, 4), "output": "\n".join(messages), "tests": tests,
            "stdout_visibility": "hidden"}


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
            print(f"{assignment}: " + (f"grading {entry['source']}{entry['note']}" if entry["staged"] else "no notebook"))
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
        temporary = args.out.with_name(f".{args.out.name}.tmp")
        temporary.write_text(json.dumps(results, indent=1), encoding="utf-8")
        os.replace(temporary, args.out)
        print(f"score {results['score']:g}")
        return 0

    parser = argparse.ArgumentParser(prog="python -m grader.gradescope", description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", action="append", required=True,
                        help="assignment(s) this Gradescope assignment grades (repeat or comma-separate)")
    parser.add_argument("--out", type=Path, help="zip to write (default: dist/gradescope-<assignments>.zip)")
    parser.add_argument("--venv", default=VENV_DEFAULT, help="where setup.sh puts the environment on Gradescope")
    parser.add_argument("--grader-args", default="",
                        help="extra `python -m grader` options for every submission, e.g. '--memory-mb 3000'")
    args = parser.parse_args(argv)
    assignments = parse_assignments(args.assignment)
    out = args.out or REPO_ROOT / "dist" / f"gradescope-{'-'.join(assignments)}.zip"
    manifest = build_zip(assignments, out, venv=args.venv, grader_args=args.grader_args)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) for {', '.join(assignments)}")
    print(f"On Gradescope: set the assignment's total to {manifest['total_max_points']:g} autograded points "
          f"(+ {sum(manifest['manual_points'].values()):g} for written answers graded by hand), "
          "base image Ubuntu 22.04, and upload the zip as the autograder configuration.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
