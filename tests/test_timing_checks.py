"""Hidden checks that hold the notebook's word, run in-process on trusted code (no sandbox).

rgb_to_index (assignments/fcn/test_fcn.py): the notebook promises that a Python loop over pixels fails
the speed check and that vectorised code passes, on any machine. The check counts the Python lines the
function runs on a small mask and times it against a plain vectorised lookup of the same mask in the
same process. Here the probes run in this process, each `call` compiling the probe's source afresh as
the worker does (no memo: a timed call must run). The public check students run (assignments/fcn/
public_checks.py) judges speed by the same machine-independent count: the same loops fail it, the same
vectorised code passes it.

DeepLabV3Plus (assignments/patches/test_patches.py): the notebook says outputs are compared on sizes
that are not multiples of 16 and that upsampling must go to the sizes, not by a factor; a model that
upsamples by x4 loses the points the text says.
"""

from __future__ import annotations

import time

import pytest

from grader.assignments import cell_source, cells_by_grade_id, load_assignment, read_notebook
from grader.harness import Feedback, ReferenceNamespace, probe_source
from segkit.proof import assignment_module
from segkit.proof.examples import buggy_sources

PRELUDE = "import numpy as np\nimport torch\nIGNORE_INDEX = 255\n"

# A per-pixel loop as a student writes it from the notebook's text: a dictionary from colour to id, one
# lookup per pixel. It took 5.6 s on a 2000x2000 mask where the check's floor was 2 s and passed.
PIXEL_LOOP = """
def rgb_to_index(rgb, palette, ignore_index=IGNORE_INDEX):
    lookup = {tuple(int(v) for v in colour): i for i, colour in enumerate(palette)}
    index = np.full(np.shape(rgb)[:2], ignore_index, dtype=np.int64)
    for y, row in enumerate(np.asarray(rgb).tolist()):
        for x, colour in enumerate(row):
            index[y, x] = lookup.get(tuple(colour), ignore_index)
    return index
"""

# The same loop written as a generator over packed integers: cheap per pixel, still a Python loop.
PACKED_GENERATOR = """
def rgb_to_index(rgb, palette, ignore_index=IGNORE_INDEX):
    rgb = np.asarray(rgb).astype(np.int64)
    keys = ((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]).ravel().tolist()
    lookup = {(int(r) << 16) | (int(g) << 8) | int(b): i for i, (r, g, b) in enumerate(palette)}
    ids = np.fromiter((lookup.get(key, ignore_index) for key in keys), dtype=np.int64, count=len(keys))
    return ids.reshape(rgb.shape[:2])
"""

# A loop over rows with a vectorised body: 300 iterations for 300x300 pixels, well under the line limit.
ROW_LOOP = """
def rgb_to_index(rgb, palette, ignore_index=IGNORE_INDEX):
    rgb = np.asarray(rgb)
    index = np.full(rgb.shape[:2], ignore_index, dtype=np.int64)
    keys = np.array([(int(r) << 16) | (int(g) << 8) | int(b) for r, g, b in palette], dtype=np.int64)
    for y in range(rgb.shape[0]):
        row = rgb[y].astype(np.int64)
        packed = (row[:, 0] << 16) | (row[:, 1] << 8) | row[:, 2]
        hits = packed[:, None] == keys[None, :]
        index[y] = np.where(hits.any(axis=1), hits.argmax(axis=1), ignore_index)
    return index
"""


def _checks():
    return assignment_module("fcn", "test_fcn")


class InProcess:
    """`sub`/`ref` for a hidden check, run here: each call compiles the probe's source and runs it on the
    namespace, as the worker does (state kept in the namespace persists between calls, as there).

    slowdown > 1 makes each timed lookup (the baseline's and the student's) take that many times as
    long: a slower machine. remember=True reuses earlier results, as the grader's reference side does.
    """

    TIMED = ("probe_baseline_lookup", "probe_student_lookup")

    def __init__(self, source: str, slowdown: float = 1.0, remember: bool = False):
        self.namespace = {"__name__": "timing_checks_test"}
        exec(PRELUDE + source, self.namespace)
        self.slowdown = slowdown
        self.remembered = {} if remember else None

    def call(self, probe, *args, timeout=None, memo=False, **kwargs):
        key = (probe.__name__, repr(args), repr(kwargs))
        if self.remembered is not None and key in self.remembered:
            return self.remembered[key]
        probe_globals = {"__name__": "probe"}
        exec(compile(probe_source(probe), "<probe>", "exec"), probe_globals)
        started = time.perf_counter()
        value = probe_globals[probe.__name__](self.namespace, *args, **kwargs)
        if probe.__name__ in self.TIMED:
            time.sleep((self.slowdown - 1) * (time.perf_counter() - started))
        if self.remembered is not None:
            self.remembered[key] = value
        return value


def _solution_source() -> str:
    by_id = cells_by_grade_id(read_notebook(load_assignment("fcn").solution_path))
    return cell_source(by_id["fcn_rgb_to_index"][0])


@pytest.fixture(scope="module")
def ref():
    return InProcess(_solution_source(), remember=True)


def _speed_check_passes(source: str, ref, slowdown: float = 1.0) -> bool:
    try:
        _checks().test_rgb_to_index_speed(InProcess(source, slowdown), ref)
    except Feedback:
        return False
    return True


@pytest.mark.parametrize("loop", [PIXEL_LOOP, PACKED_GENERATOR], ids=["pixel-loop", "packed-generator"])
def test_a_python_loop_over_pixels_fails_the_speed_check(loop, ref):
    """Does a Python loop over pixels fail the speed check, as the notebook promises, on any machine?"""
    with pytest.raises(Feedback, match="Python loop over pixels"):
        _checks().test_rgb_to_index_speed(InProcess(loop), ref)


