"""A pool of trusted processes that survives its processes dying: grading, and mutation testing.

Each process (`pool_process`) runs many tasks in turn, so imports and the reference solution are
loaded once per process; a grading task's student code runs in a sandboxed worker that the process
starts (`grader.runner.grade`). A process that dies, whatever killed it (its memory, the OOM killer,
a signal), costs only the task it was running, which is retried once, alone, in a fresh process of
its own; the others go on. `grade_all` grades submissions with it; `segkit mutants` grades mutants.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from grader.intake import Job
from grader.results import ResultFormatError, SubmissionResult
from grader.run.config import GradeSettings
from grader.run.store import spec_of

MAX_ATTEMPTS = 2  # a task whose process died is retried once, alone


class Status(str, Enum):
    """How a task ended (a str: a pool process's answer crosses a pipe as plain data)."""

    OK = "ok"  # the answer, JSON text
    ERROR = "error"  # the task raised (e.g. a bug in a check): its message
    DIED = "died"  # its process died on both attempts (set by the pool)


# A task's work, run in a pool process: (task, what every task shares, the process's slot) -> JSON text.
# The slot is unique among the pool's live processes (as root, it picks the sandboxed worker's uid).
Work = Callable[[Any, Any, int], str]
ProcessMain = Callable[[Connection, Work, Any, int], None]
# (task index, status, text): OK the JSON text, ERROR the exception, DIED "exit code N" (it died twice).
OnAnswer = Callable[[int, Status, str], None]


def pool_process(connection: Connection, work: Work, shared: Any, slot: int) -> None:
    """A trusted pool process: receives tasks, answers each with (Status, JSON text or message)."""
    while True:
        task = connection.recv()
        if task is None:
            return
        try:
            answer = (Status.OK.value, work(task, shared, slot))
        except Exception as exc:  # one task's bug must not stop the others
            answer = (Status.ERROR.value, f"{type(exc).__name__}: {exc}")
        connection.send(answer)


@dataclass
class _PoolSlot:
    slot: int
    alone: bool = False  # a retry: this process runs one task and is then closed
    process: multiprocessing.process.BaseProcess | None = None
    connection: Connection | None = None
    task: int | None = None  # index of the task it runs
    done: int = 0


@dataclass
class _Answer:
    task: int
    status: Status
    payload: str = ""
    exit_code: int | None = None


@dataclass
class _Pool:
    """`run_pool`'s state: the queues of task indices, the slots, the attempts."""

    tasks: list[Any]
    work: Work
    shared: Any
    process_main: ProcessMain
    queue: deque[int] = field(default_factory=deque)
    retries: deque[int] = field(default_factory=deque)
    attempts: dict[int, int] = field(default_factory=dict)
    slots: list[_PoolSlot] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")

    def launch(self, pool_slot: _PoolSlot) -> None:
        parent, child = self.context.Pipe()
        pool_slot.process = self.context.Process(
            target=self.process_main, args=(child, self.work, self.shared, pool_slot.slot), daemon=True
        )
        pool_slot.process.start()
        child.close()
        pool_slot.connection = parent

    @staticmethod
    def retire(pool_slot: _PoolSlot) -> None:
        """Stop the slot's process (it stops its worker template and cleans up after it)."""
        if pool_slot.process is not None and pool_slot.connection is not None:
            try:
                pool_slot.connection.send(None)
            except OSError:
                pass
            pool_slot.process.join(timeout=10)
            if pool_slot.process.is_alive():
                pool_slot.process.kill()
            pool_slot.connection.close()
        pool_slot.process = pool_slot.connection = None

    @property
    def busy(self) -> list[_PoolSlot]:
        return [s for s in self.slots if s.task is not None]

    def dispatch(self) -> None:
        """Give every idle slot its next task (a retry only to a slot of its own, added here)."""
        for pool_slot in list(self.slots):
            if pool_slot.task is not None:
                continue
            if pool_slot.alone and pool_slot.done:
                self.retire(pool_slot)
                self.slots.remove(pool_slot)
                continue
            source = self.retries if (self.retries and pool_slot.alone) else self.queue
            if not source:
                continue
            if pool_slot.process is None or not pool_slot.process.is_alive():
                self.launch(pool_slot)
            assert pool_slot.connection is not None
            pool_slot.task = source.popleft()
            self.attempts[pool_slot.task] = self.attempts.get(pool_slot.task, 0) + 1
            pool_slot.connection.send(self.tasks[pool_slot.task])
        if self.retries and not any(s.alone and s.task is None and not s.done for s in self.slots):
            self.slots.append(_PoolSlot(max(s.slot for s in self.slots) + 1, alone=True))

    def answers(self) -> list[_Answer]:
        """Wait for at least one busy slot to answer or die; the answers, their slots freed."""
        busy = self.busy
        waited: list[Connection[Any, Any] | int] = [s.connection for s in busy if s.connection is not None]
        waited += [s.process.sentinel for s in busy if s.process is not None]
        ready = wait(waited)
        return [answer for pool_slot in busy if (answer := self._answer(pool_slot, ready)) is not None]

    def _answer(self, pool_slot: _PoolSlot, ready: Sequence[object]) -> _Answer | None:
        task, connection, process = pool_slot.task, pool_slot.connection, pool_slot.process
        assert task is not None and connection is not None and process is not None
        if connection in ready:
            try:
                status, payload = connection.recv()
                answer = _Answer(task, Status(status), payload)
            except (EOFError, OSError):
                answer = _Answer(task, Status.DIED)
        elif process.sentinel in ready:
            answer = _Answer(task, Status.DIED)
        else:
            return None
        pool_slot.task = None
        pool_slot.done += 1
        if answer.status is Status.DIED:
            answer.exit_code = process.exitcode
            self.retire(pool_slot)
        return answer

    def close(self) -> None:
        for pool_slot in self.slots:
            self.retire(pool_slot)

    def kill(self) -> None:
        for pool_slot in self.slots:
            if pool_slot.process is not None and pool_slot.process.is_alive():
                pool_slot.process.kill()


def run_pool(
    tasks: list[Any],
    work: Work,
    shared: Any,
    processes: int,
    on_answer: OnAnswer,
    *,
    first_slot: int = 0,
    process_main: ProcessMain = pool_process,
) -> None:
    """Run `work(task, shared, slot)` for every task in `processes` spawned processes (slots from
    `first_slot` on); `on_answer(index, status, text)` once per task, in the parent, as they end.
    Tasks and `shared` are pickled to the processes. `process_main(connection, work, shared, slot)`
    is the pool process's loop (tests substitute one that dies on purpose)."""
    pool = _Pool(tasks, work, shared, process_main, queue=deque(range(len(tasks))))
    pool.slots = [_PoolSlot(first_slot + slot) for slot in range(max(1, min(processes, len(tasks))))]
    try:
        while pool.queue or pool.retries or pool.busy:
            pool.dispatch()
            if not pool.busy:
                continue
            for answer in pool.answers():
                if answer.status is not Status.DIED:
                    on_answer(answer.task, answer.status, answer.payload)
                elif pool.attempts[answer.task] < MAX_ATTEMPTS:
                    pool.retries.append(answer.task)
                else:
                    on_answer(answer.task, Status.DIED, f"exit code {answer.exit_code}")
        pool.close()
    finally:
        pool.kill()


# -- grading ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GradingContext:
    """What every grading task of a run shares (pickled once per pool process)."""

    out_dir: Path
    settings: GradeSettings


def grade_job(job: Job, out_dir: Path, settings: GradeSettings, slot: int) -> SubmissionResult:
    """Grade one submission in this (trusted) pool process."""
    from grader.runner import grade  # torch, pytest: only in the grading processes

    return grade(
        spec_of(job.assignment),
        job.notebook,
        job.student,
        worker=settings.worker(slot),
        log_path=out_dir / "logs" / job.assignment / f"{job.student}.log",
        cache_dir=settings.reference_cache,
        units=settings.units_of(job.student),
    )


def grade_task(job: Job, context: GradingContext, slot: int) -> str:
    """A pool task: one submission's result as JSON text. Not to_json(): its sorted keys would
    reorder the units, whose order the feedback follows."""
    return json.dumps(grade_job(job, context.out_dir, context.settings, slot).to_dict())


def grade_all(
    pending: list[tuple[Job, str]],
    out_dir: Path,
    settings: GradeSettings,
    processes: int,
    on_result: Callable[[Job, SubmissionResult], None],
    process_main: ProcessMain = pool_process,
) -> list[str]:
    """Grade `pending` (job, fingerprint) in `processes` trusted processes; `on_result(job, result)`
    for each graded one, its fingerprint set. Returns failure messages."""
    jobs = [job for job, _ in pending]
    fingerprints = [fingerprint for _, fingerprint in pending]
    failures: list[str] = []
    progress = tqdm(total=len(jobs), desc="grading", unit="submission", disable=not jobs)

    def on_answer(index: int, status: Status, text: str) -> None:
        job = jobs[index]
        result, message = _result_of(status, text)
        if result is not None:
            result.fingerprint = fingerprints[index]
            on_result(job, result)
            progress.set_postfix_str(f"{job.student}: {result.total:g}/{result.max_points:g}")
        else:
            failures.append(f"{job.student}/{job.assignment}: {message}")
        progress.update()

    try:
        run_pool(jobs, grade_task, GradingContext(out_dir, settings), processes, on_answer, process_main=process_main)
    finally:
        progress.close()
    return failures


def _result_of(status: Status, text: str) -> tuple[SubmissionResult | None, str]:
    """The result an OK answer carries, or (None, why there is none)."""
    if status is Status.DIED:
        return None, f"the grading process died twice ({text}); no grade"
    if status is Status.ERROR:
        return None, text
    try:
        return SubmissionResult.from_json(text), ""
    except ResultFormatError as exc:  # a grading bug, not the student's: no grade, the others go on
        return None, f"the grading process sent back {exc}"
