"""The notebooks themselves: generation, student stubs, sanity checks, fast-mode execution."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

from grader.assignments import (
    REPO_ROOT,
    assignment_names,
    cell_source,
    cells_by_grade_id,
    load_assignment,
    nbgrader_meta,
    read_notebook,
)
from segkit.build.generate import expected_release, generate_student_notebook, stale_notebooks
from starter.checks import CheckFailed
from starter.common import notebook_text

ASSIGNMENTS = assignment_names()


def test_notebooks_match_what_solutions_generate():
    """Is every committed student notebook exactly what its solution generates (no drift)?"""
    assert stale_notebooks() == [], "notebooks/ is out of date: run `make generate` and commit"


def test_drift_is_detected():
    """Would an edit to a solution cell make the drift check fail?"""
    name = ASSIGNMENTS[0]
    solution = nbformat.read(REPO_ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)
    for cell in solution.cells:
        if cell.cell_type == "markdown":
            cell.source += "\nAn extra sentence."
            break
    assert notebook_text(generate_student_notebook(solution)) != expected_release(name)


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_student_notebook_hides_solutions(name):
    """Does the student notebook keep every graded cell, with its grade_id, as a NotImplementedError stub?"""
    spec = load_assignment(name)
    release = read_notebook(spec.release_path)
    text = spec.release_path.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    cells = cells_by_grade_id(release)
    for unit in spec.units:
        assert len(cells[unit.grade_id]) == 1, unit.grade_id
        source = cell_source(cells[unit.grade_id][0])
        if unit.kind == "auto":
            assert "raise NotImplementedError()" in source, unit.grade_id
            # No statement of the reference body survives in the stub.
            body_lines = {
                line.strip()
                for line in unit.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0].splitlines()
                if len(line.strip()) > 25
            }
            leaked = [line for line in body_lines if line in source]
            assert not leaked, f"{unit.grade_id} leaks solution lines: {leaked[:2]}"
        else:
            assert source.strip() == "YOUR ANSWER HERE"
        assert nbgrader_meta(cells[unit.grade_id][0])["points"] == unit.points


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_sanity_checks_fail_clearly_on_stubs_and_pass_on_solution(name, monkeypatch):
    """Does every sanity-check cell fail with a 'not implemented' hint on the student stubs, and pass on the solution?"""
    monkeypatch.setenv("SEGKIT_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    spec = load_assignment(name)
    for path, expect_pass in ((spec.release_path, False), (spec.solution_path, True)):
        notebook = read_notebook(path)
        namespace: dict = {"__name__": f"test_{name}"}
        checks = 0
        for cell in notebook["cells"]:
            grade_id = nbgrader_meta(cell).get("grade_id", "")
            is_setup = grade_id in {gid for gid, _ in spec.setup_cells}
            is_graded = grade_id in {u.grade_id for u in spec.auto_units}
            is_check = grade_id.endswith("_check")
            if not (is_setup or is_graded or is_check):
                continue
            source = cell_source(cell)
            if is_check:
                checks += 1
                if expect_pass:
                    exec(compile(source, f"<{grade_id}>", "exec"), namespace)
                else:
                    with pytest.raises(CheckFailed, match="not implemented yet"):
                        exec(compile(source, f"<{grade_id}>", "exec"), namespace)
            else:
                exec(compile(source, f"<{grade_id}>", "exec"), namespace)
        assert checks >= len(spec.auto_units), "every graded unit needs a sanity check cell after it"


def _execute(path: Path, tmp_path: Path):
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    return notebook


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_solution_notebook_runs_in_fast_mode(name, tmp_path, monkeypatch):
    """Does the solution notebook run top to bottom in fast mode, with every sanity check passing?"""
    monkeypatch.setenv("SEGKIT_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path / "data"))
    started = time.time()
    notebook = _execute(REPO_ROOT / "solutions" / name / f"{name}.ipynb", tmp_path)
    elapsed = time.time() - started
    outputs = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "public checks passed" in outputs
    assert "fast mode" in outputs.lower(), "fast mode must say so in the notebook's output"
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    print(f"{name}: executed in fast mode in {elapsed:.0f} s")
