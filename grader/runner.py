"""Grade ONE submission of one assignment (`grade`); runs in a trusted process of the grading pool.

The student's cells run only in the sandboxed worker (`grader.sandbox.Worker`); this
process runs the hidden checks (pytest) against plain data the worker sends back, and the
reference solution executed here. The result is written atomically as JSON.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from grader.assignments import (
    AssignmentSpec,
    NotebookError,
    cell_source,
    cells_by_grade_id,
    read_notebook,
)
from grader.harness import NOT_IMPLEMENTED, GradingPlugin, Probe, ReferenceNamespace, call_key, probe_source
from grader.results import CheckResult, SubmissionResult, UnitResult
from grader.run.config import WorkerConfig
from grader.sandbox import Limits, Worker, WorkerError, WorkerOutOfMemory, WorkerTimeout
from starter.common import write_atomic

MAX_RESTARTS = 4
_REFERENCES: dict[str, ReferenceNamespace] = {}


def reference_namespace(spec: AssignmentSpec, cache_dir: Path | None = None) -> ReferenceNamespace:
    """Execute the solution's setup and graded cells here (trusted code), once per process."""
    if spec.name not in _REFERENCES:
        namespace: dict[str, Any] = {"__name__": f"reference_{spec.name}"}
        os.environ.setdefault("SEGKIT_FAST", "1")
        with contextlib.redirect_stdout(io.StringIO()):
            for grade_id, source in spec.reference_setup_cells:
                exec(compile(source, f"<reference {grade_id}>", "exec"), namespace)
            for unit in spec.auto_units:
                exec(compile(unit.source, f"<reference {unit.grade_id}>", "exec"), namespace)
        _REFERENCES[spec.name] = ReferenceNamespace(namespace, cache_dir=cache_dir, salt=spec.solution_sha256)
    return _REFERENCES[spec.name]


def new_worker(config: WorkerConfig) -> Worker:
    """The one place a `WorkerConfig` becomes a sandboxed `Worker`."""
    return Worker(**config.worker_kwargs())


