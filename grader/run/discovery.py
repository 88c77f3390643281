"""Which submissions a run grades: the intake step over the given paths, and the shard of a run.

Imports neither torch nor the sandbox's workers (collect and the similarity report discover
submissions too, and pay only for this).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grader.assignments import assignment_names
from grader.intake import Intake, Job, MissingSubmission, take_in
from grader.results import SubmissionResult, UnitResult
from grader.run.store import spec_of


@dataclass(frozen=True)
class Shard:
    """Slice `index` of `count` (1 <= index <= count) of the students, by a hash of their ids."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`K/N` (1 <= K <= N); raises ValueError with a readable message otherwise."""
        index, _, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            raise ValueError(f"--shard takes K/N, e.g. 2/4 (the second of four slices), not {text!r}") from None
        if not 1 <= shard.index <= shard.count:
            raise ValueError(f"--shard {text}: K must be between 1 and N")
        return shard

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def takes(self, student: str) -> bool:
        return shard_of(student, self.count) == self.index


def shard_of(student: str, count: int) -> int:
    """The 1-based slice of `count` that grades `student`: sha256 of the id, not Python's hash()
    (randomised per process), so every machine and every re-run puts a student in the same slice."""
    return int.from_bytes(hashlib.sha256(student.encode("utf-8")).digest(), "big") % count + 1


def take_in_submissions(
    paths: list[Path],
    assignment: str | None,
    unpack_root: Path | None = None,
    keep_student: Callable[[str], bool] | None = None,
) -> Intake:
    """The intake step (grader.intake) over `paths`: the table of every file, and the jobs.
    `keep_student(id)` False: that student's files are not even opened (a shard skips the others')."""
    return take_in(paths, assignment_names(), assignment, unpack_root, keep_student)


def discover(
    paths: list[Path],
    assignment: str | None,
    unpack_root: Path | None = None,
    keep_student: Callable[[str], bool] | None = None,
) -> list[Job]:
    """Every submission under `paths` (the jobs of `take_in_submissions`)."""
    return take_in_submissions(paths, assignment, unpack_root, keep_student).jobs


def missing_result(missing: MissingSubmission) -> SubmissionResult:
    """The 0 row of a student whose files were all rejected: every unit 0, the reason as the
    notebook error, as for a notebook that cannot be read, so grades.csv, report.md and the
    student's feedback say why."""
    spec = spec_of(missing.assignment)
    return SubmissionResult(
        student_id=missing.student,
        assignment=missing.assignment,
        total=0,
        max_points=spec.max_points,
        units={u.grade_id: UnitResult(u.grade_id, points=0, max_points=u.points) for u in spec.auto_units},
        manual_points={u.grade_id: u.points for u in spec.manual_units},
        notebook_error=missing.reason,
    )
