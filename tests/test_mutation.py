"""segkit.proof.mutate: the mutation operators on toy sources, and a small end-to-end run."""

import ast

import pytest

from segkit.proof.mutate import END, equivalent_mutants, grade_mutant, mutants_of, sample, solution_regions

TOY = '''import torch


def f(x, n, ignore_index=255):
    """Inputs: x (tensor). Returns: something."""
    outside = x + 1
    ### BEGIN SOLUTION
    valid = (x != ignore_index) & (x >= 0) and n > 2
    y = torch.softmax(x.float(), dim=1)[:, 1:n]
    if not valid:
        y = y * 2 - 0.5
    z = torch.cat([y, y], 0) // 3 % 2
    return z.sum(axis=0)
    ### END SOLUTION


class M(torch.nn.Module):
    def __init__(self, k=3):
        super().__init__()
        ### BEGIN SOLUTION
        self.k = k + 1
        ### END SOLUTION
'''


def _changed_lines(original, mutated):
    a, b = original.splitlines(), mutated.splitlines()
    return [i + 1 for i, (x, y) in enumerate(zip(a, b)) if x != y] + list(range(len(a) + 1, len(b) + 1))


def test_every_operator_gives_valid_python_inside_the_region_only():
    mutants = mutants_of("toy", TOY)
    regions = solution_regions(TOY)
    operators = {m.operator for m in mutants}
    assert {
        "const",
        "compare",
        "arith",
        "boolop",
        "unary",
        "swap_args",
        "dim",
        "drop_kwarg",
        "slice",
        "drop_stmt",
        "ignore",
        "operand",
    } <= operators
    for mutant in mutants:
        ast.parse(mutant.source)  # valid Python
        assert mutant.source != TOY
        assert len(mutant.source.splitlines()) == len(TOY.splitlines()) or mutant.operator in ("drop_stmt",)
        assert len(solution_regions(mutant.source)) == len(regions)
        first = _changed_lines(TOY, mutant.source)[0]
        assert any(b < first < e for b, e in regions), (mutant.description, first)
        # everything after the solution region is unchanged (up to the shift of a dropped multi-line statement)
        assert mutant.source.split(END)[1:] == TOY.split(END)[1:] or mutant.source.endswith(TOY.split(END)[-1])
        # the code outside the regions is byte-for-byte the original
        assert (
            "    outside = x + 1\n" in mutant.source
            and '"""Inputs: x (tensor). Returns: something."""' in mutant.source
        )


def test_ids_are_deterministic_and_distinct():
    first, second = mutants_of("toy", TOY), mutants_of("toy", TOY)
    assert [m.mutant_id for m in first] == [m.mutant_id for m in second]
    assert len({m.mutant_id for m in first}) == len(first)
    assert len({m.source for m in first}) == len(first)
    assert all(m.mutant_id.startswith(m.operator + "-") for m in first)
    assert {m.mutant_id for m in mutants_of("other", TOY)}.isdisjoint(m.mutant_id for m in first)


def test_specific_mutations():
    sources = {m.description: m.source for m in mutants_of("toy", TOY)}
    assert any("x != ignore_index" not in s and "True" in s for d, s in sources.items() if "ignore_index" in d)
    assert any("dim=-1" in s for d, s in sources.items() if d.startswith("dim=1 ->"))
    assert any(
        "axis=" not in s.split("### END")[0].split("return")[-1]
        for d, s in sources.items()
        if d == "keyword axis= dropped"
    )
    assert "    pass\n    z = " in sources["statement dropped (If)"]
    assert any("self.k = k - 1" in s for s in sources.values())


def test_no_mutants_outside_regions():
    assert mutants_of("toy", "def f(x):\n    return x + 1\n") == []


def test_sample_is_deterministic_and_covers_operators():
    mutants = mutants_of("toy", TOY)
    chosen = sample(mutants, 10)
    assert len(chosen) == 10 and chosen == sample(mutants, 10)
    assert len({m.operator for m in chosen}) == 10  # one of each before any operator repeats
    assert set(m.mutant_id for m in sample(mutants, 5)) <= set(m.mutant_id for m in chosen)
    assert sample(mutants, None) == mutants


@pytest.mark.slow
@pytest.mark.parametrize("assignment, grade_id", [("patches", "patch_weights")])  # all units: make mutants
def test_cheap_units_catch_their_mutants(assignment, grade_id, tmp_path):
    from grader.assignments import load_assignment

    unit = next(u for u in load_assignment(assignment).auto_units if u.grade_id == grade_id)
    for mutant in sample(mutants_of(grade_id, unit.source), 2):  # make mutants samples 20 per unit
        outcome = grade_mutant(assignment, mutant, str(tmp_path / "cache"), slot=300)
        assert outcome["status"] == "caught" or (grade_id, mutant.mutant_id) in equivalent_mutants(), (mutant, outcome)
