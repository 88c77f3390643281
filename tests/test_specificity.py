"""Specificity: correct solutions written differently from the reference must get full marks.

Per assignment, two notebooks are graded with the CLI: in notebook k EVERY graded unit is replaced
by its k-th alternative from `grader/alternatives/<assignment>.py`. A lost point means a hidden
check depends on something the contract does not fix.
"""

import json
import os
import subprocess
import sys

import pytest

from grader.alternatives import alternative_notebook, alternatives, assignments_with_alternatives
from grader.notebooks import REPO_ROOT, load_assignment

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("assignment", assignments_with_alternatives())
def test_every_unit_has_two_alternatives(assignment):
    table = alternatives(assignment)
    for unit in load_assignment(assignment).auto_units:
        sources = table.get(unit.grade_id, [])
        assert len(sources) >= 2, f"{assignment}: {unit.grade_id} needs at least two alternatives"
        assert unit.source not in sources


@pytest.mark.parametrize("assignment", assignments_with_alternatives())
def test_alternatives_get_full_marks(assignment, tmp_path):
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for k in (0, 1):
        (submissions / f"alternative-{k}.ipynb").write_text(json.dumps(alternative_notebook(assignment, k)))
    out = tmp_path / "grades"
    completed = subprocess.run(
        [sys.executable, "-m", "grader", str(submissions), "--assignment", assignment, "--out", str(out), "-j", "2"],
        cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), capture_output=True, text=True, timeout=1500)
    failures = []
    for k in (0, 1):
        path = out / "results" / assignment / f"alternative-{k}.json"
        if not path.exists():
            failures.append(f"alternative-{k}: no result\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
            continue
        result = json.loads(path.read_text())
        for grade_id, unit in result["units"].items():
            for test in unit["tests"]:
                if not test["passed"]:
                    failures.append(f"alternative-{k}: {grade_id} / {test['test']}: {test['message']} "
                                    f"[{test['detail']}] (cell: {result['cells'].get(grade_id)})")
        if result["total"] != result["max"] and not failures:
            failures.append(f"alternative-{k}: {result['total']}/{result['max']}")
    assert not failures, "\n".join(failures)
