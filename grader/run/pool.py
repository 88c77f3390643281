"""A pool of trusted grading processes; one that dies costs only the submission it was grading.

Each process (`pool_process`) grades many submissions in turn, so imports and the reference
solution are loaded once per process; each submission's student code runs in a sandboxed worker
that the process starts (`grader.runner.grade`). A process that dies, whatever killed it (its
memory, the OOM killer, a signal), costs only its submission, which is retried once, alone, in a
fresh process of its own; the others go on.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from multiprocessing.connection import Connection, wait
from pathlib import Path

from tqdm.auto import tqdm

from grader.intake import Job
from grader.results import ResultFormatError, SubmissionResult
from grader.run.config import GradeSettings
from grader.run.store import spec_of

MAX_ATTEMPTS = 2  # a submission whose process died is retried once, alone


class Status(str, Enum):
    """How a pool process answered one submission (a str: the answer crosses a pipe as plain data)."""

    OK = "ok"  # the result, as JSON text
    ERROR = "error"  # the grader raised (a bug in a check): its message
    DIED = "died"  # the process died while grading (no answer; set by the pool)


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


def pool_process(connection: Connection, out_dir: Path, settings: GradeSettings, slot: int) -> None:
    """A trusted grading process: receives jobs, answers each with (Status, JSON text or message)."""
    while True:
        job = connection.recv()
        if job is None:
            return
        try:
            # Not to_json(): its sorted keys would reorder the units, whose order the feedback follows.
            answer = (Status.OK.value, json.dumps(grade_job(job, out_dir, settings, slot).to_dict()))
        except Exception as exc:  # a bug in a check must not stop the others
            answer = (Status.ERROR.value, f"{type(exc).__name__}: {exc}")
        connection.send(answer)


ProcessMain = Callable[[Connection, Path, GradeSettings, int], None]
OnResult = Callable[[Job, SubmissionResult], None]


@dataclass
class _PoolSlot:
    slot: int
    alone: bool = False  # a retry: this process grades one submission and is then closed
    process: multiprocessing.process.BaseProcess | None = None
    connection: Connection | None = None
    job: Job | None = None
    done: int = 0


@dataclass
class _Answer:
    job: Job
    status: Status
    payload: str | None = None
    exit_code: int | None = None


@dataclass
class GradingPool:
    """`grade_all`'s state: the queues, the slots and what failed."""

    out_dir: Path
    settings: GradeSettings
    process_main: ProcessMain
    queue: deque[Job] = field(default_factory=deque)
    retries: deque[Job] = field(default_factory=deque)
    attempts: dict[Job, int] = field(default_factory=dict)
    slots: list[_PoolSlot] = field(default_factory=list)

    def __post_init__(self):
        self.context = multiprocessing.get_context("spawn")

    def launch(self, pool_slot: _PoolSlot) -> None:
        parent, child = self.context.Pipe()
        pool_slot.process = self.context.Process(
            target=self.process_main, args=(child, self.out_dir, self.settings, pool_slot.slot), daemon=True
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
        return [s for s in self.slots if s.job is not None]

    def dispatch(self) -> None:
        """Give every idle slot its next job (a retry only to a slot of its own); add that slot."""
        for pool_slot in list(self.slots):
            if pool_slot.job is not None:
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
            pool_slot.job = source.popleft()
            self.attempts[pool_slot.job] = self.attempts.get(pool_slot.job, 0) + 1
            assert pool_slot.connection is not None
            pool_slot.connection.send(pool_slot.job)
        if self.retries and not any(s.alone and s.job is None and not s.done for s in self.slots):
            self.slots.append(_PoolSlot(max(s.slot for s in self.slots) + 1 if self.slots else 0, alone=True))

    def answers(self) -> list[_Answer]:
        """Wait for at least one busy slot to answer or die; the answers, their slots freed."""
        busy = self.busy
        ready = wait([s.connection for s in busy] + [s.process.sentinel for s in busy])  # type: ignore[union-attr]
        answers = []
        for pool_slot in busy:
            answer = self._answer(pool_slot, ready)
            if answer is not None:
                answers.append(answer)
        return answers

    def _answer(self, pool_slot: _PoolSlot, ready: list) -> _Answer | None:
        job, connection, process = pool_slot.job, pool_slot.connection, pool_slot.process
        assert job is not None and connection is not None and process is not None
        if connection in ready:
            try:
                status, payload = connection.recv()
                answer = _Answer(job, Status(status), payload)
            except (EOFError, OSError):
                answer = _Answer(job, Status.DIED)
        elif process.sentinel in ready:
            answer = _Answer(job, Status.DIED)
        else:
            return None
        pool_slot.job = None
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


def _result_of(answer: _Answer) -> tuple[SubmissionResult | None, str]:
    """The result an OK answer carries, or (None, why there is none)."""
    if answer.status is Status.ERROR:
        return None, answer.payload or ""
    try:
        return SubmissionResult.from_json(answer.payload or ""), ""
    except ResultFormatError as exc:  # a grading bug, not the student's: no grade, the others go on
        return None, f"the grading process sent back {exc}"


def grade_all(
    pending: list[tuple[Job, str]],
    out_dir: Path,
    settings: GradeSettings,
    processes: int,
    on_result: OnResult,
    process_main: ProcessMain = pool_process,
) -> list[str]:
    """Grade `pending` (job, fingerprint) in `processes` trusted processes; `on_result(job, result)`
    for each graded one, its fingerprint set. Returns failure messages. `process_main(connection,
    out_dir, settings, slot)` is the pool process's loop (tests substitute one that dies on purpose)."""
    fingerprints = dict(pending)
    pool = GradingPool(out_dir, settings, process_main, queue=deque(job for job, _ in pending))
    pool.slots = [_PoolSlot(slot) for slot in range(max(1, min(processes, len(pool.queue))))]
    failures: list[str] = []
    progress = tqdm(total=len(pool.queue), desc="grading", unit="submission", disable=not pool.queue)

    def finish(job: Job, result: SubmissionResult | None, message: str) -> None:
        if result is not None:
            result.fingerprint = fingerprints[job]
            on_result(job, result)
            progress.set_postfix_str(f"{job.student}: {result.total:g}/{result.max_points:g}")
        else:
            failures.append(f"{job.student}/{job.assignment}: {message}")
        progress.update()

    try:
        while pool.queue or pool.retries or pool.busy:
            pool.dispatch()
            if not pool.busy:
                continue
            for answer in pool.answers():
                if answer.status is not Status.DIED:
                    finish(answer.job, *_result_of(answer))
                elif pool.attempts[answer.job] < MAX_ATTEMPTS:
                    pool.retries.append(answer.job)
                else:
                    finish(answer.job, None, f"the grading process died twice (exit code {answer.exit_code}); no grade")
        pool.close()
    finally:
        pool.kill()
        progress.close()
    return failures
