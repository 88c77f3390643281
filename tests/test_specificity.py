"""Specificity: correct solutions written differently from the reference must get full marks.

Per assignment, two notebooks are graded in the shared grading run (tests/conftest.py): in notebook
k EVERY graded unit is replaced by its k-th alternative from `grader/alternatives/<assignment>.py`. A lost point means a hidden
check depends on something the contract does not fix.
"""

import pytest

from grader.assignments import load_assignment
from segkit.proof.alternatives import alternatives, assignments_with_alternatives

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("assignment", assignments_with_alternatives())
def test_every_unit_has_two_alternatives(assignment):
    table = alternatives(assignment)
    for unit in load_assignment(assignment).auto_units:
        sources = table.get(unit.grade_id, [])
        assert len(sources) >= 2, f"{assignment}: {unit.grade_id} needs at least two alternatives"
        assert unit.source not in sources


@pytest.mark.proof
@pytest.mark.parametrize("assignment", assignments_with_alternatives())
def test_alternatives_get_full_marks(assignment, grading_run):
    """Do both all-alternatives notebooks (shared grading run, tests/conftest.py) get every point?"""
    failures = []
    for k in (0, 1):
        result = grading_run["results"].get((f"alternative-{k}", assignment))
        if result is None:
            failures.append(f"alternative-{k}: no result\n{grading_run['run'].stderr[-2000:]}")
            continue
        for grade_id, unit in result["units"].items():
            for test in unit["tests"]:
                if not test["passed"]:
                    failures.append(
                        f"alternative-{k}: {grade_id} / {test['test']}: {test['message']} "
                        f"[{test['detail']}] (cell: {result['cells'].get(grade_id)})"
                    )
        if result["total"] != result["max"] and not failures:
            failures.append(f"alternative-{k}: {result['total']}/{result['max']}")
    assert not failures, "\n".join(failures)
