"""Is every assignment complete? One message per missing or inconsistent piece, naming it.

An assignment is complete when, for every graded code unit of its solution notebook, there is
a public check (a `check("<unit>", ...)` cell after the unit, and a registered check in
`assignments/<name>/public_checks.py`), hidden checks in `assignments/<name>/test_<name>.py` whose points
add up to the unit's points, a typical bug and an attack in `examples.py`, and two correct
alternatives in `alternatives.py`; and when its `assignment.toml` names only units and
datasets that exist. Used by `segkit check` and tests/test_assignments.py.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

from grader.assignments import (
    REPO_ROOT,
    AssignmentConfigError,
    assignment_names,
    cell_source,
    load_assignment,
    nbgrader_meta,
    read_notebook,
    segkit_role,
)

_CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([A-Za-z0-9_]+)["']""")
_DATA_SCRIPT_REF = re.compile(r"data_scripts\.([A-Za-z_][A-Za-z0-9_]*)")
SHARED_DATA_MODULES = {"__init__", "download", "prepare", "synthetic"}


def hidden_check_points(path: Path) -> dict[str, float]:
    """grade_id -> total points of the `@unit(...)` checks in a hidden-check file (read, not imported)."""
    totals: dict[str, float] = defaultdict(float)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test"):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "unit":
                grade_id = ast.literal_eval(decorator.args[0])
                points = next(ast.literal_eval(k.value) for k in decorator.keywords if k.arg == "points")
                totals[grade_id] += float(points)
    return dict(totals)


def _table_value(node: ast.expr, constants: dict[str, object]) -> object:
    """One value of a table that is not a literal: a list naming module constants (alternatives), or a
    call that writes the source (HOSTILE's `segkit.proof.hostile.attack(...)`), kept as its text."""
    if isinstance(node, ast.List):
        return [constants.get(getattr(element, "id", None)) for element in node.elts]
    if isinstance(node, ast.Call):
        return ast.unparse(node)
    return None


