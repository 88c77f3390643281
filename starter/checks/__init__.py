"""Public self-checks students run right after each TODO: `check("fcn32s", FCN32s)`.

These are deliberately small (shapes, names, tiny known values taken from the assignment
text). They never contain the answer to a TODO, and passing them does not guarantee full
marks: the hidden checks the grader runs are more thorough.

`check()` prints what passed or what to fix and returns a `CheckResult`; it never raises, so
"Run All" reaches the end of a notebook with units left undone. `check_all("unet")` at the end of
a notebook summarises every graded unit (implemented? passed?).

Each assignment's checks are written in its folder, `assignments/<assignment>/public_checks.py`,
and imported on first use: from there in the kit's repository, and from
`starter/checks/<assignment>.py` in the student bundle, where `segkit release` copies them.
The checks several assignments share live in `assignments/_shared/public_checks.py` (beside their
hidden twins) and are imported as `starter.checks.shared`, which is where the bundle has them.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

from starter.checks.core import CHECKS, CheckFailed
from starter.checks.report import (
    CheckResult,
    CheckSummary,
    describe_error,
    format_student_traceback,
    hint_for,
    install_traceback_filter,
    is_stub_error,
    stub_raised_by,
)

__all__ = ["check", "check_all", "CheckFailed", "CheckResult", "CheckSummary", "CHECKS", "RESULTS"]

# In the kit's repository: <kit>/starter/checks/__init__.py -> <kit>/assignments/*/public_checks.py.
ASSIGNMENTS_DIR = Path(__file__).resolve().parents[2] / "assignments"
SHARED_FOLDER = "_shared"  # assignments/_shared/: the checks several assignments share
# The latest result of each unit's check in this kernel, for check_all().
RESULTS: dict[str, CheckResult] = {}
NOT_IMPLEMENTED = (
    "not implemented yet — fill in the cell marked YOUR CODE HERE above, run it, then run this check again."
)


def _load_all():
    # The student bundle's copies (and core, shared); in the kit's repository, its own files below.
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    shared = ASSIGNMENTS_DIR / SHARED_FOLDER / "public_checks.py"
    if shared.is_file():  # first: the assignments' checks import starter.checks.shared
        _load(f"{__name__}.shared", shared)
    for path in sorted(ASSIGNMENTS_DIR.glob("*/public_checks.py")):
        if path.parent.name != SHARED_FOLDER:
            _load(f"{__name__}.{path.parent.name}", path)


def _load(name: str, path: Path) -> None:
    """Import the checks at `path` as module `name`, unless a module of that name is loaded already."""
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _run(unit: str, objects: tuple) -> tuple[CheckResult, list[str]]:
    """The unit's result and the lines that explain it (an error's frames and hint)."""
    try:
        CHECKS[unit](*objects)
    except CheckFailed as exc:
        return CheckResult(unit, implemented=True, passed=False, message=str(exc)), []
    except Exception as exc:  # the student's code raised
        if not is_stub_error(exc):  # lead with that error, from the student's frames
            return _raised(unit, exc)
        other = stub_raised_by(exc, objects)
        if other is None:
            return CheckResult(unit, implemented=False, passed=False, message=NOT_IMPLEMENTED), []
        message = f"your code calls {other}, which is not implemented yet: implement that unit first."
        return CheckResult(unit, implemented=True, passed=False, message=message), []
    return CheckResult(unit, implemented=True, passed=True), []


def _raised(unit: str, exc: BaseException) -> tuple[CheckResult, list[str]]:
    """An error the student's code raised: its first line, the student's frames and a hint."""
    error = describe_error(exc)
    lines = format_student_traceback(exc)
    hint = hint_for(exc)
    if hint:
        lines.append(f"  Hint: {hint}")
    message = f"your code raised {error}"
    return CheckResult(unit, implemented=True, passed=False, message=message, error=error), lines


def check(unit: str, *objects) -> CheckResult:
    """Run the public checks of one graded unit on your objects; print what passed or what to fix.

    Returns a CheckResult (true when every public check passed); never raises for a failing
    unit, so the rest of the notebook still runs.
    """
    _load_all()
    if unit not in CHECKS:
        raise KeyError(f"no public checks for {unit!r}; known units: {', '.join(sorted(CHECKS))}")
    result, lines = _run(unit, objects)
    RESULTS[unit] = result
    if result.passed:
        print(f"✓ {unit}: public checks passed (the hidden checks used for grading test more cases).")
    else:
        print("\n".join([f"✗ {unit}: {result.message}", *lines]))
    return result


def _units(assignment: str) -> list[tuple[str, float]]:
    from starter.environment import load_assignments

    graded = load_assignments().get(assignment, {}).get("graded", [])
    return [(entry["grade_id"], entry["points"]) for entry in graded]


def check_all(assignment: str) -> CheckSummary:
    """Print one line per graded unit of `assignment`: passed, failed (what to fix), not implemented, not checked.

    Reads the results of the `check(...)` cells run in this kernel. Returns a CheckSummary
    ({unit: CheckResult, or None when its check has not run}, and the units still undone).
    """
    units = _units(assignment)
    if not units:
        raise KeyError(f"unknown assignment {assignment!r}")
    summary = {unit: RESULTS.get(unit) for unit, _ in units}
    width = max(len(unit) for unit in summary)
    passed = [unit for unit, result in summary.items() if result is not None and result.passed]
    print(f"Public checks of {assignment}: {len(passed)} of {len(units)} units pass.")
    for unit, points in units:
        result = summary[unit]
        if result is None:
            status = "? not checked yet: run its cell and the check cell below it"
        elif result.passed:
            status = "✓ passed"
        elif not result.implemented:
            status = "✗ not implemented yet"
        else:
            status = f"✗ {result.message.splitlines()[0]}"
        print(f"  {unit:<{width}}  {f'{points:g} pt':<6}  {status}")
    if len(passed) == len(units):
        print("Every unit passes its public checks (the hidden checks used for grading test more cases).")
    return CheckSummary(assignment, summary)


# A notebook shows errors that pass through the kit from the student's own frames, with hints.
install_traceback_filter()
