"""The grading pool: a trusted grading process that dies costs only the submission it was grading.

(Apart from tests/test_grading.py, whose tests share one grading run: this one needs none, so it can
run on another test process.)"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_a_dying_grading_process_costs_only_its_submission(tmp_path):
    """When a trusted grading process dies, is only its submission affected, retried alone in a fresh
    process, while every other submission is graded; and does one that kills it twice fail alone?"""
    from sandbox_helpers import dying_pool_process

    from grader.intake import Job
    from grader.run.config import GradeSettings
    from grader.run.pool import grade_all

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
