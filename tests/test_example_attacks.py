"""The attack cells of the bundled hostile examples (`HOSTILE` in assignments/*/examples.py), drawn from the
corpus of attack kinds in segkit/proof/hostile.py. Only compiled here, never run: grading them is the job of
tests/test_grading.py."""

from __future__ import annotations

import ast
import re

import pytest

from grader.assignments import assignment_names, cell_source, cells_by_grade_id, load_assignment, read_notebook
from segkit.proof import assignment_module
from segkit.proof.hostile import EXAMPLE_ATTACKS, attack

ASSIGNMENTS = [name for name in assignment_names() if (load_assignment(name).folder / "examples.py").is_file()]


def _defined(source: str) -> set[str]:
    """The functions and classes a cell defines at module level."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {node.name for node in ast.parse(source).body if isinstance(node, kinds)}


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_attack_cell_compiles_and_defines_its_units_names(name):
    """Is every attack cell of the assignment's hostile example source that compiles on its own, with no
    placeholder left, defining every public function and class its unit's solution cell defines?"""
    solution = cells_by_grade_id(read_notebook(load_assignment(name).solution_path))
    for grade_id, source in assignment_module(name, "examples").HOSTILE.items():
        compile(source, f"<{name} {grade_id}>", "exec")
        assert not re.search(r"__[A-Z]+__", source), f"{grade_id}: a placeholder is left in the attack cell"
        public = {n for n in _defined(cell_source(solution[grade_id][0])) if not n.startswith("_")}
        assert public <= _defined(source), f"{grade_id}: the attack cell does not define {public - _defined(source)}"


@pytest.mark.parametrize("kind", sorted(EXAMPLE_ATTACKS))
def test_every_attack_kind_makes_a_function_and_a_class(kind):
    """Does each kind of the corpus give a cell that compiles and defines both a function and a class asked for?"""
    source = attack(kind, "unit_function(x, y=1) -> x", "class UnitModel")
    compile(source, f"<{kind}>", "exec")
    assert _defined(source) >= {"unit_function", "UnitModel"}
    assert "def unit_function(x, y=1):" in source and "class UnitModel(nn.Module):" in source


def test_every_attack_kind_is_used_by_a_bundled_example():
    """Does some bundled hostile example use each kind of the corpus (no kind is left untried by make proof)?"""
    cells = [source for name in ASSIGNMENTS for source in assignment_module(name, "examples").HOSTILE.values()]

    def uses(cell: str, kind: str) -> bool:  # the kind's code, options aside, and its payload's first line
        chosen = EXAMPLE_ATTACKS[kind]
        pieces = [*re.split(r"__[A-Z]+__", chosen.prelude.strip()), chosen.payload.split("\n")[0]]
        return all(piece in cell for piece in pieces)

    unused = [kind for kind in EXAMPLE_ATTACKS if not any(uses(cell, kind) for cell in cells)]
    assert not unused, f"attack kinds no bundled example uses: {unused}"


def test_options_fill_their_placeholders_and_unknown_ones_are_refused():
    """Does an option change the cell (the flood's size), and are an unknown option, kind or a cell without
    definitions refused?"""
    assert "range(1024)" in attack("output_flood", "f()", megabytes=1024)
    assert "range(256)" in attack("output_flood", "f()")
    with pytest.raises(TypeError, match="no option"):
        attack("output_flood", "f()", gigabytes=1)
    with pytest.raises(KeyError):
        attack("no_such_kind", "f()")
    with pytest.raises(ValueError, match="name the unit"):
        attack("hang")
