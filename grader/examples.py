"""Build the bundled example submissions from the solutions (nbgrader's submitted/ layout).

    example-solution   the reference solution             -> full marks
    example-untouched  the student notebook as released   -> zero, no crash
    example-buggy      one typical bug in every unit      -> loses every unit
    example-hostile    every unit attacks the grader      -> zero, nothing else disturbed

They are generated on demand (never committed), so they always match the current solutions.
"""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

from grader.notebooks import REPO_ROOT, assignment_names, cells_by_grade_id, cell_source, read_json_notebook

EXAMPLES_DIR = REPO_ROOT / "build" / "examples" / "submitted"
EXAMPLE_STUDENTS = ("example-solution", "example-untouched", "example-buggy", "example-hostile")


def _replace_sources(notebook: dict, new_sources: dict[str, str]) -> dict:
    notebook = copy.deepcopy(notebook)
    by_id = cells_by_grade_id(notebook)
    for grade_id, source in new_sources.items():
        (cell,) = by_id[grade_id]
        cell["source"] = source.strip("\n") + "\n"
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
    spec = importlib.import_module(f"grader.example_specs.{name}")
    solution = read_json_notebook(REPO_ROOT / "solutions" / name / f"{name}.ipynb")
    release = read_json_notebook(REPO_ROOT / "notebooks" / name / f"{name}.ipynb")
    return {
        "example-solution": solution,
        "example-untouched": release,
        "example-buggy": _replace_sources(release, buggy_sources(solution, spec.BUGS)),
        "example-hostile": _replace_sources(release, spec.HOSTILE),
    }


def build_examples(root: Path = EXAMPLES_DIR, assignments: list[str] | None = None) -> Path:
    for name in assignments or assignment_names():
        if not (Path(__file__).parent / "example_specs" / f"{name}.py").exists():
            print(f"warning: no grader/example_specs/{name}.py; no examples for {name}")
            continue
        for student, notebook in example_notebooks(name).items():
            path = root / student / name / f"{name}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
    return root
