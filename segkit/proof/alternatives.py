"""Independent correct implementations of every graded unit, for specificity testing.

`assignments/<assignment>/alternatives.py` defines `ALTERNATIVES = {grade_id: [source_0, source_1, ...]}`:
each source is a full replacement of the unit's cell, written differently from the reference
(loops instead of vectorised code, NumPy instead of torch, other module structures where the
contract allows). A hidden check that fails one of them depends on something the contract does
not fix. `tests/test_specificity.py` grades, per assignment, the notebooks in which EVERY unit is
replaced by its k-th alternative and requires full marks.
"""

from __future__ import annotations

from grader.assignments import ASSIGNMENTS_DIR, assignment_names, load_assignment, read_notebook
from segkit.proof import assignment_module
from segkit.proof.examples import replace_sources


def assignments_with_alternatives() -> list[str]:
    return [name for name in assignment_names() if (ASSIGNMENTS_DIR / name / "alternatives.py").is_file()]


def alternatives(assignment: str) -> dict[str, list[str]]:
    return assignment_module(assignment, "alternatives").ALTERNATIVES


def alternative_notebook(assignment: str, k: int) -> dict:
    """The solution notebook with every graded unit replaced by its k-th alternative."""
    spec = load_assignment(assignment)
    table = alternatives(assignment)
    missing = [u.grade_id for u in spec.auto_units if len(table.get(u.grade_id, ())) <= k]
    if missing:
        raise KeyError(f"{assignment}: no alternative #{k} for {missing}")
    return replace_sources(
        read_notebook(spec.solution_path), {u.grade_id: table[u.grade_id][k] for u in spec.auto_units}
    )
