"""The FCN units conv_output_size and crop_offset: their hidden checks, run in-process on trusted code.

The solution, both alternatives and the example bug of each unit go through the unit's hidden checks
(assignments/fcn/test_fcn.py) without a sandbox (all of it is the kit's own code), and the checks'
own reference offsets are compared with coordinates pushed through real torch layers.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from grader.assignments import cell_source, cells_by_grade_id, load_assignment, read_notebook
from grader.harness import Feedback, ReferenceNamespace
from segkit.proof import assignment_module
from segkit.proof.examples import buggy_sources

UNITS = ("fcn_conv_size", "fcn_crop")
PRELUDE = "import math\nimport numpy as np\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


def _checks():
    return assignment_module("fcn", "test_fcn")


def _unit_checks(grade_id):
    module = _checks()
    return [f for name, f in vars(module).items() if name.startswith("test_") and f.pytestmark[0].args[0] == grade_id]


def _namespace(grade_id, source):
    namespace = {"__name__": "fcn_units_test"}
    exec(PRELUDE, namespace)
    exec(source, namespace)
    return ReferenceNamespace(namespace)


def _solution_sources():
    by_id = cells_by_grade_id(read_notebook(load_assignment("fcn").solution_path))
    return {grade_id: cell_source(by_id[grade_id][0]) for grade_id in (*UNITS, "fcn_layers")}


def _score(grade_id, source):
    sub = _namespace(grade_id, source)
    earned = 0.0
    for check in _unit_checks(grade_id):
        try:
            check(sub, None)
        except Feedback:
            continue
        earned += check.pytestmark[0].kwargs["points"]
    return earned


@pytest.mark.parametrize("grade_id", UNITS)
def test_solution_and_alternatives_pass_every_check(grade_id):
    """Do the reference and both alternatives get every point of the unit's hidden checks?"""
    total = sum(c.pytestmark[0].kwargs["points"] for c in _unit_checks(grade_id))
    assert total == 2
    sources = [_solution_sources()[grade_id], *assignment_module("fcn", "alternatives").ALTERNATIVES[grade_id]]
    for k, source in enumerate(sources):
        assert _score(grade_id, source) == total, f"source #{k}"


@pytest.mark.parametrize("grade_id", UNITS)
def test_example_bug_loses_points(grade_id):
    """Does the unit's example bug lose points on its hidden checks?"""
    solution = read_notebook(load_assignment("fcn").solution_path)
    source = buggy_sources(solution, {grade_id: assignment_module("fcn", "examples").BUGS[grade_id]})[grade_id]
    assert _score(grade_id, source) < 2


def test_solution_derives_the_fcn_crops():
    """Does the reference crop_offset give 19, 5, 27, 9 and 31 on the notebook's own layer tables?"""
    sources = _solution_sources()
    namespace: dict = {}
    exec(sources["fcn_crop"] + "\n" + sources["fcn_layers"], namespace)
    crop, n = namespace["crop_offset"], namespace
    assert crop(n["INPUT_TO_FC7"] + [n["SCORE"], ("transposed", 64, 32, 0)]) == 19
    assert -crop(n["POOL4_TO_FC7"] + [n["SCORE"], n["UPSCORE2"]]) == 5
    assert crop(n["INPUT_TO_FC7"] + [n["SCORE"], n["UPSCORE2"], ("transposed", 32, 16, 0)]) == 27
    assert -crop(n["POOL3_TO_POOL4"] + n["POOL4_TO_FC7"] + [n["SCORE"], n["UPSCORE2"], n["UPSCORE2"]]) == 9
    assert crop(n["INPUT_TO_FC7"] + [n["SCORE"], n["UPSCORE2"], n["UPSCORE2"], ("transposed", 16, 8, 0)]) == 31
    assert [int(_checks().offset_of(layers)[1]) for layers in _checks().fcn_stacks()] == [19, -5, 27, -9, 31]


def _push_ramp(layers, length=600):
    """Input coordinates under each output pixel, computed by torch: a ramp through box filters (convolutions),
    average pools and bilinear transposed convolutions (kernel 2 * stride), which reproduce ramps exactly."""
    x = torch.arange(length, dtype=torch.float64).view(1, 1, -1)
    for kind, kernel, stride, padding in layers:
        if kind == "transposed":
            factor = (kernel + 1) // 2
            centre = factor - 0.5
            weight = 1 - (torch.arange(kernel, dtype=torch.float64) - centre).abs() / factor
            x = F.conv_transpose1d(x, weight.view(1, 1, -1), stride=stride, padding=padding)
        elif kind == "pool":
            x = F.avg_pool1d(x, kernel, stride, padding, count_include_pad=True)
        else:
            x = F.conv1d(
                x, torch.full((1, 1, kernel), 1.0 / kernel, dtype=torch.float64), stride=stride, padding=padding
            )
    return x.flatten()


def test_check_reference_matches_torch():
    """Does the checks' affine reference agree with coordinates pushed through real torch layers?"""
    rng = random.Random(0)
    tested = 0
    for _ in range(2000):  # rejection sampling: keep stacks with a whole-pixel offset
        if tested == 30:
            break
        layers = []
        for _ in range(rng.randint(1, 2)):  # overall stride up to 16
            kind, stride, kernel = rng.choice(["conv", "pool"]), rng.choice([2, 4]), rng.randint(2, 4)
            layers.append((kind, kernel, stride, rng.randint(0, kernel // 2)))
        total = 1
        for *_, stride, _ in layers:
            total *= stride
        layers.append(("transposed", 2 * total, total, rng.randint(0, total)))
        for _ in range(rng.randint(0, 3)):
            kernel = rng.choice([1, 3, 5])
            layers.insert(rng.randint(0, len(layers)), ("conv", kernel, 1, rng.randint(0, kernel)))
        scale, offset = _checks().offset_of(layers)
        if scale != 1 or offset.denominator != 1:
            continue
        coordinates = _push_ramp(layers)
        interior = range(100, 450)  # far from borders, where zero padding bends the ramp
        assert all(abs(float(coordinates[i + int(offset)]) - i) < 1e-9 for i in interior), layers
        tested += 1
    assert tested == 30
    assert [int(_checks().offset_of(stack)[1]) for stack in _checks().fcn_stacks()] == [19, -5, 27, -9, 31]
