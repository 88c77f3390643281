"""Generate the student notebooks in notebooks/ from the solution notebooks in solutions/.

Uses nbgrader's own preprocessors in the order `nbgrader generate_assignment` runs them
(minus the gradebook database and header/footer steps), so `nbgrader generate_assignment`
and this module produce the same student notebook. The drift check (`--check`) fails when
a committed student notebook differs from what its solution generates.

    python -m grader.generate            # rewrite notebooks/<name>/<name>.ipynb
    python -m grader.generate --check    # exit 1 and name the stale notebooks
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import nbformat
from nbgrader.preprocessors import (
    CheckCellMetadata, ClearHiddenTests, ClearMarkScheme, ClearOutput, ClearSolutions,
    ComputeChecksums, LockCells,
)

from grader.notebooks import RELEASE_DIR, SOLUTIONS_DIR, assignment_names

# Same order as nbgrader's GenerateAssignment.preprocessors (SaveCells needs a database
# and is the only step left out; ClearHiddenTests must follow the first ComputeChecksums).
PIPELINE = (LockCells, ClearSolutions, ClearOutput, CheckCellMetadata, ComputeChecksums,
            ClearHiddenTests, ClearMarkScheme, ComputeChecksums, CheckCellMetadata)


def generate_student_notebook(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    notebook = copy.deepcopy(solution)
    resources = {"language": "python"}
    for preprocessor_class in PIPELINE:
        notebook, resources = preprocessor_class().preprocess(notebook, resources)
    return notebook


def render(notebook: nbformat.NotebookNode) -> str:
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def expected_release(name: str) -> str:
    solution = nbformat.read(SOLUTIONS_DIR / name / f"{name}.ipynb", as_version=4)
    return render(generate_student_notebook(solution))


def release_path(name: str) -> Path:
    return RELEASE_DIR / name / f"{name}.ipynb"


def stale_notebooks() -> list[str]:
    stale = []
    for name in assignment_names():
        path = release_path(name)
        if not path.exists() or path.read_text(encoding="utf-8") != expected_release(name):
            stale.append(name)
    return stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that notebooks/ is up to date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_notebooks()
        for name in stale:
            print(f"notebooks/{name}/{name}.ipynb is out of date with solutions/{name}/{name}.ipynb; "
                  "run `make generate` and commit both", file=sys.stderr)
        return 1 if stale else 0
    for name in assignment_names():
        path = release_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected_release(name), encoding="utf-8")
        print(f"wrote {path.relative_to(RELEASE_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
