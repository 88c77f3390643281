"""Build the student bundle: everything a student needs, nothing an instructor keeps.

    python -m segkit.build.release                          # dist/student-bundle.zip with every assignment
    python -m segkit.build.release --assignments fcn,cam    # only these notebooks and their data scripts
    python -m segkit.build.release --manifest               # rewrite starter/assignments.json
    python -m segkit.build.release --check-manifest         # exit 1 when starter/assignments.json is stale

The zip holds one folder, ``segkit/``: the student notebooks (``notebooks/``), the ``starter``
package, the data scripts the chosen notebooks use, ``environment.yml``, ``requirements.txt``,
``pyproject.toml`` and ``STUDENT_README.md``. Never ``solutions/``, ``grader/``,
``assignments/``, ``segkit/`` or ``tests/``.

``starter/assignments.json`` lists, per assignment, its setup cells, graded cells (with points),
written answers and datasets. It is derived from the solution notebooks and assignment.toml files here and shipped in the
bundle, so that ``python -m starter.submit`` can check a submission without the solutions. The
bundle carries a copy restricted to the released assignments. Entries are written in a fixed
order with fixed timestamps, so the same sources always give the same zip.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

from grader.assignments import RELEASE_DIR, REPO_ROOT, assignment_names, load_assignment
from starter.common import write_atomic, write_zip

MANIFEST_PATH = REPO_ROOT / "starter" / "assignments.json"
DEFAULT_OUT = REPO_ROOT / "dist" / "student-bundle.zip"
BUNDLE_ROOT = "segkit"  # the one folder the zip unpacks into (Colab default: MyDrive/segkit)
TOP_LEVEL_FILES = ("environment.yml", "requirements.txt", "pyproject.toml")
# data_scripts modules every bundle needs (shared downloader, synthetic data); the dataset modules
# come with the assignments whose notebooks mention them.
DATA_SCRIPTS_ALWAYS = ("__init__", "download", "prepare", "synthetic")
NEVER_SHIPPED = ("solutions/", "grader/", "assignments/", "segkit/", "tests/", "bench/", "build/", ".ci/")


# --- starter/assignments.json ------------------------------------------------------------


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def assignment_manifest(names: list[str] | None = None) -> dict:
    """Per assignment: notebook, title, setup/graded/written grade_ids with points, datasets."""
    assignments = {}
    for name in names or assignment_names():
        spec = load_assignment(name)
        assignments[name] = {
            "title": spec.config.title,
            "notebook": f"notebooks/{name}/{name}.ipynb",
            "setup": [grade_id for grade_id, _ in spec.setup_cells],
            "graded": [{"grade_id": u.grade_id, "points": _number(u.points)} for u in spec.auto_units],
            "written": [{"grade_id": u.grade_id, "points": _number(u.points)} for u in spec.manual_units],
            "data": list(spec.config.datasets),
        }
    return {
        "generated_by": "python -m segkit.build.release --manifest (from solutions/; do not edit)",
        "assignments": assignments,
    }


def manifest_text(names: list[str] | None = None) -> str:
    return json.dumps(assignment_manifest(names), indent=1, sort_keys=True) + "\n"


def manifest_is_stale() -> bool:
    return not MANIFEST_PATH.is_file() or MANIFEST_PATH.read_text(encoding="utf-8") != manifest_text()


# --- the bundle --------------------------------------------------------------------------

STUDENT_README = """\
# Semantic segmentation: student kit

This folder holds the assignments ({assignment_list}), the `starter` package they import,
the scripts that download their data, and the environment files.

| path | what |
|---|---|
| `notebooks/<assignment>/<assignment>.ipynb` | the assignments: fill in the cells marked `# YOUR CODE HERE` |
| `starter/` | helpers the notebooks import (datasets, training loop, plots, self-checks); nothing to edit |
| `data_scripts/` | download and prepare the datasets |
| `environment.yml`, `requirements.txt` | the conda / pip environment for a GPU server or your own machine |

## Starting on Google Colab

1. Unzip `student-bundle.zip` on your computer. It gives one folder, `segkit`.
2. Upload that folder to the top of your Google Drive ("My Drive" > New > Folder upload), so that
   it is `My Drive/segkit`. (Elsewhere? Run `%env SEGKIT_DRIVE_DIR=/content/drive/MyDrive/your/folder`
   in a new cell before the first one, or set `SEGKIT_DIR` at the top of the first cell.)
