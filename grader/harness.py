"""What hidden check files use: the `unit` marker, the `sub`/`ref` fixtures and comparisons.

A check never touches student objects. It sends a *probe* (a small function written in the
check file, `probe(ns, *args)`, where `ns` is the notebook's namespace) to the worker, gets
plain data back, runs the same probe on the reference namespace (the solution notebook,
executed in this trusted process) and compares the two here:

    def probe_kernel(ns, k):
        return ns["get_upsampling_weight"](2, 2, k)

    @unit("fcn_bilinear", points=1, message="The bilinear kernel is not exact.")
    def test_kernel(sub, ref):
        \"\"\"Is the kernel exact for k = 1..16?\"\"\"
        for k in range(1, 17):
            assert_close(sub.call(probe_kernel, k), ref.call(probe_kernel, k), what=f"kernel k={k}")

A probe is sent as source text, so it must be self-contained (imports inside); helpers it
needs are declared with `@uses(helper)` and sent along.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import inspect
import io
import math
import os
import tempfile
import textwrap
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import torch

from grader.results import CheckResult
from grader.sandbox import ProbeFailed, WorkerError
from grader.worker import to_plain
from starter.common import write_atomically

if TYPE_CHECKING:
    from pluggy import Result

    from grader.runner import DependencyRun, Submission

Probe = Callable[..., object]  # probe(ns, *args, **kwargs): sent to the worker as source text
ProbeT = TypeVar("ProbeT", bound=Probe)


class Feedback(AssertionError):
    """A check failure whose text is safe and useful to show the student."""


def unit(grade_id: str, points: float, message: str) -> pytest.MarkDecorator:
    """Mark a hidden check: which graded unit it belongs to, its points, its student-facing message."""
    return pytest.mark.unit(grade_id, points=points, message=message)


def uses(*helpers: Probe) -> Callable[[ProbeT], ProbeT]:
    """Declare module-level helper functions a probe calls (sent to the worker with it)."""

    def decorate(probe: ProbeT) -> ProbeT:
        setattr(probe, "probe_helpers", helpers)  # noqa: B010 (an attribute no function type declares)
        return probe

    return decorate


@functools.cache
def probe_source(probe: Probe) -> str:
    """The probe's source with its helpers'; cached per function (inspect.getsource re-tokenises the whole
    check file, which costed the grading process about a second per FCN submission)."""
    parts = [textwrap.dedent(inspect.getsource(h)) for h in getattr(probe, "probe_helpers", ())]
    parts.append(textwrap.dedent(inspect.getsource(probe)))
    # Decorators are trusted-side only; the worker needs plain function definitions.
    return "\n".join("\n".join(line for line in part.splitlines() if not line.startswith("@")) for part in parts)


def call_key(source: str, args: Iterable[object], kwargs: Mapping[str, object]) -> str:
    """Identifies a probe call by its source and the exact bytes of its arguments (repr() of a
    tensor elides its middle, so it cannot tell two large inputs apart)."""
    buffer = io.BytesIO()
    torch.save((list(args), dict(kwargs)), buffer)
    return hashlib.sha256(source.encode() + buffer.getvalue()).hexdigest()[:32]


class ReferenceNamespace:
    """The solution notebook's graded cells, run in this (trusted) process.

    Probe results are deterministic functions of (solution, probe, arguments), so they are
    cached in memory and, when `cache_dir` is given, on disk (written by this trusted process
    only, read back with weights_only=True): every submission after the first reuses them.
    """

    def __init__(self, namespace: dict[str, Any], *, cache_dir: Path | None = None, salt: str = "") -> None:
        self.namespace = namespace
        self.cache_dir = cache_dir
        self.salt = salt
        self._memory: dict[str, object] = {}

    def call(
        self, probe: Probe, *args: object, timeout: float | None = None, memo: bool = False, **kwargs: object
    ) -> Any:
        key = call_key(self.salt + probe_source(probe), args, kwargs)
        if key in self._memory:
            return self._memory[key]
        if self.cache_dir is None:
            value = self._memory[key] = to_plain(probe(self.namespace, *args, **kwargs), torch)
            return value
        path = self.cache_dir / f"{key}.pt"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Parallel runners on this machine wait for whichever computes a result first instead of
        # repeating it. The lock lives on local disk, never in the cache folder: flock over NFS is
        # unreliable, and runners on other machines need no lock (results are deterministic and
        # written by atomic rename under a unique temporary name, so the last whole copy wins).
        with open(_local_lock_path(self.cache_dir, key), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists():
                try:
                    value = self._memory[key] = torch.load(path, weights_only=True)["value"]
                    return value
                except Exception:
                    path.unlink(missing_ok=True)
            value = self._memory[key] = to_plain(probe(self.namespace, *args, **kwargs), torch)
            write_atomically(path, lambda temporary: torch.save({"value": value}, temporary))
        return value


def _local_lock_path(cache_dir: Path, key: str) -> Path:
    # Per user: a folder root made in /tmp would refuse an ordinary grader later.
    cache_id = hashlib.sha256(str(cache_dir.resolve()).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"segkit-locks-{os.getuid()}" / cache_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}.lock"


# --- comparisons ---------------------------------------------------------------------


def expect(condition: object, message: str) -> None:
    if not condition:
        raise Feedback(message)


def expect_tensor(
    value: object,
    *,
    what: str = "the result",
    shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    if type(value) is not torch.Tensor:
        raise Feedback(f"{what} should be a torch.Tensor, got {type(value).__name__}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise Feedback(f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if dtype is not None and value.dtype != dtype:
        raise Feedback(f"{what} has dtype {value.dtype}, expected {dtype}")
    return value


def assert_close(
    actual: Any,
    expected: Any,
    *,
    what: str = "the result",
    rtol: float = 1e-4,
    atol: float = 1e-6,
    check_dtype: bool = False,
    nan_equal: bool = True,
) -> None:
    """Compare plain data (tensors, numbers, nested lists/dicts) from the worker with the reference."""
    if type(expected) is torch.Tensor:
        actual = expect_tensor(actual, what=what, shape=expected.shape, dtype=expected.dtype if check_dtype else None)
        a, e = actual.double(), expected.double()
        a_nan, e_nan = torch.isnan(a), torch.isnan(e)
        if nan_equal and not torch.equal(a_nan, e_nan):
            raise Feedback(f"{what}: NaN in the wrong places ({int(a_nan.sum())} NaN, expected {int(e_nan.sum())})")
        mask = ~e_nan
        if mask.any():
            diff = (a[mask] - e[mask]).abs()
            tolerance = atol + rtol * e[mask].abs().max()
            if not bool(torch.isfinite(diff).all()) or float(diff.max()) > float(tolerance):
                raise Feedback(f"{what} differs from the expected values (largest difference {float(diff.max()):.3g})")
        return
    if isinstance(expected, float) and math.isnan(expected):
        expect(isinstance(actual, float) and math.isnan(actual), f"{what} should be NaN")
        return
    if type(expected) in (int, float) and type(expected) is not bool:
        expect(type(actual) in (int, float), f"{what} should be a number, got {type(actual).__name__}")
        expect(
            math.isfinite(actual) and abs(actual - expected) <= atol + rtol * abs(expected),
            f"{what} is {actual:.6g}, expected a different value",
        )
        return
    if type(expected) is list:
        expect(type(actual) is list and len(actual) == len(expected), f"{what} has the wrong length or type")
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, what=f"{what}[{i}]", rtol=rtol, atol=atol, check_dtype=check_dtype)
        return
    if type(expected) is dict:
        expect(type(actual) is dict, f"{what} has the wrong type")
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        expect(not missing and not extra, f"{what}: missing {missing[:5]}, unexpected {extra[:5]}")
        for key in expected:
            assert_close(
                actual[key], expected[key], what=f"{what}[{key!r}]", rtol=rtol, atol=atol, check_dtype=check_dtype
            )
        return
    expect(type(actual) is type(expected) and actual == expected, f"{what} is {actual!r}, expected {expected!r}")


# --- pytest plugin -------------------------------------------------------------------


class GradingPlugin:
    """Provides `sub` and `ref` to the hidden checks and records each check's outcome."""

    def __init__(self, submission: Submission, reference: ReferenceNamespace, units: set[str] | None = None) -> None:
        self.submission = submission
        self.reference = reference
        self.units = units  # None: every unit; else only checks of these grade_ids run
        self.results: list[CheckResult] = []  # one per check, in the order they ran
        # Failed checks of units that use other graded units: {unit: [(result index, check, arguments)]},
        # checked again over the reference helpers once the student's worker is gone.
        self.deferred: dict[str, list[tuple[int, Callable[..., object], dict[str, object]]]] = {}

    def recheck_on_reference_dependencies(
        self, dependency_run: Callable[[str], DependencyRun]
    ) -> dict[str, tuple[int, int]]:
        """Fair units: a failed check of a unit that uses other graded units runs again with the
        reference versions of those (`dependency_run(unit)`, a context manager: a worker of its own),
        and passes if the unit's own code works there, so one bug costs one unit. Only the outcome is
        kept: the feedback of a check that still fails is the trusted text of the student's own run,
        plus a trusted sentence. Returns {unit: (checks that now pass, checks tried)}."""
        summary: dict[str, tuple[int, int]] = {}
        for unit, failed in self.deferred.items():
            with dependency_run(unit) as run, self.submission.checking(unit, run):
                passed = sum(self._recheck(unit, *entry) for entry in failed)
            summary[unit] = (passed, len(failed))
        self.deferred = {}
        return summary

    def _recheck(self, unit: str, index: int, check: Callable[..., object], arguments: dict[str, object]) -> bool:
        result = self.results[index]
        try:
            check(**arguments)
        except BaseException as failure:  # nothing of this run may reach the student: not even its type
            if isinstance(failure, KeyboardInterrupt):
                raise
            helpers = ", ".join(self.submission.dependencies(unit))
            sentence = f"It also fails when {unit} uses the reference {helpers}, so the problem is in {unit} itself."
            result.detail = f"{result.detail} {sentence}" if result.detail else sentence
            return False
        result.points, result.passed, result.message, result.detail = result.max_points, True, "", ""
        return True

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        units = self.units
        if units is None:
            return
        selected = [i for i in items if (marker := i.get_closest_marker("unit")) and marker.args[0] in units]
        deselected = [i for i in items if i not in selected]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line("markers", "unit(grade_id, points, message): a hidden check of one graded unit")

    @pytest.fixture(scope="session")
    def sub(self) -> Submission:
        return self.submission

    @pytest.fixture(scope="session")
    def ref(self) -> ReferenceNamespace:
        return self.reference

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, None]:
        """Each check runs inside its unit's context (a hang is remembered per unit)."""
        marker = item.get_closest_marker("unit")
        with self.submission.checking(marker.args[0]) if marker else contextlib.nullcontext():
            yield

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        marker = item.get_closest_marker("unit")
        if marker is None:
            raise RuntimeError(f"hidden check {item.name} has no @unit marker")
        problem = self.submission.problem(marker.args[0])
        if problem:
            raise Feedback(problem)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Function, call: pytest.CallInfo[None]
    ) -> Generator[None, Result[pytest.TestReport], None]:
        outcome = yield
        report = outcome.get_result()
        marker = item.get_closest_marker("unit")
        if marker is None or (report.when != "call" and report.passed):
            return
        if report.when == "teardown":
            return
        passed = report.passed and report.when == "call"
        message = "" if passed else marker.kwargs["message"]
        detail = ""
        if not passed and call.excinfo is not None:
            detail = student_detail(call.excinfo.value)
            if raised_by_student_code(call.excinfo.value):
                # The student's own error first: the check's message says what it expected once the code runs.
                message, detail = RAISED_MESSAGE, f"{detail}\nOnce it runs, this check needs: {message}"
        if not passed and report.when == "call" and self.submission.dependencies(marker.args[0]):
            arguments = {name: item.funcargs[name] for name in item._fixtureinfo.argnames}
            self.deferred.setdefault(marker.args[0], []).append((len(self.results), item.obj, arguments))
        self.results.append(
            CheckResult(
                test=item.name,
                question=(inspect.getdoc(item.function) or item.name).strip(),
                grade_id=marker.args[0],
                points=float(marker.kwargs["points"]) if passed else 0.0,
                max_points=float(marker.kwargs["points"]),
                passed=passed,
                message=message,
                detail=detail,
                seconds=round(report.duration, 2),
            )
        )


