"""Reading notebooks: the trusted solution notebooks and untrusted student submissions.

Cell roles come from the solution notebook only (metadata ``segkit.role``):
``setup`` (imports/config the worker runs before graded cells), ``check`` (visible sanity
checks), anything else is teaching material (training, plots) the grader never runs.
Graded units are code cells with nbgrader metadata ``solution: true`` and a ``grade_id``;
written answers are markdown cells with ``solution: true`` (graded by hand).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = REPO_ROOT / "solutions"
RELEASE_DIR = REPO_ROOT / "notebooks"
CHECKS_DIR = Path(__file__).resolve().parent / "checks"
MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024


class NotebookError(ValueError):
    """A submission that cannot be read as a notebook (message is student-facing)."""


@dataclass(frozen=True)
class Unit:
    grade_id: str
    points: float
    kind: str  # "auto" (code, hidden checks) or "manual" (written answer)
    source: str


@dataclass
class AssignmentSpec:
    name: str
    solution_path: Path
    release_path: Path
    checks_path: Path
    units: list[Unit] = field(default_factory=list)
    setup_cells: list[tuple[str, str]] = field(default_factory=list)  # (grade_id, released source)

    @property
    def auto_units(self) -> list[Unit]:
        return [u for u in self.units if u.kind == "auto"]

    @property
    def manual_units(self) -> list[Unit]:
        return [u for u in self.units if u.kind == "manual"]

    @property
    def max_points(self) -> float:
        return sum(u.points for u in self.auto_units)


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ""


def nbgrader_meta(cell: dict) -> dict:
    meta = cell.get("metadata")
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def segkit_role(cell: dict) -> str | None:
    meta = cell.get("metadata")
    meta = meta.get("segkit") if isinstance(meta, dict) else None
    return meta.get("role") if isinstance(meta, dict) else None


def read_json_notebook(path: Path) -> dict:
    """Parse a notebook file defensively; raise NotebookError with a message for the student."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise NotebookError(f"the notebook is {size / 1e6:.0f} MB; clear large outputs (Edit > Clear all outputs) "
                            f"and resubmit (limit {MAX_NOTEBOOK_BYTES // 1024 ** 2} MB)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")  # keep going: a stray byte must not cost every unit
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(f"the file is not valid notebook JSON ({exc.msg} at line {exc.lineno}); "
                            "save it from Jupyter/Colab again") from exc
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        version = notebook.get("nbformat") if isinstance(notebook, dict) else None
        if version is not None and version < 4:
            raise NotebookError(f"the notebook uses the old format nbformat {version}; open it in Jupyter and save it "
                                "again (it is converted to nbformat 4)")
        raise NotebookError("the file has no notebook cells")
    notebook["cells"] = [c for c in notebook["cells"] if isinstance(c, dict)]
    return notebook


def cells_by_grade_id(notebook: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for cell in notebook["cells"]:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if isinstance(grade_id, str):
            found.setdefault(grade_id, []).append(cell)
    return found


def assignment_names() -> list[str]:
    return sorted(p.parent.name for p in SOLUTIONS_DIR.glob("*/*.ipynb") if p.stem == p.parent.name)


def load_assignment(name: str) -> AssignmentSpec:
    """Read an assignment's units and setup cells from its (trusted) solution notebook."""
    solution_path = SOLUTIONS_DIR / name / f"{name}.ipynb"
    if not solution_path.exists():
        raise FileNotFoundError(f"no solution notebook for assignment {name!r} at {solution_path}")
    spec = AssignmentSpec(name, solution_path, RELEASE_DIR / name / f"{name}.ipynb",
                          CHECKS_DIR / f"test_{name}.py")
    notebook = read_json_notebook(solution_path)
    release_cells = {}
    if spec.release_path.exists():
        release_cells = {gid: cells[0] for gid, cells in cells_by_grade_id(read_json_notebook(spec.release_path)).items()}
    for cell in notebook["cells"]:
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if segkit_role(cell) == "setup":
            released = release_cells.get(grade_id, cell)
            spec.setup_cells.append((grade_id, cell_source(released)))
        elif meta.get("solution"):
            kind = "auto" if cell.get("cell_type") == "code" else "manual"
            spec.units.append(Unit(grade_id, float(meta.get("points", 0)), kind, cell_source(cell)))
    return spec