3. Open a notebook from Drive (double-click `segkit/notebooks/{first}/{first}.ipynb`, "Open with Google
   Colaboratory"), choose a GPU runtime (Runtime > Change runtime type > GPU) and run the first cell.
   It asks to connect your Drive, installs the `starter` package from your Drive folder (Colab's own
   PyTorch is kept as it is) and downloads the assignment's data into `My Drive/segkit/data`
   once; later sessions reuse it. It prints the device, the versions and where the data is.{colab_manual}

Your work is saved in the notebook in Drive (File > Save). Every training run saves its results and
its whole training state after each epoch in `runs/<assignment>/` inside the kit's Drive folder: after
a disconnect, run the setup cell and the training section again and it skips the experiments that
finished and resumes the unfinished one where it stopped; the results tables are rebuilt from there.
The setup cell copies the assignment's data from Drive to Colab's local disk once per session (reading
from Drive during training is slow).

## Starting on a GPU server (or your own machine)

```bash
unzip student-bundle.zip && cd segkit
conda env create -f environment.yml && conda activate segkit   # or, in a virtual environment:
# pip install -r requirements.txt && pip install -e .
python -m data_scripts.cmp_facade --root ~/segkit-data          # the data of each assignment, once
jupyter lab notebooks/
```

The notebooks read the data from `$SEGKIT_DATA` (default `~/segkit-data`); the first cell of each
notebook says which command prepares its data if it is missing. Data scripts of this kit:

{data_commands}

## Run profiles: fast, cpu, full

`SEGKIT_PROFILE` sets how big the runs are; it changes sizes, epochs and which experiments run, never
the code:

- `full` (the default): the course setting, meant for a GPU (Colab or a server).
- `cpu`: the real data at reduced image size, training-set size and epochs, about 20 minutes a
  notebook on a laptop's CPU. Experiments that need ImageNet weights run only if the weights are
  already downloaded.
- `fast` (same as `SEGKIT_FAST=1`): tiny synthetic data, one short epoch and randomly initialised
  networks, about a minute on a CPU: handy to check that everything runs before a long run (the
  numbers it prints mean nothing).

On a server: `SEGKIT_PROFILE=cpu jupyter lab`; in a notebook, run
`import os; os.environ["SEGKIT_PROFILE"] = "cpu"` before the first cell. Each notebook says, next to
its training cell, what a correct implementation reaches in each profile, and warns when your run is
far off.

## Self-checks

Right after each cell you write, a sanity-check cell runs a few public checks
(`check("fcn32s", FCN32s)`) and tells you what to fix. Passing them does not guarantee full marks:
the grader's hidden checks test more cases. Do not rename the functions or classes, change their
signatures, or delete or duplicate the graded cells: each carries an id the grader looks for.

## Submitting

Save your notebooks, then from the `segkit` folder (on Colab: run the last cell of the notebook,
which does the same):

```bash
python -m starter.submit --student YOUR_ID                    # every notebook you started
python -m starter.submit --student YOUR_ID --assignment fcn   # only this assignment
python -m starter.submit --check                              # only validate, write nothing
```

It checks that every graded cell is still there (once) and implemented, removes huge outputs
(large images), and writes `YOUR_ID.zip` into the `segkit` folder. If something is missing it
says exactly what and writes nothing. Upload `YOUR_ID.zip` where your course tells you to.
"""


def _data_commands(datasets: list[str]) -> str:
    commands = {
        "vaihingen": "`python -m data_scripts.vaihingen --root ~/segkit-data --archives FOLDER_WITH_THE_ZIPS` "
        "(needs a free registration; see the notebook)",
    }
    lines = [f"- {commands.get(name, f'`python -m data_scripts.{name} --root ~/segkit-data`')}" for name in datasets]
    return "\n".join(lines) if lines else "- (none: the notebooks bring their own data)"


def student_readme(names: list[str], manifest: dict) -> str:
    datasets = sorted({d for name in names for d in manifest["assignments"][name]["data"]})
    listed = ", ".join(f"`{name}`" for name in names)
    users = ", ".join(f"`{name}`" for name in names if "vaihingen" in manifest["assignments"][name]["data"])
    colab_manual = (
        f"\n   ISPRS Vaihingen ({users}) cannot be downloaded automatically: after registering, put its zips\n"
        "   into `My Drive/segkit/data/downloads/vaihingen` and run the first cell again."
        if "vaihingen" in datasets
        else ""
    )
    return STUDENT_README.format(
        assignment_list=listed, data_commands=_data_commands(datasets), colab_manual=colab_manual, first=names[0]
    )


def _pyproject_for_students() -> str:
    """pyproject.toml for the bundle: the starter package and data scripts only, without the grader's
    extra, console script and tool configuration (they name folders that are not shipped)."""
    kept, skipping = [], False
    for line in (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            skipping = line.strip().startswith(("[tool.pytest", "[tool.ruff", "[project.scripts", "[project.optional"))
        if line.startswith("include = "):
            line = 'include = ["starter*", "data_scripts*"]'
        if not skipping:
            kept.append(line)
    return "\n".join(kept).rstrip() + "\n"


def _package_files(folder: str) -> list[Path]:
    root = REPO_ROOT / folder
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix != ".pyc"
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def bundle_files(names: list[str]) -> dict[str, bytes]:
    """The bundle's files: {path inside segkit/: content}."""
    known = assignment_names()
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"error: unknown assignment(s) {', '.join(unknown)}; known: {', '.join(known)}")
    manifest = assignment_manifest(names)
    files: dict[str, bytes] = {}
    for name in names:
        folder = RELEASE_DIR / name
        if not (folder / f"{name}.ipynb").is_file():
            raise SystemExit(f"error: {folder / name}.ipynb is missing: run `make generate`")
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts):
            files[path.relative_to(REPO_ROOT).as_posix()] = path.read_bytes()
    for path in _package_files("starter"):
        files[path.relative_to(REPO_ROOT).as_posix()] = path.read_bytes()
    for name in names:  # public checks of the released assignments only, where starter.checks finds them
        files[f"starter/checks/{name}.py"] = (REPO_ROOT / "assignments" / name / "public_checks.py").read_bytes()
    # The public checks several assignments share, where their checks import them (starter.checks.shared).
    files["starter/checks/shared.py"] = (REPO_ROOT / "assignments" / "_shared" / "public_checks.py").read_bytes()
    files["starter/assignments.json"] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    modules = set(DATA_SCRIPTS_ALWAYS) | {d for name in names for d in manifest["assignments"][name]["data"]}
    for path in _package_files("data_scripts"):
        if path.stem in modules:  # the module and its data files (e.g. cam_samples.json)
            files[path.relative_to(REPO_ROOT).as_posix()] = path.read_bytes()
    for name in TOP_LEVEL_FILES:
        files[name] = (REPO_ROOT / name).read_bytes()
    files["pyproject.toml"] = _pyproject_for_students().encode()
    files["STUDENT_README.md"] = student_readme(names, manifest).encode()
    return files


