"""The record of one graded submission: typed dataclasses and their JSON form.

`grader.runner.grade` returns a `SubmissionResult`; `grader.run.store` writes it to
<out>/results/<assignment>/<student>.json with `to_json()` and reads cached ones back with
`from_json()`. Tests and external tools read those files by key, so the keys and the meaning
of their values are a published format: each class's `to_dict`/`from_dict` is the one place
that maps fields to keys. Keys this version does not know (a file from another version) are
kept in `extra_keys` and written back, so a round trip loses nothing.

Values are stored as given, never coerced: a unit without checks scores `round(0, 4)`, an int,
and its JSON says `0`, not `0.0`, as it always has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar


class ResultFormatError(ValueError):
    """A results file (or pool message) that is not a submission result: a required key is
    missing or a value has the wrong shape."""


def _unknown_keys(data: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in known}


@dataclass
class CheckResult:
    """One hidden check's outcome, as recorded by `grader.harness.GradingPlugin`.

    test: the check's pytest name (its function name).
    question: what the check asks (its docstring), shown to the student.
    grade_id: the graded unit (notebook cell) the check belongs to.
    points: points earned: max_points when passed, else 0.0.
    max_points: what the check is worth (its @unit(points=...)).
    passed: whether the check passed.
    message: the check's student-facing message when it failed; "" when it passed.
    detail: what went wrong, safe to show the student (never hidden code or expected values); may be "".
    seconds: how long the check ran.
    extra_keys: keys of the stored record this version does not know, kept as they were.
    """

    test: str
    question: str
    grade_id: str
    points: float
    max_points: float
    passed: bool
    message: str = ""
    detail: str = ""
    seconds: float = 0.0
    extra_keys: dict[str, Any] = field(default_factory=dict, repr=False)

    KEYS: ClassVar[tuple[str, ...]] = (
        "test",
        "question",
        "grade_id",
        "points",
        "max_points",
        "passed",
        "message",
        "detail",
        "seconds",
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "question": self.question,
            "grade_id": self.grade_id,
            "points": self.points,
            "max_points": self.max_points,
            "passed": self.passed,
            "message": self.message,
            "detail": self.detail,
            "seconds": self.seconds,
            **self.extra_keys,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            test=data["test"],
            question=data.get("question", data["test"]),
            grade_id=data["grade_id"],
            points=data["points"],
            max_points=data["max_points"],
            passed=data["passed"],
            message=data.get("message", ""),
            detail=data.get("detail", ""),
            seconds=data.get("seconds", 0.0),
            extra_keys=_unknown_keys(data, cls.KEYS),
        )


@dataclass
class UnitResult:
    """One graded unit (an autograded notebook cell) of a submission.

    grade_id: the unit's nbgrader grade_id (in JSON it is the key of the unit, not a field of it).
    points: points earned: the sum of its checks' points, rounded to 4 decimals.
    max_points: what the unit is worth according to the notebook.
    checks: its hidden checks' outcomes, in the order they ran (JSON key "tests"); empty when the
        unit was not checked (see SubmissionResult.checked_units).
    extra_keys: keys of the stored record this version does not know, kept as they were.
    """

    grade_id: str
    points: float
    max_points: float
    checks: list[CheckResult] = field(default_factory=list)
    extra_keys: dict[str, Any] = field(default_factory=dict, repr=False)

    KEYS: ClassVar[tuple[str, ...]] = ("points", "max_points", "tests")

    @property
    def full_marks(self) -> bool:
        return self.points == self.max_points

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [check for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "max_points": self.max_points,
            "tests": [check.to_dict() for check in self.checks],
            **self.extra_keys,
        }

    @classmethod
    def from_dict(cls, grade_id: str, data: dict[str, Any]) -> UnitResult:
        return cls(
            grade_id=grade_id,
            points=data["points"],
            max_points=data["max_points"],
            checks=[CheckResult.from_dict(check) for check in data.get("tests", [])],
            extra_keys=_unknown_keys(data, cls.KEYS),
        )


@dataclass
class SubmissionResult:
    """The grading result of one submission (one student's notebook of one assignment).

    student_id: the student (the submission's folder or file name).
    assignment: the assignment's name (its folder under assignments/).
    total: autograded points earned: the sum of the units' points, rounded to 4 decimals.
    max_points: autograded points available (JSON key "max"); hand-graded units are not in it.
    notebook: the path of the graded notebook, as given to the grader.
    units: grade_id -> UnitResult for every autograded unit, in the assignment's order (the file
        sorts its keys, so it also stores that order as the list "unit_order").
    manual_points: grade_id -> points of each unit graded by hand (written answers; JSON key "manual").
    notebook_error: why the notebook could not be read at all; "" when it could.
    cell_status: grade_id -> "ok" or the error its cell raised when run in the worker (JSON key "cells").
    protections: names of the sandbox protections that were active around the student's code.
    unsafe_no_sandbox: graded with --unsafe-no-sandbox (student code ran without the sandbox).
    worker_restarts: how many times the sandboxed worker had to be restarted (crash, timeout, memory).
    peak_worker_memory_mb: the largest memory use of the worker, in MiB (0 when unknown).
    duration_s: seconds the grading of this submission took.
    cpu_s: CPU seconds it cost: the sandboxed worker's process tree plus the trusted grading process.
    checked_units: when only some units were checked (mutation testing, --units-map), their sorted
        grade_ids; None when every unit was checked (the key is then absent from the JSON).
    fingerprint: what `grader.cli` keys a cached result by (the submission and grader versions);
        None in a result not written by grader.cli (the key is then absent).
    extra_keys: keys of the stored record this version does not know, kept as they were.
    """

    student_id: str
    assignment: str
    total: float
    max_points: float
    notebook: str = ""
    units: dict[str, UnitResult] = field(default_factory=dict)
    manual_points: dict[str, float] = field(default_factory=dict)
    notebook_error: str = ""
    cell_status: dict[str, str] = field(default_factory=dict)
    protections: list[str] = field(default_factory=list)
    unsafe_no_sandbox: bool = False
    worker_restarts: int = 0
    peak_worker_memory_mb: float = 0.0
    duration_s: float = 0.0
    cpu_s: float = 0.0
    checked_units: list[str] | None = None
    fingerprint: str | None = None
    extra_keys: dict[str, Any] = field(default_factory=dict, repr=False)

    KEYS: ClassVar[tuple[str, ...]] = (
        "student_id",
        "assignment",
        "notebook",
        "units",
        "manual",
        "notebook_error",
        "cells",
        "protections",
        "worker_restarts",
        "checked_units",
        "total",
        "max",
        "unsafe_no_sandbox",
        "peak_worker_memory_mb",
        "duration_s",
        "cpu_s",
        "fingerprint",
        "unit_order",
    )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (plain dicts and lists); units keep their order."""
        data = {
            "student_id": self.student_id,
            "assignment": self.assignment,
            "notebook": self.notebook,
            "units": {grade_id: unit.to_dict() for grade_id, unit in self.units.items()},
            "unit_order": list(self.units),
            "manual": dict(self.manual_points),
            "notebook_error": self.notebook_error,
            "cells": dict(self.cell_status),
            "protections": list(self.protections),
            "worker_restarts": self.worker_restarts,
        }
        if self.checked_units is not None:
            data["checked_units"] = list(self.checked_units)
        data.update(
            {
                "total": self.total,
                "max": self.max_points,
                "unsafe_no_sandbox": self.unsafe_no_sandbox,
                "peak_worker_memory_mb": self.peak_worker_memory_mb,
                "duration_s": self.duration_s,
                "cpu_s": self.cpu_s,
            }
        )
        if self.fingerprint is not None:
            data["fingerprint"] = self.fingerprint
        data.update(self.extra_keys)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubmissionResult:
        """Read a result; keys missing from an older file take the defaults above, unknown keys
        go to extra_keys. Raises ResultFormatError when it is not a result at all."""
        try:
            return cls(
                student_id=data["student_id"],
                assignment=data["assignment"],
                total=data["total"],
                max_points=data["max"],
                notebook=data.get("notebook", ""),
                units=_units_in_order(data.get("units", {}), data.get("unit_order")),
                manual_points=dict(data.get("manual", {})),
                notebook_error=data.get("notebook_error", ""),
                cell_status=dict(data.get("cells", {})),
                protections=list(data.get("protections", [])),
                unsafe_no_sandbox=data.get("unsafe_no_sandbox", False),
                worker_restarts=data.get("worker_restarts", 0),
                peak_worker_memory_mb=data.get("peak_worker_memory_mb", 0.0),
                duration_s=data.get("duration_s", 0.0),
                cpu_s=data.get("cpu_s", 0.0),
                checked_units=data.get("checked_units"),
                fingerprint=data.get("fingerprint"),
                extra_keys=_unknown_keys(data, cls.KEYS),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ResultFormatError(f"not a submission result ({type(exc).__name__}: {exc})") from exc

    def to_json(self) -> str:
        """The text of <out>/results/<assignment>/<student>.json (sorted keys, as it always was)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SubmissionResult:
        """Parse a results file or a pool message. Raises ResultFormatError (a ValueError) for text
        that is not JSON or not a result."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ResultFormatError(f"not JSON: {exc}") from exc
        return cls.from_dict(data)


def _units_in_order(units: dict[str, Any], order: list[str] | None) -> dict[str, UnitResult]:
    """The units of a stored result in the order it lists (a file of an older version has none: its keys'
    order, which its reader may restore from the assignment)."""
    names = [name for name in order or [] if name in units] + [name for name in units if name not in (order or [])]
    return {name: UnitResult.from_dict(name, units[name]) for name in names}
