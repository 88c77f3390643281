"""Fair units: a unit that uses other graded units is checked on the reference versions of those,
so one bug costs one unit (the end-to-end proof is make proof's single-bug test, whose BUGS include
a bug in a helper unit for every assignment that has one)."""

from __future__ import annotations

import textwrap

import pytest

from grader.assignments import Unit, load_assignment, unit_dependencies
from grader.harness import GradingPlugin
from grader.sandbox import Limits, ProbeFailed, Worker


def _units(**sources: str) -> list[Unit]:
    return [Unit(gid, 1.0, "auto", textwrap.dedent(source)) for gid, source in sources.items()]


def test_dependencies_are_read_from_the_reference_transitively_in_notebook_order():
    """Which graded units does each unit's reference code use, directly or through another unit?"""
    units = _units(
        base="def base(x):\n    return x\n",
        scale="SCALE = 2\n",
        middle="def middle(x):\n    return base(x) * SCALE\n",
        top="class Top:\n    def f(self, x):\n        return middle(x)\n",
        alone="def alone(x):\n    base = 3  # a local that is only stored is not a use\n    return x\n",
    )
    dependencies = unit_dependencies(units)
    assert dependencies["middle"] == ("base", "scale")
    assert dependencies["top"] == ("base", "scale", "middle")
    assert "base" not in dependencies and "scale" not in dependencies
    assert "alone" not in dependencies  # only stores of `base`, never a load


def test_the_real_assignments_dependencies():
    """Does the engine see that predict_full uses the patch helpers and FCN-16s builds on FCN-32s?"""
    assert load_assignment("patches").dependencies["patch_predict"] == ("patch_extract", "patch_stitch")
    fcn = load_assignment("fcn").dependencies
    assert "fcn32s" in fcn["fcn16s"] and "fcn_bilinear" in fcn["fcn16s"]
    assert fcn["fcn_resnet"] == ("fcn_bilinear",)


def probe_user(ns, x):
    return ns["user"](x)


def probe_helper(ns, x):
    return ns["helper"](x)


@pytest.fixture(scope="module")
def worker():
    w = Worker(slot=8, limits=Limits(cell_timeout=20, probe_timeout=20, memory_mb=2048))
    w.start()
    w.exec_cell("helper_unit", "def helper(x):\n    return x + 1000  # the student's bug\n")
    w.exec_cell("user_unit", "def user(x):\n    return helper(x) * 2\n")
    yield w
    w.stop()


def test_isolated_probe_runs_the_students_unit_on_the_reference_helper(worker):
    """With isolation, does the student's `user` call the reference `helper`, and without, their own?"""
    from grader.harness import probe_source

    isolate = {"unit": "user_unit", "reference": [("helper_unit", "def helper(x):\n    return x + 1\n")]}
    assert worker.probe(probe_source(probe_user), "probe_user", (1,), isolate=isolate) == 4
    assert worker.probe(probe_source(probe_user), "probe_user", (1,)) == 2002
    # The student's own namespace is untouched by the overlay.
    assert worker.probe(probe_source(probe_helper), "probe_helper", (1,)) == 1001


def test_a_reference_helper_that_fails_reports_like_student_code(worker):
    """Does a broken overlay come back as a probe failure, not a dead worker?"""
    from grader.harness import probe_source

    isolate = {"unit": "user_unit", "reference": [("helper_unit", "raise ValueError('no')\n")]}
    with pytest.raises(ProbeFailed, match="ValueError"):
        worker.probe(probe_source(probe_user), "probe_user", (1,), isolate=isolate)
    assert worker.probe(probe_source(probe_user), "probe_user", (1,)) == 2002


class _FakeSubmission:
    """Just what the plugin reads: dependencies, the isolation flag, and no problems."""

    def __init__(self, dependencies):
        self._dependencies = dependencies
        self.isolate = False
        self.current_unit = None
        self.seen: list[bool] = []

    def dependencies(self, grade_id):
        return self._dependencies.get(grade_id, ())

    def problem(self, grade_id):
        return ""


CHECKS = """
import pytest

@pytest.mark.unit("user_unit", points=1, message="m")
def test_passes_only_on_own_helpers(sub):
    sub.seen.append(sub.isolate)
    assert not sub.isolate

@pytest.mark.unit("user_unit", points=1, message="m")
def test_fails_on_both(sub):
    sub.seen.append(sub.isolate)
    assert False, "isolated" if sub.isolate else "own"

@pytest.mark.unit("helper_unit", points=1, message="m")
def test_plain_unit(sub):
    sub.seen.append(sub.isolate)
"""


def test_plugin_tries_reference_helpers_first_then_the_students_own(tmp_path):
    """Does a check pass when the student's units work together, and report the isolated failure otherwise?"""
    (tmp_path / "test_fake.py").write_text(CHECKS)
    submission = _FakeSubmission({"user_unit": ("helper_unit",)})
    plugin = GradingPlugin(submission, reference=None)
    pytest.main([str(tmp_path / "test_fake.py"), "-q", "-p", "no:cacheprovider", "-c", "/dev/null"], plugins=[plugin])
    outcome = {r["test"]: (r["passed"], r["detail"]) for r in plugin.results}
    assert outcome["test_passes_only_on_own_helpers"][0] is True
    assert outcome["test_fails_on_both"][0] is False
    assert submission.seen == [True, False, True, False, False]
    assert submission.isolate is False