def _module_table(path: Path, name: str) -> dict | None:
    """The literal value of a module-level dict such as BUGS, read without importing the module (a value
    that is a call, such as HOSTILE's `attack(...)`, as its source text)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    constants: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            try:
                constants[target] = ast.literal_eval(node.value)
            except ValueError:
                if isinstance(node.value, ast.Dict):  # values naming module constants (alternatives)
                    keys = [ast.literal_eval(k) for k in node.value.keys]
                    values = [_table_value(v, constants) for v in node.value.values]
                    constants[target] = dict(zip(keys, values))
    value = constants.get(name)
    return value if isinstance(value, dict) else None


def referenced_datasets(notebook: dict) -> set[str]:
    """Dataset modules of data_scripts that a notebook uses or tells students to run."""
    found = {m for cell in notebook["cells"] for m in _DATA_SCRIPT_REF.findall(cell_source(cell))}
    return {m for m in found if m not in SHARED_DATA_MODULES and (REPO_ROOT / "data_scripts" / f"{m}.py").is_file()}


def registered_public_checks() -> set[str]:
    from starter.checks import CHECKS, _load_all

    _load_all()
    return set(CHECKS)


def problems(name: str, public_checks: set[str] | None = None) -> list[str]:
    """Everything missing from one assignment, each message naming the file and the unit."""
    folder = REPO_ROOT / "assignments" / name
    try:
        spec = load_assignment(name)
    except (FileNotFoundError, AssignmentConfigError) as exc:
        return [str(exc)]
    found: list[str] = []
    units = {u.grade_id: u for u in spec.auto_units}
    if not units:
        found.append(f"{spec.solution_path.relative_to(REPO_ROOT)}: no graded code cell (nbgrader solution + grade_id)")
    if not spec.setup_cells:
        found.append(f"{spec.solution_path.relative_to(REPO_ROOT)}: no setup cell (metadata segkit.role = 'setup')")
    if not spec.release_path.is_file():
        found.append(f"{spec.release_path.relative_to(REPO_ROOT)} is missing: run `make generate`")

    # Public checks: a check cell after the unit, and the check registered in assignments/<name>/public_checks.py.
    solution = read_notebook(spec.solution_path)
    checked_after: set[str] = set()
    seen: set[str] = set()
    for cell in solution["cells"]:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in units:
            seen.add(grade_id)
        if segkit_role(cell) == "check":
            checked_after |= {g for g in _CHECK_CALL.findall(cell_source(cell)) if g in seen}
    public_checks = registered_public_checks() if public_checks is None else public_checks
    for grade_id in units:
        if grade_id not in checked_after:
            found.append(
                f"unit {grade_id}: no public check cell after it in the solution notebook "
                f"(a code cell with segkit.role 'check' calling check(\"{grade_id}\", ...))"
            )
        if grade_id not in public_checks:
            found.append(
                f'unit {grade_id}: no public check registered (@register("{grade_id}") in assignments/{name}/public_checks.py)'
            )

    # Hidden checks, with points that agree with the notebook.
    if not spec.checks_path.is_file():
        found.append(f"assignments/{name}/{spec.checks_path.name} (the hidden checks) is missing")
    else:
        points = hidden_check_points(spec.checks_path)
        for grade_id, unit in units.items():
            if grade_id not in points:
                found.append(
                    f'unit {grade_id}: no hidden check (@unit("{grade_id}", ...) in '
                    f"assignments/{name}/{spec.checks_path.name})"
                )
            elif abs(points[grade_id] - unit.points) > 1e-9:
                found.append(
                    f"unit {grade_id}: the hidden checks give {points[grade_id]:g} points, the notebook {unit.points:g}"
                )
        for grade_id in sorted(set(points) - set(units)):
            found.append(
                f"assignments/{name}/{spec.checks_path.name}: checks for {grade_id!r}, which is not a "
                "graded unit of the notebook"
            )

    # Example bug and attack, two alternatives.
    for file, table, what, minimum in (
        ("examples.py", "BUGS", "an example bug", 1),
        ("examples.py", "HOSTILE", "an example attack", 1),
        ("alternatives.py", "ALTERNATIVES", "two correct alternatives", 2),
    ):
        path = folder / file
        if not path.is_file():
            found.append(f"assignments/{name}/{file} is missing")
            continue
        entries = _module_table(path, table) or {}
        for grade_id in units:
            value = entries.get(grade_id)
            count = 1 if isinstance(value, str) else len(value) if isinstance(value, list) else 0
            if count < minimum:
                found.append(f'unit {grade_id}: needs {what} ({table}["{grade_id}"] in assignments/{name}/{file})')
        for grade_id in sorted(set(entries) - set(units)):
            found.append(f"assignments/{name}/{file}: {table} names {grade_id!r}, which is not a graded unit")

    # The declaration names only what exists.
    config = spec.config
    if config.hostile_target and config.hostile_target not in units:
        found.append(
            f"assignments/{name}/assignment.toml: hostile_target {config.hostile_target!r} is not a graded unit"
        )
    for grade_id in sorted(config.expensive_units - set(units)):
        found.append(f"assignments/{name}/assignment.toml: expensive unit {grade_id!r} is not a graded unit")
    for entry in config.equivalent:
        if entry.unit not in units:
            found.append(f"assignments/{name}/assignment.toml: equivalent mutant of {entry.unit!r}, not a graded unit")
    referenced = referenced_datasets(solution)
    if set(config.datasets) != referenced:
        found.append(
            f"assignments/{name}/assignment.toml: datasets = {sorted(config.datasets)} but the notebook uses "
            f"{sorted(referenced)}"
        )
    return found


def all_problems() -> dict[str, list[str]]:
    public_checks = registered_public_checks()
    return {name: problems(name, public_checks) for name in assignment_names()}


def main(argv=None) -> int:
    report = all_problems()
    for name, messages in report.items():
        for message in messages:
            print(f"{name}: {message}", file=sys.stderr)
    incomplete = [name for name, messages in report.items() if messages]
    print(
        f"{len(report) - len(incomplete)} of {len(report)} assignments complete"
        + (f"; incomplete: {', '.join(incomplete)}" if incomplete else "")
    )
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
