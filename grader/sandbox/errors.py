"""What can go wrong around a worker, as the trusted side names it."""

from __future__ import annotations


class SandboxUnavailable(RuntimeError):
    """The host cannot build the worker's sandbox (the message says why and what to do)."""


class WorkerError(RuntimeError):
    """The worker died, hung or answered with something that is not plain data."""


class WorkerTimeout(WorkerError):
    pass


class WorkerOutOfMemory(WorkerError):
    pass


class ProbeFailed(Exception):
    """The student's code raised while a check called it (message is student-facing)."""
