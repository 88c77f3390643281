"""Fair units: a unit that uses other graded units is checked on the reference versions of those,
so one bug costs one unit (the end-to-end proof is make proof's single-bug test, whose BUGS include
a bug in a helper unit for every assignment that has one)."""

from __future__ import annotations

import contextlib
import textwrap

import pytest

from grader.assignments import Unit, load_assignment, unit_dependencies
from grader.harness import GradingPlugin, probe_source
from grader.run.config import WorkerConfig
from grader.sandbox import Limits, WorkerError


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


class _FakeSubmission:
    """Just what the plugin reads: dependencies, the dependency run in use, and no problems."""

    def __init__(self, dependencies):
        self._dependencies = dependencies
        self.dependency_run = None
        self.current_unit = None
        self.seen: list[str] = []

    def dependencies(self, grade_id):
        return self._dependencies.get(grade_id, ())

    def problem(self, grade_id):
        return ""

    @contextlib.contextmanager
    def checking(self, grade_id, dependency_run=None):
        self.current_unit, self.dependency_run = grade_id, dependency_run
        yield
        self.current_unit, self.dependency_run = None, None


class _FakeRun:
    """A dependency run that only records that it was entered and left."""

    def __init__(self, log, unit):
        self.log, self.unit = log, unit

    def __enter__(self):
        self.log.append(("enter", self.unit))
        return self

    def __exit__(self, *exc_info):
        self.log.append(("exit", self.unit))


CHECKS = """
import pytest

def _mode(sub):
    return "reference" if sub.dependency_run is not None else "own"

@pytest.mark.unit("user_unit", points=1, message="m")
def test_passes_only_over_reference_helpers(sub):
    sub.seen.append(_mode(sub))
    assert sub.dependency_run is not None, "own helpers are broken"

@pytest.mark.unit("user_unit", points=1, message="m")
def test_fails_on_both(sub):
    sub.seen.append(_mode(sub))
    raise AssertionError("SECRET " + _mode(sub))

@pytest.mark.unit("user_unit", points=1, message="m")
def test_passes_on_own(sub):
    sub.seen.append(_mode(sub))

@pytest.mark.unit("helper_unit", points=1, message="m")
def test_plain_unit(sub):
    sub.seen.append(_mode(sub))
    assert False
"""


def test_plugin_rechecks_failed_dependent_checks_over_reference_helpers_and_keeps_only_the_outcome(tmp_path):
    """Does a failed check of a dependent unit pass when the unit works over the reference helpers, keep the
    feedback of the student's own run when it does not, and never run a passing or independent check twice?"""
    (tmp_path / "test_fake.py").write_text(CHECKS)
    submission = _FakeSubmission({"user_unit": ("helper_unit",)})
    plugin = GradingPlugin(submission, reference=None)
    pytest.main([str(tmp_path / "test_fake.py"), "-q", "-p", "no:cacheprovider", "-c", "/dev/null"], plugins=[plugin])
    assert submission.seen == ["own", "own", "own", "own"]
    runs: list[tuple[str, str]] = []
    summary = plugin.recheck_on_reference_dependencies(lambda unit: _FakeRun(runs, unit))
    assert runs == [("enter", "user_unit"), ("exit", "user_unit")]
    assert summary == {"user_unit": (1, 2)}
    assert submission.seen[4:] == ["reference", "reference"]
    assert submission.dependency_run is None
    outcome = {r.test: r for r in plugin.results}
    assert outcome["test_passes_only_over_reference_helpers"].passed is True
    assert outcome["test_passes_only_over_reference_helpers"].points == 1.0
    failed = outcome["test_fails_on_both"]
    assert failed.passed is False and failed.points == 0.0
    assert "reference" not in failed.detail.replace("uses the reference helper_unit", "")
    assert "uses the reference helper_unit, so the problem is in user_unit itself" in failed.detail
    assert outcome["test_plain_unit"].passed is False


SOURCES_HELPER_BUG = {
    "helper_unit": "def helper(x):\n    return x + 1000  # the student's bug\n",
    "user_unit": "def user(x):\n    return helper(x) * 2\n",
}


def probe_user(ns, x):
    return ns["user"](x)


class _Spec:
    """An assignment of two units where user_unit uses helper_unit."""

    name = "fake"
    setup_cells: list = []
    auto_units = _units(
        helper_unit="def helper(x):\n    return x + 1\n", user_unit="def user(x):\n    return helper(x) * 2\n"
    )
    dependencies = {"user_unit": ("helper_unit",)}


