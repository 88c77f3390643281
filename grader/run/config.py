"""The typed seams of a grading run: one worker's configuration and the settings of a run.

Both are frozen dataclasses of plain values, so they cross the spawn boundary (pickled) as they are.
Which worker options exist is fixed here, in one place: the grading run, the runner's restarts and
dependency runs, and mutation testing all build a `WorkerConfig`; only `grader.runner` unpacks it
into `grader.sandbox.Worker`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from grader.sandbox.limits import Limits


@dataclass(frozen=True)
class WorkerConfig:
    """One sandboxed worker: its limits, the folders it must never see, the sandbox or not, and its slot
    (as root, the slot picks the worker's uid: unique among concurrent workers)."""

    limits: Limits = field(default_factory=Limits)
    forbidden: tuple[str, ...] = ()
    sandbox: bool = True
    slot: int = 0

    def worker_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `grader.sandbox.Worker` (unpacked in grader.runner only)."""
        return {"limits": self.limits, "forbidden": self.forbidden, "sandbox": self.sandbox, "slot": self.slot}


@dataclass(frozen=True)
class GradeSettings:
    """What every grading process of one run shares: the worker limits and forbidden folders, the
    sandbox switch, the reference cache and the units to check per student (--units-map)."""

    limits: Limits = field(default_factory=Limits)
    forbidden: tuple[str, ...] = ()
    sandbox: bool = True
    reference_cache: Path | None = None
    units_map: dict[str, list[str]] = field(default_factory=dict)

    def worker(self, slot: int) -> WorkerConfig:
        """The worker configuration of the grading process in `slot`."""
        return WorkerConfig(limits=self.limits, forbidden=self.forbidden, sandbox=self.sandbox, slot=slot)

    def units_of(self, student: str) -> set[str] | None:
        """The units to check for `student` (None: all of them)."""
        units = self.units_map.get(student)
        return set(units) if units else None

    def with_limits(self, **changes: Any) -> GradeSettings:
        return replace(self, limits=replace(self.limits, **changes))
