"""Discovery: which assignments exist and what one of them holds.

An assignment is a folder ``assignments/<name>/`` (its ``assignment.toml``, hidden checks
``test_<name>.py``, example bugs and attacks ``examples.py``, correct alternatives
``alternatives.py``), plus its solution notebook ``solutions/<name>/<name>.ipynb`` and the
generated student notebook ``notebooks/<name>/<name>.ipynb``. Nothing here names one.

Cell roles come from the solution notebook only (metadata ``segkit.role``):
``setup`` (imports/config the worker runs before graded cells), ``check`` (visible sanity
checks), anything else is teaching material (training, plots) the grader never runs.
Graded units are code cells with nbgrader metadata ``solution: true`` and a ``grade_id``;
written answers are markdown cells with ``solution: true`` (graded by hand).
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import tomllib

# Re-exported (`as` marks each for the type checker): the engine's one import for notebook reading.
from starter.common import NotebookError as NotebookError
from starter.common import cell_source as cell_source
from starter.common import cells_by_grade_id as cells_by_grade_id
from starter.common import nbgrader_meta as nbgrader_meta
from starter.common import read_notebook as read_notebook
from starter.common import segkit_role as segkit_role

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS_DIR = REPO_ROOT / "assignments"
SOLUTIONS_DIR = REPO_ROOT / "solutions"
RELEASE_DIR = REPO_ROOT / "notebooks"
CONFIG_NAME = "assignment.toml"


class AssignmentConfigError(ValueError):
    """An assignment.toml that does not say what the kit needs (message names file and key)."""


@dataclass(frozen=True)
class EquivalentMutant:
    unit: str
    mutant: str
    reason: str


@dataclass(frozen=True)
class PublishedResult:
    """A number the original course material published for one experiment (shown beside ours)."""

    experiment: str
    value: float
    what: str


@dataclass(frozen=True)
class ResultsConfig:
    """``[results]``: how `segkit results` runs the solution notebook on real data.

    ``dataset`` is the prepared dataset the notebook is pointed at (``SEGKIT_DATASET``);
    ``not_run`` says why the notebook cannot run on such a machine (then nothing else is needed);
    ``needs_weights`` lists experiments that need ImageNet weights; ``published`` the seeds' numbers;
    ``needs_gpu`` says which part of the notebook runs only where a GPU is present (listed as not run on a
    machine without one).
    """

    dataset: str | None = None
    not_run: str | None = None
    needs_gpu: str | None = None
    needs_weights: tuple[str, ...] = ()
    published: tuple[PublishedResult, ...] = ()


# Gradescope's visibility levels (its autograder specification), from most to least shown.
VISIBILITY_LEVELS = ("visible", "after_due_date", "after_published", "hidden")


@dataclass(frozen=True)
class VisibilityConfig:
    """``[visibility]``: what students see of their results, and when (Gradescope's levels).

    ``hidden_checks``: every hidden check, unless its unit or itself is listed below;
    ``public_checks``: results that reveal no hidden check (the notebook was found, each graded cell
    ran or the error it raised: what the student sees running the notebook);
    ``total``: the autograded score (Gradescope's top-level ``visibility``);
    ``stdout``: the autograder's log on Gradescope (``stdout_visibility``; it names hidden checks);
    ``units`` / ``checks``: grade_id / check name (its test function) -> level, overriding ``hidden_checks``.
    """

    hidden_checks: str = "after_due_date"
    public_checks: str = "visible"
    total: str = "after_published"
    stdout: str = "hidden"
    units: tuple[tuple[str, str], ...] = ()
    checks: tuple[tuple[str, str], ...] = ()

    def for_check(self, grade_id: str, test: str) -> str:
        """The level of one hidden check: its own entry, else its unit's, else ``hidden_checks``."""
        return dict(self.checks).get(test) or dict(self.units).get(grade_id) or self.hidden_checks


@dataclass(frozen=True)
class AssignmentConfig:
    """What ``assignments/<name>/assignment.toml`` declares."""

    title: str
    datasets: tuple[str, ...] = ()
    expensive_units: frozenset[str] = frozenset()  # checks that build large networks
    hostile_target: str | None = None  # the unit the hostile corpus attacks
    corpus: bool = False  # the assignment make test / make proof grade the hostile corpus on
    equivalent: tuple[EquivalentMutant, ...] = ()
    results: ResultsConfig = ResultsConfig()
    visibility: VisibilityConfig = VisibilityConfig()

    @property
    def equivalent_reasons(self) -> dict[tuple[str, str], str]:
        return {(e.unit, e.mutant): e.reason for e in self.equivalent}


_KEYS = {"title", "datasets", "grading", "proof", "results", "visibility"}
_VISIBILITY_KEYS = {"hidden_checks", "public_checks", "total", "stdout", "units", "checks"}
_RESULTS_KEYS = {"dataset", "not_run", "needs_gpu", "needs_weights", "published"}
_GRADING_KEYS = {"expensive_units"}
_PROOF_KEYS = {"hostile_target", "corpus", "equivalent"}


def _unknown(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise AssignmentConfigError(
            f"{where}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})"
        )


def _read_results(path: str, table: dict[str, Any]) -> ResultsConfig:
    _unknown(f"{path} [results]", table, _RESULTS_KEYS)
    if table and not (isinstance(table.get("dataset"), str) or isinstance(table.get("not_run"), str)):
        raise AssignmentConfigError(f"{path} [results]: needs `dataset` (what to run on) or `not_run` (why not)")
    published = []
    for number, entry in enumerate(table.get("published", []), start=1):
        _unknown(f"{path} [[results.published]] #{number}", entry, {"experiment", "value", "what"})
        if not (isinstance(entry.get("experiment"), str) and isinstance(entry.get("value"), (int, float))):
            raise AssignmentConfigError(f"{path} [[results.published]] #{number}: needs experiment, value and what")
        published.append(PublishedResult(entry["experiment"], float(entry["value"]), str(entry.get("what", ""))))
    return ResultsConfig(
        dataset=table.get("dataset"),
        not_run=table.get("not_run"),
        needs_gpu=table.get("needs_gpu"),
        needs_weights=tuple(table.get("needs_weights", ())),
        published=tuple(published),
    )


def _level(where: str, value: object) -> str:
    if not isinstance(value, str) or value not in VISIBILITY_LEVELS:
        raise AssignmentConfigError(f"{where}: {value!r} is not a visibility level ({', '.join(VISIBILITY_LEVELS)})")
    return value


def _read_visibility(path: str, table: dict[str, Any]) -> VisibilityConfig:
    _unknown(f"{path} [visibility]", table, _VISIBILITY_KEYS)
    levels: dict[str, Any] = {
        key: _level(f"{path} [visibility] {key}", table[key])
        for key in ("hidden_checks", "public_checks", "total", "stdout")
        if key in table
    }
    named: dict[str, Any] = {}
    for key in ("units", "checks"):
        entries = table.get(key, {})
        if not isinstance(entries, dict):
            raise AssignmentConfigError(f"{path} [visibility.{key}]: a table of name = level")
        named[key] = tuple(
            (name, _level(f"{path} [visibility.{key}] {name}", value)) for name, value in sorted(entries.items())
        )
    return VisibilityConfig(**levels, **named)


def read_config(path: Path) -> AssignmentConfig:
    """Parse and validate one assignment.toml (strict: an unknown key is an error, not ignored)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise AssignmentConfigError(f"{path}: {exc}") from None
    _unknown(str(path), data, _KEYS)
    if not isinstance(data.get("title"), str) or not data["title"].strip():
        raise AssignmentConfigError(f"{path}: `title` (a non-empty string) is required")
    grading, proof = data.get("grading", {}), data.get("proof", {})
    _unknown(f"{path} [grading]", grading, _GRADING_KEYS)
    _unknown(f"{path} [proof]", proof, _PROOF_KEYS)
    equivalent = []
    for number, entry in enumerate(proof.get("equivalent", []), start=1):
        _unknown(f"{path} [[proof.equivalent]] #{number}", entry, {"unit", "mutant", "reason"})
        if not all(isinstance(entry.get(key), str) and entry[key] for key in ("unit", "mutant", "reason")):
            raise AssignmentConfigError(f"{path} [[proof.equivalent]] #{number}: needs unit, mutant and reason")
        equivalent.append(EquivalentMutant(entry["unit"], entry["mutant"], entry["reason"]))
    return AssignmentConfig(
        results=_read_results(str(path), data.get("results", {})),
        visibility=_read_visibility(str(path), data.get("visibility", {})),
        title=data["title"],
        datasets=tuple(data.get("datasets", ())),
        expensive_units=frozenset(grading.get("expensive_units", ())),
        hostile_target=proof.get("hostile_target"),
        corpus=bool(proof.get("corpus", False)),
        equivalent=tuple(equivalent),
    )


@dataclass(frozen=True)
class Unit:
    grade_id: str
    points: float
    kind: str  # "auto" (code, hidden checks) or "manual" (written answer)
    source: str


@dataclass
class AssignmentSpec:
    name: str
    folder: Path
    solution_path: Path
    release_path: Path
    config: AssignmentConfig
    units: list[Unit] = field(default_factory=list)
    setup_cells: list[tuple[str, str]] = field(default_factory=list)  # (grade_id, released source)
    reference_setup_cells: list[tuple[str, str]] = field(default_factory=list)  # (grade_id, solution source)
    solution_sha256: str = ""  # of the solution notebook's bytes: keys the cache of reference probe results
    # grade_id -> the graded units its reference code uses, transitively, in notebook order. A check
    # of such a unit runs the student's cell on top of the reference versions of these (fair units).
    dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def checks_path(self) -> Path:
        return self.folder / f"test_{self.name}.py"

    @property
    def examples_path(self) -> Path:
        return self.folder / "examples.py"

    @property
    def alternatives_path(self) -> Path:
        return self.folder / "alternatives.py"

    @property
    def auto_units(self) -> list[Unit]:
        return [u for u in self.units if u.kind == "auto"]

    @property
    def manual_units(self) -> list[Unit]:
        return [u for u in self.units if u.kind == "manual"]

    @property
    def max_points(self) -> float:
        return sum(u.points for u in self.auto_units)


def assignment_names(root: Path = ASSIGNMENTS_DIR) -> list[str]:
    """Every folder of ``assignments/`` that holds an assignment.toml, sorted."""
    return sorted(p.parent.name for p in Path(root).glob(f"*/{CONFIG_NAME}"))


def load_assignment(name: str, root: Path = REPO_ROOT) -> AssignmentSpec:
    """Read an assignment's declaration and its units and setup cells from its (trusted) solution."""
    folder = root / "assignments" / name
    if not (folder / CONFIG_NAME).is_file():
        known = ", ".join(assignment_names(root / "assignments")) or "none"
        raise FileNotFoundError(f"no assignment {name!r}: {folder / CONFIG_NAME} is missing (known: {known})")
    solution_path = root / "solutions" / name / f"{name}.ipynb"
    if not solution_path.exists():
        raise FileNotFoundError(f"no solution notebook for assignment {name!r} at {solution_path}")
    spec = AssignmentSpec(
        name, folder, solution_path, root / "notebooks" / name / f"{name}.ipynb", read_config(folder / CONFIG_NAME)
    )
    notebook = read_notebook(solution_path)
    spec.solution_sha256 = hashlib.sha256(solution_path.read_bytes()).hexdigest()
    release_cells = {}
    if spec.release_path.exists():
        release_cells = {gid: cells[0] for gid, cells in cells_by_grade_id(read_notebook(spec.release_path)).items()}
    for cell in notebook["cells"]:
        meta = nbgrader_meta(cell)
        grade_id = cast(str, meta.get("grade_id"))  # nbgrader names every setup and graded cell
        if segkit_role(cell) == "setup":
            released = release_cells.get(grade_id, cell)
            spec.setup_cells.append((grade_id, cell_source(released)))
            spec.reference_setup_cells.append((grade_id, cell_source(cell)))
        elif meta.get("solution"):
            kind = "auto" if cell.get("cell_type") == "code" else "manual"
            spec.units.append(Unit(grade_id, float(meta.get("points", 0)), kind, cell_source(cell)))
    spec.dependencies = unit_dependencies(spec.auto_units)
    return spec


def _top_level_names(source: str) -> set[str]:
    """Names a cell defines at module level (functions, classes, plain assignments)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def unit_dependencies(units: list[Unit]) -> dict[str, tuple[str, ...]]:
    """Which graded units each unit's reference code uses (by the names their cells define), closed
    transitively and listed in notebook order. Read from the solution, so nothing is declared by hand
    and a new helper call cannot be forgotten."""
    defined = {u.grade_id: _top_level_names(u.source) for u in units}
    direct = {}
    for unit in units:
        used = {
            n.id for n in ast.walk(ast.parse(unit.source)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
        } - defined[unit.grade_id]
        direct[unit.grade_id] = {gid for gid, names in defined.items() if gid != unit.grade_id and names & used}
    order = [u.grade_id for u in units]
    closed = {}
    for gid in order:
        seen, stack = set(), list(direct[gid])
        while stack:
            dep = stack.pop()
            if dep not in seen and dep != gid:
                seen.add(dep)
                stack.extend(direct[dep])
        closed[gid] = tuple(g for g in order if g in seen)
    return {gid: deps for gid, deps in closed.items() if deps}


def grading_files(spec: AssignmentSpec) -> list[Path]:
    """What grading this assignment reads besides the engine and starter: its folder and notebooks."""
    folder_files = sorted(p for p in spec.folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return [*folder_files, spec.solution_path, spec.release_path]