NOT_IMPLEMENTED = "not implemented yet (your code still raises NotImplementedError)"
RAISED_MESSAGE = "Your code raised an error when this check called it (below)."


def raised_by_student_code(exc: BaseException) -> bool:
    """Did the check fail because the student's code raised (not a stub, not a wrong value)?"""
    return isinstance(exc, ProbeFailed) and "NotImplementedError" not in str(exc)[:MAX_DETAIL_CHARS]


MAX_DETAIL_CHARS = 2000  # one check's student-facing detail; worker text never sets its own size


def cap_text(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """`text` cut to `limit` characters by the trusted side, saying how much was dropped."""
    if len(text) <= limit:
        return text
    return text[:limit] + f" ... [{len(text) - limit} more characters not shown]"


def student_detail(exc: BaseException) -> str:
    """What a failed check may tell the student: never hidden test code or expected values."""
    if isinstance(exc, (Feedback, ProbeFailed)) and "NotImplementedError" in str(exc)[:MAX_DETAIL_CHARS]:
        return NOT_IMPLEMENTED
    if isinstance(exc, Feedback):
        return cap_text(str(exc))
    if isinstance(exc, ProbeFailed):
        return cap_text(f"your code raised {exc}")
    if isinstance(exc, WorkerError):
        return cap_text(f"your code stopped the grader's worker: {exc}")
    return ""  # a plain assertion: the check's own message says what is wrong
