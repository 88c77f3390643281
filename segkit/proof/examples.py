"""Build the bundled example submissions from the solutions (nbgrader's submitted/ layout).

    example-solution   the reference solution             -> full marks
    example-untouched  the student notebook as released   -> zero, no crash
    example-buggy      one typical bug in every unit      -> loses every unit
    example-hostile    every unit attacks the grader      -> zero, nothing else disturbed

They are generated on demand (never committed), so they always match the current solutions.
"""

from __future__ import annotations

import copy
from pathlib import Path

from grader.assignments import ASSIGNMENTS_DIR, REPO_ROOT, assignment_names, load_assignment
from segkit.proof import assignment_module
from starter.common import cell_source, cells_by_grade_id, notebook_text, read_notebook, write_atomic

EXAMPLES_DIR = REPO_ROOT / "build" / "examples" / "submitted"
EXAMPLE_STUDENTS = ("example-solution", "example-untouched", "example-buggy", "example-hostile")


def replace_sources(notebook: dict, new_sources: dict[str, str]) -> dict:
    notebook = copy.deepcopy(notebook)
    by_id = cells_by_grade_id(notebook)
    for grade_id, source in new_sources.items():
        (cell,) = by_id[grade_id]
        cell["source"] = source.strip("\n") + "\n"  # notebook_text splits it into lines
        cell["outputs"] = []
    return notebook


def buggy_sources(solution: dict, bugs: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    by_id = cells_by_grade_id(solution)
    sources = {}
    for grade_id, replacements in bugs.items():
        source = cell_source(by_id[grade_id][0])
        for old, new in replacements:
            if source.count(old) != 1:
                raise ValueError(f"bug for {grade_id}: {old!r} occurs {source.count(old)} times in the solution cell")
            source = source.replace(old, new)
        sources[grade_id] = source
    return sources


def example_notebooks(name: str) -> dict[str, dict]:
    examples = assignment_module(name, "examples")
    spec = load_assignment(name)
    solution, release = read_notebook(spec.solution_path), read_notebook(spec.release_path)
    return {
        "example-solution": solution,
        "example-untouched": release,
        "example-buggy": replace_sources(release, buggy_sources(solution, examples.BUGS)),
        "example-hostile": replace_sources(release, examples.HOSTILE),
    }


def build_examples(root: Path = EXAMPLES_DIR, assignments: list[str] | None = None) -> Path:
    for name in assignments or assignment_names():
        if not (ASSIGNMENTS_DIR / name / "examples.py").exists():
            print(f"warning: no assignments/{name}/examples.py; no examples for {name}")
            continue
        for student, notebook in example_notebooks(name).items():
            path = root / student / name / f"{name}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            text = notebook_text(notebook)
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                write_atomic(path, text)
    return root


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="segkit examples", description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", action="append", help="only this assignment (repeatable)")
    parser.add_argument("--out", type=Path, default=EXAMPLES_DIR, help=f"folder (default {EXAMPLES_DIR})")
    options = parser.parse_args(argv)
    root = build_examples(options.out, options.assignment)
    print(f"wrote the example submissions to {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