def test_a_dependency_run_holds_the_reference_helpers_in_a_worker_of_its_own():
    """Does the unit run over the reference helper in a fresh worker, while the student's own worker never
    receives reference code?"""
    from grader.runner import DependencyRun, Submission

    options = WorkerConfig(slot=8, limits=Limits(cell_timeout=20, probe_timeout=20, memory_mb=2048))
    submission = Submission(_Spec(), None, worker=options, log=lambda line: None)
    submission.cells = list(SOURCES_HELPER_BUG.items())
    submission.boot()
    sent: list[str] = []
    own_worker = submission.worker
    original_exec = own_worker.exec_cell
    own_worker.exec_cell = lambda gid, source, timeout=None: sent.append(source) or original_exec(gid, source, timeout)
    assert submission.call(probe_user, 1) == 2002  # the student's own helper
    submission.close()
    with DependencyRun(submission, "user_unit") as run:
        assert run.usable and run.worker is not own_worker
        assert run.call(probe_source(probe_user), "probe_user", (1,), {}, None) == 4
    assert run.worker is None  # stopped with the unit
    assert not any("x + 1\n" in source for source in sent)


def test_a_unit_whose_own_cell_failed_gets_no_dependency_run():
    """Does a unit whose cell failed in the student's run start no worker for its dependency run, and refuse
    every call (it would fail the same way there)?"""
    from grader.runner import DependencyRun, Submission

    options = WorkerConfig(slot=8, limits=Limits(cell_timeout=20, probe_timeout=20, memory_mb=2048))
    submission = Submission(_Spec(), None, worker=options, log=lambda line: None)
    submission.cells = [("helper_unit", SOURCES_HELPER_BUG["helper_unit"]), ("user_unit", "raise ValueError('own')\n")]
    submission.boot()
    submission.close()
    assert submission.cell_status["user_unit"].startswith("ValueError")
    with DependencyRun(submission, "user_unit") as run:
        assert run.worker is None and not run.usable
        with pytest.raises(WorkerError, match="not usable"):
            run.call(probe_source(probe_user), "probe_user", (1,), {}, None)


def test_a_dependency_run_replaces_the_helpers_in_place_and_leaves_out_failed_cells():
    """Which cells does a dependency run execute: the reference helper where the student's stood, the unit
    itself, and none of the student's cells that failed (a deleted helper comes just before the unit)?"""
    from grader.runner import DependencyRun, Submission

    submission = Submission(_Spec(), None, worker=WorkerConfig(), log=lambda line: None)
    submission.cells = [("setup", "import math\n"), ("broken", "1/0\n"), *SOURCES_HELPER_BUG.items()]
    submission.cell_status = {"setup": "ok", "broken": "ZeroDivisionError", "helper_unit": "ok", "user_unit": "ok"}
    names = [gid for gid, _ in DependencyRun(submission, "user_unit").cells()]
    assert names == ["setup", "reference helper_unit", "user_unit"]
    submission.cells = [("setup", "import math\n"), ("user_unit", SOURCES_HELPER_BUG["user_unit"])]
    assert [gid for gid, _ in DependencyRun(submission, "user_unit").cells()] == [
        "setup",
        "reference helper_unit",
        "user_unit",
    ]


RAISING_CHECKS = """
import pytest
from grader.sandbox import ProbeFailed

@pytest.mark.unit("helper_unit", points=1, message="Call optimizer.zero_grad() before backward().")
def test_student_code_raised(sub):
    raise ProbeFailed("RuntimeError: mat1 and mat2 shapes cannot be multiplied (in cell helper_unit, line 3)")

@pytest.mark.unit("helper_unit", points=1, message="The loss does not fall.")
def test_wrong_value(sub):
    assert False
"""


def test_feedback_leads_with_the_error_the_students_code_raised(tmp_path):
    """When the student's code raised, does the check's feedback lead with that error and keep the check's own
    message after it, while a plain wrong value keeps the check's message first?"""
    (tmp_path / "test_raising.py").write_text(RAISING_CHECKS)
    plugin = GradingPlugin(_FakeSubmission({}), reference=None)
    pytest.main(
        [str(tmp_path / "test_raising.py"), "-q", "-p", "no:cacheprovider", "-c", "/dev/null"], plugins=[plugin]
    )
    outcome = {r.test: r for r in plugin.results}
    raised = outcome["test_student_code_raised"]
    assert raised.message == "Your code raised an error when this check called it (below)."
    assert raised.detail.startswith("your code raised RuntimeError: mat1 and mat2 shapes")
    assert raised.detail.endswith("Once it runs, this check needs: Call optimizer.zero_grad() before backward().")
    assert outcome["test_wrong_value"].message == "The loss does not fall."
