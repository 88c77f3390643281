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
from starter.checks import RESULTS
from starter.common import notebook_text, segkit_role

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
def test_sanity_checks_report_stubs_and_pass_on_solution(name, monkeypatch, capsys):
    """Does every sanity-check cell report 'not implemented' (without raising) on the stubs, and pass on the solution?"""
    monkeypatch.setenv("SEGKIT_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    spec = load_assignment(name)
    for path, expect_pass in ((spec.release_path, False), (spec.solution_path, True)):
        notebook = read_notebook(path)
        namespace: dict = {"__name__": f"test_{name}"}
        RESULTS.clear()
        checks = 0
        for cell in notebook["cells"]:
            grade_id = nbgrader_meta(cell).get("grade_id", "")
            is_setup = grade_id in {gid for gid, _ in spec.setup_cells}
            is_graded = grade_id in {u.grade_id for u in spec.auto_units}
            is_check = grade_id.endswith("_check")
            if not (is_setup or is_graded or is_check):
                continue
            capsys.readouterr()
            exec(compile(cell_source(cell), f"<{grade_id}>", "exec"), namespace)  # a check never raises
            if is_check:
                checks += 1
                unit = grade_id.removesuffix("_check")
                result = RESULTS[unit]
                printed = capsys.readouterr().out
                if expect_pass:
                    assert result.passed, f"{unit}: {result.message}"
                    assert f"✓ {unit}" in printed
                else:
                    # Its own stub, or a stub it calls (FCN-16s subclasses FCN-32s): named either way.
                    assert not result.passed and "not implemented yet" in result.message, f"{unit}: {result.message}"
                    assert "not implemented yet" in printed
        assert checks >= len(spec.auto_units), "every graded unit needs a sanity check cell after it"


def _unit_left_undone(name: str) -> str:
    """The graded unit left as its stub: one in the middle, so units before and after it run too."""
    units = [unit.grade_id for unit in load_assignment(name).auto_units]
    return units[len(units) // 2]


# A student's loss cut from the graph, handed to the kit's training code: the error must lead
# with the student's cell and a hint, not with the frames of starter/train.py.
NOT_DIFFERENTIABLE_CELL = """\
import torch as _torch
import torch.nn.functional as _F
from starter.train import train_one_epoch as _train_one_epoch


def my_loss(logits, target):
    return _torch.tensor(_F.cross_entropy(logits, target).item())


_model = _torch.nn.Conv2d(3, 2, 1)
_batch = (_torch.randn(1, 3, 4, 4), _torch.zeros(1, 4, 4, dtype=_torch.long))
_train_one_epoch(_model, [_batch], my_loss, _torch.optim.SGD(_model.parameters(), lr=0.1), "cpu", progress=False)
"""


def _checks_notebook(name: str, undone: str):
    """The solution's setup, graded and check cells (the unit `undone` as its student stub), an error
    through the kit's code, and the notebook's last cell: what "Run All" meets, without the training."""
    spec = load_assignment(name)
    solution = nbformat.read(spec.solution_path, as_version=4)
    stub = cells_by_grade_id(read_notebook(spec.release_path))[undone][0]
    keep = {gid for gid, _ in spec.setup_cells} | {unit.grade_id for unit in spec.auto_units}
    cells = []
    for cell in solution.cells[:-1]:
        grade_id = nbgrader_meta(cell).get("grade_id", "")
        if grade_id == undone:
            cells.append(nbformat.v4.new_code_cell(cell_source(stub), metadata=cell.metadata))
        elif grade_id in keep or segkit_role(cell) == "check":
            cells.append(cell)
    cells.append(nbformat.v4.new_code_cell(NOT_DIFFERENTIABLE_CELL, metadata={"tags": ["raises-exception"]}))
    cells.append(solution.cells[-1])
    solution.cells = cells
    return solution


def _outputs_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def _run_all_with_a_unit_undone(name: str, tmp_path: Path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("SEGKIT_PROFILE", "fast")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path / "data"))
    undone = _unit_left_undone(name)
    notebook = _checks_notebook(name, undone)
    started = time.time()
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    print(f"{name}: setup, graded and check cells in {time.time() - started:.0f} s")
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code[-1].get("execution_count"), "the run did not reach the notebook's last cell"
    errors = [
        o
        for cell in code
        if "raises-exception" not in cell.metadata.get("tags", [])
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, [f"{e['ename']}: {e['evalue']}" for e in errors]
    (undone_check,) = [c for c in code if nbgrader_meta(c).get("grade_id") == f"{undone}_check"]
    assert f"✗ {undone}: not implemented yet" in _outputs_text(undone_check)
    (summary,) = [c for c in code if nbgrader_meta(c).get("grade_id") == f"{name}_check_all"]
    line = next((ln for ln in _outputs_text(summary).splitlines() if ln.strip().startswith(undone + " ")), "")
    assert "not implemented yet" in line, _outputs_text(summary)
    others = [u.grade_id for u in load_assignment(name).auto_units if u.grade_id != undone]
    assert not others or any(f"{u} " in _outputs_text(summary) for u in others)  # a one-unit assignment has none
    _assert_loss_error_shown(code[-2])


def _assert_loss_error_shown(cell):
    """The NOT_DIFFERENTIABLE cell's error: the student's frame first, a hint, the kit's frames hidden."""
    (loss_error,) = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    shown = "\n".join(loss_error["traceback"])
    assert "In your code" in shown and "Cell In[" in shown, shown
    assert "Hint: the loss is not connected" in shown, shown
    assert "starter/train.py" not in shown.replace("raised inside", ""), "the kit's frames must be hidden"


# One notebook in `make test` (its setup, graded and check cells: about 20-30 s); all of them in `make proof`.
CHEAP_RUN_ALL = "unet"


@pytest.mark.proof
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_notebook_runs_to_the_end_with_a_unit_left_undone(name, tmp_path, monkeypatch):
    """Does every notebook reach its last cell with its middle unit left undone, check_all() naming it?"""
    _run_all_with_a_unit_undone(name, tmp_path, monkeypatch)


def _whole_notebook(name: str, undone: str):
    """The whole solution notebook, given cells included, with the unit `undone` as its student stub."""
    spec = load_assignment(name)
    notebook = nbformat.read(spec.solution_path, as_version=4)
    stub = cells_by_grade_id(read_notebook(spec.release_path))[undone][0]
    for index, cell in enumerate(notebook.cells):
        if nbgrader_meta(cell).get("grade_id") == undone:
            notebook.cells[index] = nbformat.v4.new_code_cell(cell_source(stub), metadata=cell.metadata)
    error_cell = nbformat.v4.new_code_cell(NOT_DIFFERENTIABLE_CELL, metadata={"tags": ["raises-exception"]})
    notebook.cells.insert(len(notebook.cells) - 1, error_cell)
    return notebook


def _run_whole_notebook_with_a_unit_undone(name: str, undone: str, stub: str, tmp_path: Path, monkeypatch):
    """Run All on the whole notebook, `undone` left as its stub (whose function or class is `stub`)."""
    from nbclient import NotebookClient

    monkeypatch.setenv("SEGKIT_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path / "data"))
    notebook = _whole_notebook(name, undone)
    started = time.time()
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises at the first cell that raises, as "Run All" stops there
    print(f"{name} with {undone} undone: the whole notebook in {time.time() - started:.0f} s")
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code[-1].get("execution_count"), "the run did not reach the notebook's last cell"
    _assert_loss_error_shown(code[-2])
    (summary,) = [c for c in code if nbgrader_meta(c).get("grade_id") == f"{name}_check_all"]
    line = next((ln for ln in _outputs_text(summary).splitlines() if ln.strip().startswith(undone + " ")), "")
    assert "not implemented yet" in line, _outputs_text(summary)
    given = [c for c in code if not nbgrader_meta(c).get("grade_id")]
    skipped = [ln for c in given for ln in _outputs_text(c).splitlines() if ln.startswith("skipped: ")]
    print("\n".join(skipped))
    assert skipped, "no given cell said it skipped what needs the stub"
    assert all(ln.endswith(f"needs `{stub}`, which is not written yet; Run All continues") for ln in skipped), skipped
    return skipped


# The training unit: its stub used to stop "Run All" at the first given cell that trains. Left undone, every
# training is skipped, so the whole notebook runs in seconds (about 30 s on 2 cores).
@pytest.mark.slow
def test_run_all_reaches_the_end_with_the_training_unit_undone(tmp_path, monkeypatch):
    """With unet_train_epoch left as its stub, does Run All reach the last cell, every given cell that trains
    saying it skipped, and check_all() naming the unit?"""
    skipped = _run_whole_notebook_with_a_unit_undone(
        CHEAP_RUN_ALL, "unet_train_epoch", "unet_train_epoch", tmp_path, monkeypatch
    )
    assert any(ln.startswith("skipped: your own training loop needs") for ln in skipped), skipped
    assert any(ln.startswith("skipped: U-Net needs") for ln in skipped), skipped


# Each notebook's model (or training) unit, whose stub the given cells meet most.
MODEL_UNITS = {
    "unet": ("unet_model", "UNet"),
    "fcn": ("fcn32s", "FCN32s"),
    "cam": ("cam_forward", "forward_with_features"),
    "patches": ("patch_deeplab", "DeepLabV3Plus"),
    "instance": ("inst_components", "split_instances"),  # the first given split of a window map used to stop there
}


@pytest.mark.proof
@pytest.mark.parametrize("name", sorted(MODEL_UNITS))
def test_run_all_reaches_the_end_with_the_model_unit_undone(name, tmp_path, monkeypatch):
    """With the notebook's model unit left as its stub, does Run All reach the last cell, the given cells that
    need it saying they skipped, and check_all() naming the unit?"""
    undone, stub = MODEL_UNITS[name]
    _run_whole_notebook_with_a_unit_undone(name, undone, stub, tmp_path, monkeypatch)


@pytest.mark.proof
def test_run_all_reaches_the_end_of_instance_with_the_energy_targets_undone(tmp_path, monkeypatch):
    """With energy_targets left as its stub, does Run All reach the last cell of the instance notebook, the deep
    watershed's training data saying it skipped (and nothing trained or cut), and check_all() naming the unit?"""
    skipped = _run_whole_notebook_with_a_unit_undone("instance", "dwt_energy", "energy_targets", tmp_path, monkeypatch)
    assert any(ln.startswith("skipped: the energy targets needs") for ln in skipped), skipped


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
    assert "Every unit passes its public checks" in outputs, "check_all() at the end must find every unit passing"
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