def test_vectorised_code_passes_on_a_machine_three_times_slower(ref):
    """Does the solution pass when every call, the baseline's too, takes three times as long?"""
    assert _speed_check_passes(_solution_source(), ref, slowdown=3.0)


def test_the_slowest_correct_alternative_passes(ref):
    """Does the per-colour comparison (the slowest vectorised alternative) pass the speed check?"""
    per_colour = assignment_module("fcn", "alternatives").RGB_PER_COLOUR
    assert _speed_check_passes(per_colour, ref)


def test_a_loop_over_rows_is_not_taken_for_a_loop_over_pixels():
    """Does a loop over rows with a vectorised body run under the Python-line limit on the small mask?"""
    checks = _checks()
    case = dict(seed=51, height=checks.LINES_CASE_SIZE, width=checks.LINES_CASE_SIZE, n_colours=8)
    lines = InProcess(ROW_LOOP).call(checks.probe_rgb_to_index_python_lines, case, checks.PYTHON_LINES_LIMIT)
    assert 300 <= lines <= checks.PYTHON_LINES_LIMIT


def test_the_line_counter_stops_at_its_limit_and_leaves_no_tracer():
    """Does counting a per-pixel loop stop just past the limit, and is the process left untraced?"""
    import sys

    checks = _checks()
    case = dict(seed=51, height=40, width=40, n_colours=3)
    before = sys.gettrace()
    assert InProcess(PIXEL_LOOP).call(checks.probe_rgb_to_index_python_lines, case, 50) == 51
    assert InProcess(PIXEL_LOOP).call(checks.probe_rgb_to_index_python_lines, case, 10**6) >= 40 * 40
    assert sys.gettrace() is before


def test_a_slow_result_is_judged_against_the_baseline_not_the_clock():
    """Is the time limit a multiple of the in-process baseline, with a small floor for timer noise?"""
    checks = _checks()
    assert checks.speed_limit_s(2.0) == pytest.approx(2.0 * checks.SPEED_FACTOR)
    assert checks.speed_limit_s(0.001) == checks.SPEED_FLOOR_S


def _public_check(rgb_to_index_source: str):
    """The public check of fcn_rgb_to_index (what a student runs) on an rgb_to_index, with the solution's index_to_rgb."""
    from starter.checks import check

    namespace = InProcess(_solution_source() + "\n" + rgb_to_index_source).namespace
    return check("fcn_rgb_to_index", namespace["rgb_to_index"], namespace["index_to_rgb"])


def _vectorised_sources() -> list:
    alternatives = assignment_module("fcn", "alternatives").ALTERNATIVES["fcn_rgb_to_index"]
    return [
        pytest.param(_solution_source(), id="solution"),
        *(pytest.param(source, id=f"alternative-{i}") for i, source in enumerate(alternatives)),
        pytest.param(ROW_LOOP, id="row-loop"),
    ]


@pytest.mark.parametrize("source", _vectorised_sources())
def test_vectorised_code_passes_the_public_speed_check(source):
    """Do the solution, every alternative and a loop over rows pass the public check of rgb_to_index?"""
    result = _public_check(source)
    assert result.passed, result.message


@pytest.mark.parametrize("loop", [PIXEL_LOOP, PACKED_GENERATOR], ids=["pixel-loop", "packed-generator"])
def test_a_python_loop_over_pixels_fails_the_public_speed_check(loop):
    """Does a Python loop over pixels fail the public check by its Python-line count (no clock), leaving no tracer?"""
    import sys

    before = sys.gettrace()
    result = _public_check(loop)
    assert not result.passed and "Python loop over pixels" in result.message, result.message
    assert sys.gettrace() is before


# DeepLabV3+ as a student writes it from "upsample x4": ASPP's output and the scores scaled by 4 instead of
# resized to layer1's and the input's sizes. It lost 0.5 of 3 points; the text says outputs on 40x72 are compared.
DEEPLAB_BY_FACTOR = [
    ("F.interpolate(self.aspp(high), size=low.shape[-2:]", "F.interpolate(self.aspp(high), scale_factor=4"),
    ("F.interpolate(self.classifier(fused), size=x.shape[-2:]", "F.interpolate(self.classifier(fused), scale_factor=4"),
]


def _deeplab_points(replacements) -> float:
    from grader.runner import reference_namespace

    spec = load_assignment("patches")
    ref = reference_namespace(spec)
    source = buggy_sources(read_notebook(spec.solution_path), {"patch_deeplab": replacements})["patch_deeplab"]
    namespace = dict(ref.namespace)  # the reference ASPP below the student's cell, as in grading (fair units)
    exec(compile(source, "<student patch_deeplab>", "exec"), namespace)
    sub, earned = ReferenceNamespace(namespace), 0.0
    checks = assignment_module("patches", "test_patches")
    for name, check in vars(checks).items():
        if name.startswith("test_") and callable(check) and check.pytestmark[0].args[0] == "patch_deeplab":
            try:
                check(sub, ref)
            except Exception:  # Feedback, or the student's error (in the worker it fails the check the same way)
                continue
            earned += check.pytestmark[0].kwargs["points"]
    return earned


@pytest.mark.slow
def test_deeplab_upsampling_by_a_factor_loses_the_output_points():
    """Does DeepLabV3+ upsampled x4 (not to the sizes) lose the output comparison, 2 of 3 points, as the text says?"""
    assert _deeplab_points(DEEPLAB_BY_FACTOR) == 1.0
    assert _deeplab_points(DEEPLAB_BY_FACTOR[1:]) == 2.5  # the scores alone x4: wrong size off multiples of 4
