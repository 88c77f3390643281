"""The pool of trusted processes (grader/run/pool.py): one that dies costs only the task it was running.

(Apart from tests/test_grading.py, whose tests share one grading run: this one needs none, so it can
run on another test process.)"""

from __future__ import annotations

import json
import os
import signal

import pytest

from grader.intake import Job
from grader.run.config import GradeSettings
from grader.run.pool import GradingContext, Status, grade_all, run_pool

pytestmark = pytest.mark.slow


def dying_pool_process(connection, work, context: GradingContext, slot):
    """A stand-in for grader.run.pool.pool_process whose process dies on some submissions:
    `dies-once` kills its process the first time (a marker file remembers), `dies-always` every time.
    Other submissions get a fake result naming the process and how many jobs it handled."""
    handled = 0
    while True:
        job = connection.recv()
        if job is None:
            return
        handled += 1
        marker = context.out_dir / f"{job.student}.died"
        if job.student == "dies-always" or (job.student == "dies-once" and not marker.exists()):
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        result = {"student_id": job.student, "assignment": job.assignment, "total": 1, "max": 1}
        result |= {"pid": os.getpid(), "handled_before": handled - 1}
        connection.send((Status.OK.value, json.dumps(result)))


def test_a_dying_grading_process_costs_only_its_submission(tmp_path):
    """When a trusted grading process dies, is only its submission affected, retried alone in a fresh
    process, while every other submission is graded; and does one that kills it twice fail alone?"""
    students = ["a", "b", "dies-once", "c", "dies-always", "d", "e"]
    pending = [(Job(s, "patches", tmp_path / f"{s}.ipynb"), f"fp-{s}") for s in students]
    graded = {}
    failures = grade_all(
        pending,
        tmp_path,
        GradeSettings(),
        2,
        lambda job, result: graded.setdefault(job.student, result),
        process_main=dying_pool_process,
    )
    assert sorted(graded) == sorted(set(students) - {"dies-always"})
    assert len(failures) == 1 and failures[0].startswith("dies-always/patches") and "died twice" in failures[0]
    retried = graded["dies-once"]  # a SubmissionResult; the stand-in's own keys are kept in extra_keys
    assert retried.extra_keys["handled_before"] == 0  # a fresh process ...
    assert not [
        s for s, r in graded.items() if r.extra_keys["pid"] == retried.extra_keys["pid"] and s != "dies-once"
    ]  # ... of its own
    assert all(r.fingerprint == f"fp-{s}" for s, r in graded.items())


def square_or_raise(task: int, offset: int, slot: int) -> str:
    """A pool task: (task squared plus offset, the slot) as JSON; 3 raises."""
    if task == 3:
        raise ValueError("three")
    return json.dumps([task * task + offset, slot])


def test_the_pool_runs_any_task_and_reports_each_once():
    """Does the pool run tasks other than grading (mutation testing uses it), answer every task exactly once,
    pass the shared value and slots from first_slot on, and report a task that raised as an error?"""
    answers = {}
    run_pool(list(range(6)), square_or_raise, 10, 2, lambda i, s, t: answers.setdefault(i, (s, t)), first_slot=200)
    assert sorted(answers) == list(range(6))
    assert answers[3] == (Status.ERROR, "ValueError: three")
    values = {i: json.loads(t) for i, (s, t) in answers.items() if s is Status.OK}
    assert {i: v for i, (v, _) in values.items()} == {i: i * i + 10 for i in (0, 1, 2, 4, 5)}
    assert {slot for _, slot in values.values()} <= {200, 201}