def guard(files: dict[str, bytes]) -> list[str]:
    """Last line of defence before writing: what must never be in a student bundle."""
    problems = [f"{path}: instructor-only folder" for path in files if path.startswith(NEVER_SHIPPED)]
    problems += [
        f"{path}: contains a solution region"
        for path, content in files.items()
        if b"BEGIN SOLUTION" in content or b"END SOLUTION" in content
    ]
    return problems


def write_bundle(files: dict[str, bytes], out: Path) -> Path:
    return write_zip(out, {f"{BUNDLE_ROOT}/{path}": content for path, content in files.items()})


def build_release(out: Path = DEFAULT_OUT, assignments: list[str] | None = None, *, check_sources: bool = True) -> Path:
    """Check that notebooks/ and starter/assignments.json are up to date, then write the bundle."""
    names = assignments or assignment_names()
    if check_sources:
        if manifest_is_stale():
            raise SystemExit(
                "error: starter/assignments.json is out of date: run `python -m segkit.build.release --manifest`"
            )
        from segkit.build.generate import stale_notebooks  # imports nbgrader: a few seconds

        stale = [name for name in stale_notebooks() if name in names]
        if stale:
            raise SystemExit(f"error: notebooks/ is out of date for {', '.join(stale)}: run `make generate` first")
    files = bundle_files(names)
    problems = guard(files)
    if problems:
        raise SystemExit("error: refusing to write the bundle:\n  " + "\n  ".join(problems))
    return write_bundle(files, out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segkit.build.release", description=__doc__.splitlines()[0])
    parser.add_argument("--assignments", help="comma-separated assignments to release (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="zip to write (default: dist/student-bundle.zip)")
    parser.add_argument("--manifest", action="store_true", help="only rewrite starter/assignments.json")
    parser.add_argument("--check-manifest", action="store_true", help="exit 1 if starter/assignments.json is stale")
    options = parser.parse_args(argv)
    if options.manifest:
        write_atomic(MANIFEST_PATH, manifest_text())
        print(f"wrote {MANIFEST_PATH.relative_to(REPO_ROOT)}")
        return 0
    if options.check_manifest:
        if manifest_is_stale():
            print(
                "starter/assignments.json is out of date with solutions/: run `python -m segkit.build.release --manifest`",
                file=sys.stderr,
            )
            return 1
        return 0
    names = [n.strip() for n in options.assignments.split(",") if n.strip()] if options.assignments else None
    out = build_release(options.out.resolve(), names)
    with zipfile.ZipFile(out) as bundle:
        count = len(bundle.infolist())
    shown = out.relative_to(REPO_ROOT) if REPO_ROOT in out.parents else out
    print(
        f"wrote {shown}: {count} files, {out.stat().st_size / 1e6:.1f} MB, "
        f"assignments {', '.join(names or assignment_names())}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
