"""Generate the student notebooks in notebooks/ from the solution notebooks in solutions/.

Uses nbgrader's own preprocessors in the order `nbgrader generate_assignment` runs them
(minus the gradebook database and header/footer steps), so `nbgrader generate_assignment`
and this module produce the same student notebook. The drift check (`--check`) fails when
a committed student notebook differs from what its solution generates.

    python -m segkit.build.generate            # rewrite notebooks/<name>/<name>.ipynb
    python -m segkit.build.generate --check    # exit 1 and name the stale notebooks
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    LockCells,
)

from grader.assignments import RELEASE_DIR, SOLUTIONS_DIR, assignment_names
from starter.common import notebook_text, write_atomic

# Same order as nbgrader's GenerateAssignment.preprocessors (SaveCells needs a database
# and is the only step left out; ClearHiddenTests must follow the first ComputeChecksums).
PIPELINE = (
    LockCells,
    ClearSolutions,
    ClearOutput,
    CheckCellMetadata,
    ComputeChecksums,
    ClearHiddenTests,
    ClearMarkScheme,
    ComputeChecksums,
    CheckCellMetadata,
)


def generate_student_notebook(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    notebook = copy.deepcopy(solution)
    resources = {"language": "python"}
    for preprocessor_class in PIPELINE:
        notebook, resources = preprocessor_class().preprocess(notebook, resources)
    return notebook


def solution_path(name: str) -> Path:
    return SOLUTIONS_DIR / name / f"{name}.ipynb"


def expected_solution(name: str) -> str:
    """The solution as nbformat writes it (what Jupyter saves): sources as line lists, so a one-line
    edit is a one-line diff."""
    return notebook_text(nbformat.read(solution_path(name), as_version=4))


def expected_release(name: str) -> str:
    solution = nbformat.read(solution_path(name), as_version=4)
    return notebook_text(generate_student_notebook(solution))


def release_path(name: str) -> Path:
    return RELEASE_DIR / name / f"{name}.ipynb"


def stale_notebooks() -> list[str]:
    """Assignments whose student notebook (or solution, not in nbformat's own layout) is out of date."""
    stale = []
    for name in assignment_names():
        path = release_path(name)
        if not path.exists() or path.read_text(encoding="utf-8") != expected_release(name):
            stale.append(name)
        elif solution_path(name).read_text(encoding="utf-8") != expected_solution(name):
            stale.append(name)
    return stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that notebooks/ is up to date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_notebooks()
        for name in stale:
            print(
                f"notebooks/{name}/{name}.ipynb is out of date with solutions/{name}/{name}.ipynb; "
                "run `make generate` and commit both",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for name in assignment_names():
        solution_text = expected_solution(name)
        if solution_path(name).read_text(encoding="utf-8") != solution_text:
            write_atomic(solution_path(name), solution_text)
            print(f"rewrote {solution_path(name).relative_to(RELEASE_DIR.parent)} in nbformat's layout")
        path = release_path(name)
        write_atomic(path, expected_release(name))
        print(f"wrote {path.relative_to(RELEASE_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