class Submission:
    """A student's notebook loaded into a sandboxed worker, restarted if it dies."""

    def __init__(
        self, spec: AssignmentSpec, notebook: dict[str, Any] | None, *, worker: WorkerConfig, log: Callable[[str], None]
    ) -> None:
        self.spec = spec
        self.worker_config = worker
        self.log = log
        self.problems: dict[str, str] = {}
        self.cell_status: dict[str, str] = {}
        self.cells: list[tuple[str, str]] = []
        self.skip: set[str] = set()
        self.restarts = 0
        self.started_once = False
        self.worker: Worker | None = None
        self.dead_reason = ""
        self.peak_memory_bytes = 0
        self.worker_cpu_seconds = 0.0
        self.protections: list[str] = []
        self._memo: dict[str, tuple[str, Any]] = {}  # call key -> ("ok", value) or ("error", exception)
        self.current_unit: str | None = None  # set by the grading plugin before each check
        # While set, probes go to a dependency run: a worker of its own holding the reference versions
        # of the units the current unit uses (see DependencyRun); nothing it answers reaches feedback.
        self.dependency_run: DependencyRun | None = None
        self._reference_sources = {u.grade_id: u.source for u in spec.auto_units}
        self.hung_units: set[str] = set()
        self.largest_reply_bytes = 0
        self.deadline = time.monotonic() + self.worker_config.limits.submission_timeout
        if notebook is not None:
            self._select_cells(notebook)

    def _select_cells(self, notebook: dict[str, Any]) -> None:
        found = cells_by_grade_id(notebook)
        for grade_id, released_source in self.spec.setup_cells:
            cells = [c for c in found.get(grade_id, []) if c.get("cell_type") == "code"]
            self.cells.append((grade_id, cell_source(cells[0]) if cells else released_source))
        order = {id(c): i for i, c in enumerate(notebook["cells"])}
        graded = []
        for unit in self.spec.auto_units:
            cells = [c for c in found.get(unit.grade_id, []) if c.get("cell_type") == "code"]
            if not cells:
                self.problems[unit.grade_id] = (
                    f"no code cell with grade_id '{unit.grade_id}' was found: did you delete or recreate it? "
                    "Copy the cell from the released notebook and put your code back in."
                )
            elif len(cells) > 1:
                self.problems[unit.grade_id] = (
                    f"the grade_id '{unit.grade_id}' appears in {len(cells)} cells; keep exactly one."
                )
            else:
                graded.append((order[id(cells[0])], unit.grade_id, cell_source(cells[0])))
        # Graded cells run in the student's order, after setup (later cells may use earlier ones).
        self.cells += [(gid, source) for _, gid, source in sorted(graded)]

    # -- worker lifecycle -----------------------------------------------------------------
    def boot(self) -> None:
        while True:
            if self.restarts > MAX_RESTARTS:
                self.dead_reason = "your notebook crashed the grader's worker too many times"
                self.worker = None
                return
            worker = new_worker(self.worker_config)
            self.protections = worker.protections
            try:
                worker.start()
            except WorkerError as exc:
                self.log(f"worker failed to start: {exc}\n{worker.output()}")
                output = worker.output()
                self._retire(worker)
                if not self.started_once:
                    # Infrastructure, not the student: fail the grading run instead of scoring 0.
                    raise WorkerError(f"the grading worker could not start: {exc}\n{output[-2000:]}") from exc
                self.restarts += 1
                continue
            self.started_once = True
            crashed = False
            for grade_id, source in self.cells:
                if grade_id in self.skip:
                    continue
                try:
                    result = worker.exec_cell(grade_id, source)
                except WorkerError as exc:
                    kind = (
                        "ran past its time limit"
                        if isinstance(exc, WorkerTimeout)
                        else f"used more memory than allowed ({exc})"
                        if isinstance(exc, WorkerOutOfMemory)
                        else f"crashed ({exc})"
                    )
                    self.cell_status[grade_id] = f"the cell {kind}"
                    self.skip.add(grade_id)
                    self.log(f"cell {grade_id}: {kind}")
                    self._retire(worker)
                    self.restarts += 1
                    crashed = True
                    break
                self.cell_status[grade_id] = "ok" if result["status"] == "ok" else result["error"]
            if not crashed:
                self.worker = worker
                return

    def _retire(self, worker: Worker, *, log_output: bool = True) -> None:
        if log_output:
            self.log("worker output (head/tail):\n" + worker.output())
        worker.stop()
        self.peak_memory_bytes = max(self.peak_memory_bytes, worker.peak_memory_bytes or 0)
        self.worker_cpu_seconds += worker.cpu_seconds
        self.largest_reply_bytes = max(self.largest_reply_bytes, worker.largest_reply_bytes)

    def close(self) -> None:
        if self.worker is not None:
            self._retire(self.worker)
            self.worker = None

    # -- what checks use --------------------------------------------------------------------
    def problem(self, grade_id: str) -> str:
        """Why a unit cannot be checked at all (missing cell, cell raised), or ''."""
        if grade_id in self.problems:
            return self.problems[grade_id]
        status = self.cell_status.get(grade_id)
        if status is None:
            return self.dead_reason or f"the cell '{grade_id}' was not run"
        if status != "ok":
            if status.startswith("NotImplementedError"):
                return f"'{grade_id}' is {NOT_IMPLEMENTED}"
            return f"running the cell '{grade_id}' failed: {status}"
        return ""

    def call(
        self, probe: Probe, *args: object, timeout: float | None = None, memo: bool = False, **kwargs: object
    ) -> Any:
        """Run `probe(ns, *args, **kwargs)` in the worker. memo=True: reuse the outcome of an
        identical earlier call (several checks reading one expensive probe)."""
        source = probe_source(probe)
        if self.dependency_run is not None:
            return self.dependency_run.call(source, probe.__name__, args, kwargs, timeout)
        key = None
        if memo:
            key = call_key(source, args, kwargs)
            if key in self._memo:
                outcome, value = self._memo[key]
                if outcome == "error":
                    raise value
                return value
        try:
            value = self._call(source, probe.__name__, args, kwargs, timeout)
        except Exception as exc:
            if key is not None:
                self._memo[key] = ("error", exc)
            raise
        if key is not None:
            self._memo[key] = ("ok", value)
        return value

    def dependencies(self, grade_id: str | None) -> tuple[str, ...]:
        return self.spec.dependencies.get(grade_id, ()) if grade_id else ()

    @contextlib.contextmanager
    def checking(self, grade_id: str, dependency_run: DependencyRun | None = None) -> Iterator[None]:
        """The unit the checks inside are about (a hang is remembered per unit), and, given, the
        dependency run their probes go to instead of the student's own worker."""
        self.current_unit, self.dependency_run = grade_id, dependency_run
        try:
            yield
        finally:
            self.current_unit, self.dependency_run = None, None

    def probe_timeout(self, timeout: float | None, limits: Limits) -> float:
        """A check's time limit: what it asks for, within the cap and the submission's time left."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerTimeout("the submission used up its total time limit")
        return min(timeout or limits.probe_timeout, remaining, limits.probe_timeout_cap or remaining)

    def _call(
        self, source: str, name: str, args: tuple[object, ...], kwargs: dict[str, object], timeout: float | None
    ) -> Any:
        if self.worker is None:
            raise WorkerError(self.dead_reason or "the worker is not running")
        if self.current_unit in self.hung_units:
            # One hang per unit is enough evidence; waiting out every later check of the same
            # unit would only let one submission eat the whole run's time.
            raise WorkerTimeout("your code ran past its time limit in an earlier check of this unit")
        timeout = self.probe_timeout(timeout, self.worker.limits)
        try:
            return self.worker.probe(source, name, args, kwargs, timeout=timeout)
        except WorkerError as exc:
            self.log(f"probe {name} killed the worker: {exc}; restarting")
            self._retire(self.worker)
            self.worker = None
            self.restarts += 1
            if isinstance(exc, WorkerTimeout) and self.current_unit:
                self.hung_units.add(self.current_unit)
            self.boot()
            if isinstance(exc, WorkerTimeout):
                raise WorkerTimeout("your code ran past its time limit") from None
            raise


class DependencyRun:
    """One unit of one submission checked over the reference versions of the graded units it uses
    (fair units: a bug in a helper costs the helper's points only).

    The reference code goes to a worker of its own, forked for this unit after the student's main
    worker has stopped, and stopped after the unit's checks: no process whose output can reach the
    student ever holds reference code. Nothing it says comes back: its cells' statuses and output,
    probe errors and values are only compared by trusted checks, whose outcome is reduced to
    passed or failed (the caller discards every exception text). At most one bit per check leaks.
    """

    def __init__(self, submission: Submission, unit: str) -> None:
        self.submission = submission
        self.unit = unit
        self.worker: Worker | None = None
        self.usable = False
        self.ready_s = 0.0  # what the separate worker costs: its start and the notebook's cells again

    def __enter__(self) -> DependencyRun:
        sub = self.submission
        # A unit whose own cell failed in the student's run fails the same way here: no worker needed.
        if sub.cell_status.get(self.unit) != "ok":
            return self
        started = time.monotonic()
        worker = new_worker(sub.worker_config)
        try:
            worker.start()
        except WorkerError:
            sub._retire(worker, log_output=False)
            return self
        self.worker = worker
        try:
            for grade_id, source in self.cells():
                status = worker.exec_cell(grade_id, source)["status"]
                if grade_id == self.unit:
                    self.usable = status == "ok"
        except WorkerError:
            self.usable = False
        self.ready_s = time.monotonic() - started
        return self

    def cells(self) -> list[tuple[str, str]]:
        """The student's notebook as it ran, in its order, with the unit's helpers replaced by their
        reference versions; cells that failed in the student's run (or stopped its worker) are left
        out: they cost time here and would fail again."""
        sub, helpers = self.submission, self.submission.dependencies(self.unit)
        present = {gid for gid, _ in sub.cells}
        cells = []
        for grade_id, source in sub.cells:
            if grade_id == self.unit:  # helper cells the student deleted come just before the unit
                cells += [(f"reference {gid}", sub._reference_sources[gid]) for gid in helpers if gid not in present]
            if grade_id in helpers:
                cells.append((f"reference {grade_id}", sub._reference_sources[grade_id]))
            elif grade_id == self.unit or (grade_id not in sub.skip and sub.cell_status.get(grade_id) == "ok"):
                cells.append((grade_id, source))
        return cells

    def call(
        self, source: str, name: str, args: tuple[object, ...], kwargs: dict[str, object], timeout: float | None
    ) -> Any:
        if not self.usable or self.worker is None:
            raise WorkerError("the dependency run is not usable")
        try:
            return self.worker.probe(
                source, name, args, kwargs, timeout=self.submission.probe_timeout(timeout, self.worker.limits)
            )
        except WorkerError:
            self.usable = False
            raise

    def __exit__(self, *exc_info: object) -> None:
        if self.worker is not None:
            self.submission._retire(self.worker, log_output=False)
            self.worker = None


def _pytest_arguments(spec: AssignmentSpec) -> list[str]:
    return [
        str(spec.checks_path),
        "-q",
        # The log is written next to the feedback: tracebacks would put the hidden checks' code and the
        # reference's expected values there. Outcomes come from the grading plugin, not from this text.
        "--tb=no",
        "-p",
        "no:cacheprovider",
        "--no-header",
        "-c",
        os.devnull,
        "--rootdir",
        str(spec.checks_path.parent),
        "-W",
        "ignore",
        # Not used by checks, and costly per submission: log capture around every test, and a
        # forced garbage collection at the end of each session.
        "-p",
        "no:logging",
        "-p",
        "no:unraisableexception",
    ]


_CHECKS_IMPORTED: set[str] = set()


def _import_checks(spec: AssignmentSpec) -> None:
    """Collect the hidden checks once per process (pytest imports and rewrites the module, which then
    stays imported), so that this start-up is not counted as the first submission's cost."""
    if spec.name in _CHECKS_IMPORTED:
        return
    _CHECKS_IMPORTED.add(spec.name)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        pytest.main([*_pytest_arguments(spec), "--collect-only"])


def grade(
    spec: AssignmentSpec,
    notebook_path: Path,
    student: str,
    *,
    worker: WorkerConfig,
    log_path: Path | None = None,
    cache_dir: Path | None = None,
    units: set[str] | None = None,
) -> SubmissionResult:
    """Grade one notebook. `units`: only run the checks of these grade_ids (others score 0 and
    are marked "not checked"; used by mutation testing)."""
    # The reference solution is loaded once per grading process (the run's start-up, like imports),
    # not per submission: its cost is not this submission's.
    reference = reference_namespace(spec, cache_dir)
    _import_checks(spec)
    started, started_cpu = time.time(), time.process_time()
    log_lines: list[str] = []
    log = log_lines.append
    notebook_error = ""
    try:
        notebook = read_notebook(notebook_path)
    except (NotebookError, OSError) as exc:
        notebook = None
        notebook_error = str(exc)
    submission = Submission(spec, notebook, worker=worker, log=log)
    if notebook is None:
        submission.dead_reason = f"the notebook could not be read: {notebook_error}"
    else:
        submission.boot()
    plugin = GradingPlugin(submission, reference, units)
    pytest_output = io.StringIO()
    try:
        with contextlib.redirect_stdout(pytest_output), contextlib.redirect_stderr(pytest_output):
            pytest.main(
                _pytest_arguments(spec),
                plugins=[plugin],
            )
    finally:
        submission.close()
    log("pytest output:\n" + pytest_output.getvalue()[-20000:])
    # Only now, with the student's main worker gone, may reference code enter a worker.
    rechecked_at = time.monotonic()
    runs: list[DependencyRun] = []

    def dependency_run(unit: str) -> DependencyRun:
        runs.append(DependencyRun(submission, unit))
        return runs[-1]

    rechecked = plugin.recheck_on_reference_dependencies(dependency_run)
    for run, (unit, (passed, tried)) in zip(runs, rechecked.items()):
        log(
            f"dependency run of {unit}: {passed}/{tried} failed checks pass over the reference helpers "
            f"(its worker ready in {run.ready_s:.2f} s)"
        )
    if rechecked:
        log(f"dependency runs: {len(rechecked)} in {time.monotonic() - rechecked_at:.2f} s")
    log(f"largest worker reply: {submission.largest_reply_bytes} bytes")
    unit_results = _unit_results(spec, plugin.results, units)
    result = SubmissionResult(
        student_id=student,
        assignment=spec.name,
        notebook=str(notebook_path),
        units=unit_results,
        manual_points={u.grade_id: u.points for u in spec.manual_units},
        notebook_error=notebook_error,
        checked_units=sorted(units) if units is not None else None,
        total=round(sum(u.points for u in unit_results.values()), 4),
        max_points=spec.max_points,
        cell_status=submission.cell_status,
        protections=submission.protections,
        unsafe_no_sandbox=not worker.sandbox,
        worker_restarts=submission.restarts,
        peak_worker_memory_mb=round(submission.peak_memory_bytes / 2**20, 1),
        duration_s=round(time.time() - started, 2),
        cpu_s=round(time.process_time() - started_cpu + submission.worker_cpu_seconds, 2),
    )
    if log_path is not None:
        write_atomic(log_path, "\n".join(log_lines))
    return result


def _unit_results(spec: AssignmentSpec, checks: list[CheckResult], units: set[str] | None) -> dict[str, UnitResult]:
    """Every autograded unit, in the assignment's order, with its checks and the points they earned.
    Raises RuntimeError when the checks disagree with the notebook about a checked unit's points."""
    checks_by_unit: dict[str, list[CheckResult]] = {u.grade_id: [] for u in spec.auto_units}
    for check in checks:
        if check.grade_id not in checks_by_unit:
            raise RuntimeError(f"check {check.test} names unknown unit {check.grade_id}")
        checks_by_unit[check.grade_id].append(check)
    results = {}
    for unit in spec.auto_units:
        unit_checks = checks_by_unit[unit.grade_id]
        # round(sum([]), 4) is the int 0 for an unchecked unit: kept, the JSON files have always said 0.
        points = round(sum(c.points for c in unit_checks), 4)
        declared = round(sum(c.max_points for c in unit_checks), 4)
        if declared != unit.points and (units is None or unit.grade_id in units):
            raise RuntimeError(
                f"checks of {unit.grade_id} are worth {declared} points, the notebook says {unit.points}"
            )
        results[unit.grade_id] = UnitResult(unit.grade_id, points=points, max_points=unit.points, checks=unit_checks)
    return results
